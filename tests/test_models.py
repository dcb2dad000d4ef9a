"""Model registry, architectures and model files (l2ul.models)."""
from __future__ import annotations

import io
import os
import pickle
import time

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision

from l2ul.errors import DataError, L2ULError, ModelFileError
from l2ul.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NormalizedClassifier,
    create_model,
    import_state_dict,
    list_models,
    load_model,
    model_info,
    save_model,
)
from l2ul.models.cifar_resnet import CifarResNet, ShortcutA

SMALL_SHAPES = {"small_cnn": [(1, 8, 8), (1, 28, 28)], "mlp": [(1, 8, 8), (1, 28, 28)]}


def _randomize_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so a wrongly loaded or skipped buffer changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _images(shape, n=2, seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ registry

@pytest.mark.parametrize("name", [n for n in list_models() if n != "hf_vit"])
def test_every_registered_model_maps_images_to_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    assert isinstance(model, NormalizedClassifier)
    info = model_info(name)
    shapes = [tuple(info["input_shape"])] if info["input_shape"] else SMALL_SHAPES[name]
    for shape in shapes:
        with torch.no_grad():
            out = model(_images(shape))
        assert type(out) is torch.Tensor and out.shape == (2, 7) and torch.isfinite(out).all()
    meta = model.l2ul_meta
    assert meta["arch"] == name and meta["num_classes"] == 7
    assert meta["mean"] == pytest.approx(info["mean"]) and len(meta["mean"]) == shapes[0][0]
    assert model.mean.shape == (1, shapes[0][0], 1, 1)


def test_cifar_resnet_param_counts_match_he_et_al():
    counts = {d: sum(p.numel() for p in create_model(f"resnet{d}", 10).parameters()) for d in (20, 32)}
    assert counts == {20: 269_722, 32: 464_154}


def test_cifar_resnet_parameter_names_match_reference_layout():
    keys = set(create_model("resnet20").state_dict())
    assert {"net.conv1.weight", "net.bn1.running_var", "net.layer1.0.conv1.weight", "net.layer3.2.bn2.bias",
            "net.linear.weight", "net.linear.bias", "mean", "std"} <= keys
    assert not any("shortcut" in k for k in keys)  # option A is parameter-free


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    shortcut = ShortcutA(16, 32)
    assert list(shortcut.parameters()) == [] and list(shortcut.buffers()) == []
    x = _images((16, 5, 5), n=3)
    out = shortcut(x)
    assert out.shape == (3, 32, 3, 3)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    net = CifarResNet(20)
    assert isinstance(net.layer2[0].shortcut, ShortcutA) and isinstance(net.layer1[0].shortcut, torch.nn.Identity)


def test_paper_resnets_follow_the_papers_stems():
    r18 = create_model("cifar_resnet18").net
    assert r18.conv1.kernel_size == (3, 3) and r18.conv1.stride == (1, 1)
    assert isinstance(r18.maxpool, torch.nn.MaxPool2d)  # kept, as in the paper's resnet.py
    assert isinstance(create_model("cifar_resnet18", maxpool=False).net.maxpool, torch.nn.Identity)
    r50 = create_model("cifar_resnet50", num_classes=100)
    assert isinstance(r50.net.maxpool, torch.nn.Identity) and r50.net.fc.out_features == 100
    assert r50.l2ul_meta["mean"] == pytest.approx([0.5071, 0.4867, 0.4408])


def test_small_models_take_channels_from_in_channels():
    model = create_model("small_cnn", 3, in_channels=3)
    assert model.l2ul_meta["mean"] == [0.5, 0.5, 0.5] and model.l2ul_meta["arch_kwargs"]["in_channels"] == 3
    assert model(_images((3, 32, 32))).shape == (2, 3)
    with pytest.raises(DataError, match="3 channel"):
        model(_images((1, 32, 32)))


def test_normalisation_happens_inside_the_model():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = _images((3, 32, 32))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.net((x - mean) / std), atol=1e-6)


def test_user_errors_name_the_fix():
    with pytest.raises(L2ULError, match=r"unknown model 'resnet21'.*resnet20.*tv:<name>"):
        create_model("resnet21")
    with pytest.raises(L2ULError, match="did you mean tv:resnet18"):
        create_model("tv:resnet19")
    with pytest.raises(L2ULError, match="no downloadable weights.*weights=PATH"):
        create_model("resnet20", pretrained=True)
    with pytest.raises(L2ULError, match="bad options for small_cnn.*in_channels, width"):
        create_model("small_cnn", depth=3)
    with pytest.raises(L2ULError, match="one per class"):
        create_model("resnet20", 10, class_names=["cat", "dog"])
    with pytest.raises(L2ULError, match="num_classes must be a positive integer"):
        create_model("resnet20", 0)


# ---------------------------------------------------------------------------------------- model files

def _trained_small_cnn():
    torch.manual_seed(0)
    model = create_model("small_cnn", 4, class_names=["a", "b", "c", "d"], width=8)
    _randomize_bn(model)
    return model.eval()


def test_save_load_round_trip_is_exact(tmp_path):
    model = _trained_small_cnn()
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    x = _images((1, 8, 8), n=5)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.l2ul_meta == model.l2ul_meta and loaded.l2ul_meta["class_names"] == ["a", "b", "c", "d"]
    assert not loaded.training
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]  # no partial files left behind


def test_save_refuses_to_overwrite_unless_told(tmp_path):
    model, path = _trained_small_cnn(), tmp_path / "m.safetensors"
    save_model(model, path)
    before = path.read_bytes()
    with pytest.raises(L2ULError, match="already exists.*--overwrite"):
        save_model(create_model("small_cnn", 4, width=8), path)
    assert path.read_bytes() == before
    save_model(create_model("small_cnn", 4, width=8), path, overwrite=True)
    assert path.read_bytes() != before


def test_save_rejects_models_l2ul_cannot_rebuild(tmp_path):
    with pytest.raises(L2ULError, match="register_model"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "m.safetensors")


def test_damaged_or_foreign_files_raise_model_file_error(tmp_path):
    path = save_model(_trained_small_cnn(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    torch.save(create_model("small_cnn", 4, width=8).state_dict(), tmp_path / "weights.pt")
    cases = {"truncated.safetensors": "truncated or corrupt", "random.bin": "truncated or corrupt",
             "plain.safetensors": "not an l2ul model.*--weights PATH",
             "weights.pt": "looks like a PyTorch pickle; import foreign weights with --arch NAME --weights PATH",
             "missing.safetensors": "does not exist"}
    for name, message in cases.items():
        with pytest.raises(ModelFileError, match=message):
            load_model(tmp_path / name)
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        import_state_dict("small_cnn", tmp_path / "truncated.safetensors", num_classes=4)
    with pytest.raises(ModelFileError, match="not a PyTorch checkpoint"):
        import_state_dict("small_cnn", tmp_path / "random.bin", num_classes=4)


class _Payload:
    """Pickles to a call of os.system: unpickling it runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    payload = _Payload(f"touch {marker}")
    torch.save({"state_dict": payload}, tmp_path / "evil.pt")
    torch.save(payload, tmp_path / "evil_legacy.th", _use_new_zipfile_serialization=False)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(payload, f)
    assert b"system" in (tmp_path / "evil.pkl").read_bytes()  # the payload really is in the files
    for name in ("evil.pt", "evil_legacy.th", "evil.pkl"):
        with pytest.raises(ModelFileError, match="refuses to execute pickled code"):
            import_state_dict("resnet20", tmp_path / name, num_classes=10)
        with pytest.raises(ModelFileError, match="looks like a PyTorch pickle"):
            load_model(tmp_path / name)
        with pytest.raises(ModelFileError, match="refuses to execute pickled code"):
            create_model("resnet20", weights=tmp_path / name)
    assert not marker.exists()


def test_import_dataparallel_checkpoint_in_state_dict_wrapper(tmp_path):
    torch.manual_seed(1)
    ref = CifarResNet(20, num_classes=10)
    _randomize_bn(ref)
    ref.eval()
    # like the akamaster files: legacy torch.save, "module." prefix, no BN num_batches_tracked
    state = {f"module.{k}": v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"best_prec1": 91.0, "state_dict": state}, tmp_path / "ckpt.th", _use_new_zipfile_serialization=False)
    model = import_state_dict("resnet20", tmp_path / "ckpt.th", num_classes=None)  # inferred from linear
    assert model.l2ul_meta["num_classes"] == 10 and not model.training
    x = _images((3, 32, 32), n=4)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), ref((x - mean) / std), atol=1e-6)
    # an l2ul-style state dict ("net." keys, mean/std buffers) imports too, via safetensors
    safetensors.torch.save_file(model.state_dict(), str(tmp_path / "full.safetensors"))
    again = import_state_dict("resnet20", tmp_path / "full.safetensors")
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_import_mismatch_lists_keys_and_shapes(tmp_path):
    torch.save(CifarResNet(20).state_dict(), tmp_path / "r20.pt")
    with pytest.raises(ModelFileError, match=r"does not fit resnet32.*missing keys net|missing keys layer1\.3"):
        import_state_dict("resnet32", tmp_path / "r20.pt", num_classes=10)
    with pytest.raises(ModelFileError, match=r"shape mismatches.*linear\.weight \[10, 64\] vs \[100, 64\]"):
        import_state_dict("resnet20", tmp_path / "r20.pt", num_classes=100)


# ---------------------------------------------------------------------------------------- torchvision

def test_imagenet_resnet18_loads_a_local_torchvision_state_dict(tmp_path):
    torch.manual_seed(2)
    ref = torchvision.models.resnet18(num_classes=10)
    _randomize_bn(ref)
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("imagenet_resnet18", 10, weights=tmp_path / "resnet18.pth").eval()
    assert model.l2ul_meta["input_shape"] == [3, 224, 224]
    x = _images((3, 64, 64))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), ref((x - mean) / std), atol=1e-5)
    # the generic tv: family accepts the same file and infers the class count
    generic = import_state_dict("tv:resnet18", tmp_path / "resnet18.pth")
    assert generic.l2ul_meta["arch"] == "tv:resnet18" and generic.l2ul_meta["num_classes"] == 10
    with torch.no_grad():
        assert torch.equal(generic(x), model(x))


def test_tv_family_builds_any_torchvision_classifier_and_round_trips(tmp_path):
    torch.manual_seed(3)
    model = create_model("tv:mobilenet_v3_small", 5).eval()
    assert model_info("tv:mobilenet_v3_small")["pretrained_download"]
    x = _images((3, 64, 64))
    loaded = load_model(save_model(model, tmp_path / "mnv3.safetensors"))
    with torch.no_grad():
        assert model(x).shape == (2, 5) and torch.equal(model(x), loaded(x))


# --------------------------------------------------------------------------------------- Hugging Face

TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                image_size=32, patch_size=8)


def test_hf_vit_tiny_config_resizes_inputs_and_round_trips(tmp_path):
    pytest.importorskip("transformers")
    torch.manual_seed(4)
    model = create_model("hf_vit", 10, vit_config=TINY_VIT).eval()
    assert model.input_size == (32, 32) and model.l2ul_meta["mean"] == [0.5, 0.5, 0.5]
    x32, x16 = _images((3, 32, 32)), _images((3, 16, 16))
    with torch.no_grad():
        out32, out16 = model(x32), model(x16)
        assert type(out32) is torch.Tensor and out32.shape == out16.shape == (2, 10)
        upsampled = F.interpolate(x16, size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.allclose(out16, model(upsampled), atol=1e-6)
    loaded = load_model(save_model(model, tmp_path / "vit.safetensors"))
    assert loaded.l2ul_meta == model.l2ul_meta
    with torch.no_grad():
        assert torch.equal(loaded(x16), out16)
    # Hugging Face parameter names: an HF state dict (model.safetensors) imports directly
    safetensors.torch.save_file(model.net.state_dict(), str(tmp_path / "model.safetensors"))
    imported = import_state_dict("hf_vit", tmp_path / "model.safetensors", vit_config=TINY_VIT)
    with torch.no_grad():
        assert torch.equal(imported(x32), out32)


def test_hf_vit_needs_a_source():
    pytest.importorskip("transformers")
    with pytest.raises(L2ULError, match="exactly one of name_or_path"):
        create_model("hf_vit", 10)


# ---------------------------------------------------------------------------- real weights (../shared)

@pytest.fixture(scope="module")
def cifar10_test(shared_dir):
    path = shared_dir / "datasets" / "cifar10_jpeg.npz"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    from PIL import Image

    # Every 5th test image (2,000): a mapping or preprocessing bug costs tens of points, and the whole split
    # would take a minute of the suite's ten.
    d = np.load(path, allow_pickle=False)
    data, offsets = d["test_jpeg_bytes"], d["test_jpeg_offsets"]
    x = np.stack([np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                  for i in range(0, len(offsets) - 1, 5)])
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255)
    return images, torch.from_numpy(d["y_test"][::5].astype(np.int64))


# expected: on every 5th test image (on the whole JPEG test split: 0.8103 and 0.8256)
@pytest.mark.shared
@pytest.mark.parametrize("depth, file, expected", [(20, "cifar10_resnet20-12fca82f.th", 0.8045),
                                                    (32, "cifar10_resnet32-d509ac18.th", 0.8190)])
def test_real_cifar10_resnets_reach_documented_accuracy(shared_dir, cifar10_test, depth, file, expected):
    weights = shared_dir / "datasets" / "pretrained" / file
    if not weights.is_file():
        pytest.skip(f"{weights} absent")
    model = import_state_dict(f"resnet{depth}", weights, num_classes=10)
    images, labels = cifar10_test
    start, correct = time.perf_counter(), 0
    with torch.no_grad():
        for i in range(0, len(labels), 1000):
            correct += (model(images[i:i + 1000]).argmax(1) == labels[i:i + 1000]).sum().item()
    acc = correct / len(labels)
    seconds = time.perf_counter() - start
    assert abs(acc - expected) < 0.002, f"resnet{depth}: {acc:.4f} on every 5th JPEG CIFAR-10 test image ({seconds:.1f}s)"
