"""Paths a newcomer takes in the first hour (issue #16): `pretrain --download`, the dataset's class names in
what l2ul writes, and retrying a failed run with the same --out. Offline: torchvision's CIFAR-10 class is
replaced by a tiny fake that only "downloads" when asked to."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _cli_helpers import FAST, assert_user_error, pretrain_digits, run

CLASSES = [f"class-{i}" for i in range(10)]


class FakeCIFAR10:
    """torchvision.datasets.CIFAR10 as the loader calls it; the files exist only after download=True."""

    calls = []

    def __init__(self, root, train=True, download=False):
        FakeCIFAR10.calls.append(download)
        if not download:
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        n = 30 if train else 20
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = list(np.arange(n) % 10)
        self.classes = list(CLASSES)


@pytest.fixture
def fake_cifar10(monkeypatch):
    import torchvision.datasets

    FakeCIFAR10.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    return FakeCIFAR10


def test_pretrain_download_reaches_the_dataset_and_the_class_names_the_model(capsys, tmp_path, fake_cifar10):
    from l2ul.models.io import load_model

    out = tmp_path / "m.safetensors"
    argv = ["pretrain", "--arch", "small_cnn", "--dataset", "cifar10", "--data-dir", tmp_path / "data",
            "--epochs", "1", "--out", out, "--no-progress"]
    rc, _, err = run(capsys, *argv)
    assert_user_error(rc, err, "cifar10 not found", "pass --download")
    assert fake_cifar10.calls == [False] and not out.exists()
    rc, _, err = run(capsys, *argv, "--download")
    assert rc == 0, err
    assert fake_cifar10.calls[1:] == [True, True]  # both splits, downloaded
    assert load_model(out).l2ul_meta["class_names"] == CLASSES


def test_a_foreign_checkpoint_adopts_the_datasets_class_names(tmp_path, fake_cifar10):
    from l2ul.data import load_dataset
    from l2ul.loading import adopt_class_names, check_fit, load_model_from
    from l2ul.models import create_model
    from l2ul.models.io import load_model, save_model

    torch.manual_seed(0)
    torch.save(create_model("resnet20", num_classes=10).net.state_dict(), tmp_path / "r20.pt")
    bundle = load_dataset("cifar10", data_dir=tmp_path, download=True)
    model = load_model_from(arch="resnet20", weights=tmp_path / "r20.pt")
    check_fit(model, bundle)
    assert model.l2ul_meta["class_names"] is None
    assert adopt_class_names(model, bundle) is True
    save_model(model, tmp_path / "r20.safetensors")
    assert load_model(tmp_path / "r20.safetensors").l2ul_meta["class_names"] == CLASSES
    # a model with names of its own keeps them
    named = create_model("resnet20", num_classes=10, class_names=[str(i) for i in range(10)])
    assert adopt_class_names(named, bundle) is False and named.l2ul_meta["class_names"][0] == "0"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return pretrain_digits(tmp_path_factory.mktemp("base") / "base.safetensors")


def test_a_failed_runs_report_does_not_block_its_retry(capsys, base, tmp_path):
    out = tmp_path / "u.safetensors"
    argv = ["unlearn", "--model", base, "--forget-ids", "3,17", "--method", "neggrad", "--out", out, *FAST]
    rc, _, err = run(capsys, *argv, "--max-steps", "1")
    assert rc == 3 and not out.exists(), err
    assert json.loads((tmp_path / "u.safetensors.report.json").read_text())["output_model"]["path"] is None
    rc, _, err = run(capsys, *argv)  # the retry, with a budget that suffices, and no --overwrite
    assert rc == 0, err
    assert out.exists()


def tiny_named_npz(path):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_test=np.arange(20) % 10,
             class_names=np.array(CLASSES))
    return path


def test_convert_writes_a_model_file_from_a_foreign_checkpoint(capsys, tmp_path):
    from l2ul.models import create_model
    from l2ul.models.io import load_model

    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=10).net
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "r20.th")
    data = f"npz:{tiny_named_npz(tmp_path / 'tiny.npz')}"
    out = tmp_path / "r20.safetensors"
    rc, stdout, err = run(capsys, "convert", "--arch", "resnet20", "--weights", tmp_path / "r20.th", "--dataset", data,
                          "--out", out)
    assert rc == 0, err
    assert stdout == f"model: {out}  (resnet20, 10 classes, class names from {data})\n"
    model = load_model(out)
    assert model.l2ul_meta["class_names"] == CLASSES
    assert all(torch.equal(model.net.state_dict()[k], v) for k, v in net.state_dict().items())
    rc, stdout, err = run(capsys, "evaluate", "--model", out, "--dataset", data, "--retain-eval-size", "10")
    assert rc == 0 and "D_test" in stdout, err
    # refused: an existing output, no source, a dataset the model does not fit
    rc, _, err = run(capsys, "convert", "--arch", "resnet20", "--weights", tmp_path / "r20.th", "--out", out)
    assert_user_error(rc, err, "already exists", "--overwrite")
    rc, _, err = run(capsys, "convert", "--arch", "resnet20", "--out", tmp_path / "x")
    assert_user_error(rc, err, "one of the arguments --weights --pretrained is required")
    rc, _, err = run(capsys, "convert", "--arch", "resnet20", "--weights", tmp_path / "r20.th", "--dataset", "digits",
                     "--out", tmp_path / "x")
    assert_user_error(rc, err, "cannot process digits images")
    rc, _, err = run(capsys, "convert", "--arch", "small_cnn", "--pretrained", "--num-classes", "10",
                     "--out", tmp_path / "x")
    assert_user_error(rc, err, "small_cnn has no published weights", "--weights")
    assert not (tmp_path / "x").exists()


def test_unlearn_keeps_the_datasets_class_names_for_a_foreign_checkpoint(capsys, base, tmp_path):
    """A checkpoint without class names gets the dataset's in the unlearned model file, and the report names
    each instance's label and predictions by them."""
    from l2ul.models.io import load_model

    sd = tmp_path / "foreign.pt"
    torch.save(load_model(base).net.state_dict(), sd)
    out = tmp_path / "u.safetensors"
    rc, _, err = run(capsys, "unlearn", "--arch", "small_cnn", "--weights", sd, "--forget-ids", "3,17",
                     "--method", "neggrad", "--out", out, *FAST)
    assert rc == 0, err
    names = [str(i) for i in range(10)]                    # scikit-learn's digits: the digit names
    assert load_model(out).l2ul_meta["class_names"] == names
    per = json.loads((tmp_path / "u.safetensors.report.json").read_text())["per_instance"]
    assert all(p["label_name"] == names[p["label"]] and p["pred_after_name"] == names[p["pred_after"]] for p in per)


def test_a_deletion_that_does_not_hold_is_not_a_success(capsys, base, tmp_path):
    """The paper recipe with train-mode batch norm on the digits CNN meets the request only through drifted
    running statistics: its own status (verdict does_not_hold), exit code 5, and no model unless
    --keep-unconverged (then written, still exit 5)."""
    out = tmp_path / "u.safetensors"
    argv = ["unlearn", "--model", base, "--forget-ids", "3,17,42", "--method", "l2ul", "--out", out, *FAST,
            "--bn", "train"]
    rc, stdout, err = run(capsys, *argv)
    report = json.loads((tmp_path / "u.safetensors.report.json").read_text())
    assert report["converged"] is True and report["holds_with_original_bn_stats"] is False
    assert rc == 5 and report["verdict"] == "does_not_hold" and not out.exists(), err
    assert stdout.startswith("verdict: DOES NOT HOLD") and "no model was written" in stdout
    rc, stdout, err = run(capsys, *argv, "--keep-unconverged")      # the retry replaces the failed run's report
    assert rc == 5 and out.exists(), err
    assert json.loads((tmp_path / "u.safetensors.report.json").read_text())["output_model"]["path"] == str(out)
