"""timm models by name (``timm:<name>`` / ``timm/<name>``, the optional extra ``l2ul[timm]``), offline.

The registry path runs against a small stand-in ``timm`` module (so it is tested without timm installed);
the real timm, when installed, is checked end to end, its download path included: ``pretrained=True``
through timm and huggingface_hub from a local Hugging Face cache with ``HF_HUB_OFFLINE=1``."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from torch import nn

from _cli_helpers import assert_user_error, run
from l2ul.errors import L2ULError
from l2ul.models import create_model, model_info
from l2ul.models.io import load_model, save_model


class TinyNet(nn.Module):
    def __init__(self, num_classes, in_chans):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


@pytest.fixture
def fake_timm(monkeypatch):
    calls = []

    def create(name, pretrained=False, num_classes=1000, in_chans=3, drop_rate=0.0):
        calls.append(dict(name=name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans))
        return TinyNet(num_classes, in_chans)

    cfg = types.SimpleNamespace(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), input_size=(3, 32, 32))
    timm = types.ModuleType("timm")
    timm.is_model = lambda name: name.split(".")[0] == "tinynet"
    timm.list_models = lambda: ["tinynet", "resnet18"]
    timm.create_model = create
    timm.models = types.SimpleNamespace(get_pretrained_cfg=lambda name: cfg)
    monkeypatch.setitem(sys.modules, "timm", timm)
    return calls


def test_a_timm_model_by_name(fake_timm, tmp_path):
    model = create_model("timm:tinynet", num_classes=5, in_channels=1)
    assert model.l2ul_meta["arch"] == "timm:tinynet"
    assert model.l2ul_meta["arch_kwargs"] == {"in_channels": 1, "drop_rate": 0.0}
    assert model.l2ul_meta["mean"] == pytest.approx([0.4]) and model.l2ul_meta["input_shape"] == [1, 32, 32]
    assert fake_timm == [dict(name="tinynet", pretrained=False, num_classes=5, in_chans=1)]
    info = model_info("timm/tinynet.a1")  # timm's Hub spelling, with a pretrained tag
    assert info["name"] == "timm:tinynet.a1" and info["mean"] == [0.5, 0.4, 0.3] and info["pretrained_download"]
    # a model file rebuilds it offline, with the same outputs; nothing in it asks timm for weights
    save_model(model, tmp_path / "t.safetensors")
    again = load_model(tmp_path / "t.safetensors")
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(model.eval()(x), again.eval()(x))
    assert fake_timm[-1]["pretrained"] is False
    create_model("timm:tinynet.a1", num_classes=5, pretrained=True)
    assert fake_timm[-1] == dict(name="tinynet.a1", pretrained=True, num_classes=5, in_chans=3)


def test_unknown_timm_names_and_a_missing_timm(fake_timm, monkeypatch):
    with pytest.raises(L2ULError, match=r"unknown timm model 'tinynte'.*did you mean timm:tinynet"):
        create_model("timm:tinynte", num_classes=2)
    monkeypatch.setitem(sys.modules, "timm", None)  # not installed
    with pytest.raises(L2ULError, match=r"pip install 'l2ul\[timm\]'"):
        create_model("timm:tinynet", num_classes=2)


def test_the_real_timm_downloads_through_its_hub_path_from_a_local_cache(tmp_path):
    """``pretrained=True`` goes through timm and huggingface_hub, here from a local cache (no network)."""
    pytest.importorskip("timm")
    script = textwrap.dedent("""
        import sys, torch, timm
        from safetensors.torch import save_file
        from pathlib import Path
        snap = Path(sys.argv[1]) / "models--timm--resnet18.a1_in1k" / "snapshots" / ("0" * 40)
        snap.mkdir(parents=True)
        (snap.parents[1] / "refs").mkdir()
        (snap.parents[1] / "refs" / "main").write_text("0" * 40)
        torch.manual_seed(1)
        ref = {k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}
        save_file(ref, snap / "model.safetensors")
        from l2ul.models import create_model
        model = create_model("timm/resnet18.a1_in1k", num_classes=10, pretrained=True)
        assert torch.equal(model.net.conv1.weight, ref["conv1.weight"])  # the cached weights, a new head
        assert model.net.fc.weight.shape == (10, 512) and model.l2ul_meta["mean"] == [0.485, 0.456, 0.406]
        try:
            create_model("timm:resnet34.a1_in1k", num_classes=10, pretrained=True)
        except Exception as e:
            assert type(e).__name__ == "L2ULError" and "weights=PATH" in str(e), e
        else:
            raise AssertionError("resnet34 is not in the cache")
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_pretrain_fine_tunes_published_weights(capsys, fake_timm, tmp_path):
    out = tmp_path / "t.safetensors"
    rc, _, err = run(capsys, "pretrain", "--arch", "timm:tinynet.a1", "--pretrained", "--dataset", "digits",
                     "--epochs", "1", "--out", out, "--no-progress")
    assert rc == 0, err
    assert fake_timm[-1] == dict(name="tinynet.a1", pretrained=True, num_classes=10, in_chans=1)
    assert load_model(out).l2ul_meta["arch"] == "timm:tinynet.a1"
    rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--pretrained", "--out", tmp_path / "s", "--epochs", "1")
    assert_user_error(rc, err, "small_cnn has no published weights", "--pretrained")
    assert not (tmp_path / "s").exists()


def test_convert_published_weights_into_a_model_file(capsys, fake_timm, tmp_path):
    out = tmp_path / "t.safetensors"
    rc, stdout, err = run(capsys, "convert", "--arch", "timm/tinynet.a1", "--pretrained", "--num-classes", "7",
                          "--out", out)
    assert rc == 0, err
    assert fake_timm[0] == dict(name="tinynet.a1", pretrained=True, num_classes=7, in_chans=3)
    assert stdout == f"model: {out}  (timm:tinynet.a1, 7 classes)\n"
    assert load_model(out).l2ul_meta["arch"] == "timm:tinynet.a1" and fake_timm[-1]["pretrained"] is False
    rc, _, err = run(capsys, "convert", "--arch", "timm:tinynet", "--pretrained", "--out", tmp_path / "x")
    assert_user_error(rc, err, "--pretrained needs the class count", "--num-classes")
