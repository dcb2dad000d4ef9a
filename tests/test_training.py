"""Pre-training recipes (l2ul.training): accuracy, determinism, the paper's optimiser/schedule settings,
UTKFace gradient clipping and best-checkpoint selection, pretrain_to_file safety, input validation."""
import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

import l2ul.training as training
from l2ul.data import load_dataset
from l2ul.errors import L2ULError
from l2ul.evaluation import accuracy
from l2ul.models import create_model, load_model
from l2ul.training import RECIPES, TrainResult, pretrain, pretrain_to_file, resolve_settings


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _small_cnn(num_classes=10, seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=num_classes, width=kw.pop("width", 16), **kw)


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny_rgb_npz(tmp_path_factory):
    """32x32x3 uint8 images, 3 classes (40 train / 12 test) in the npz dataset format."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("rgb") / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y_train=np.arange(40) % 3,
             x_test=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), y_test=np.arange(12) % 3,
             class_names=np.array(["a", "b", "c"]))
    return path


@pytest.fixture(scope="module")
def utk_dir(tmp_path_factory):
    """50 tiny JPEGs named like UTKFace files (age_gender_race_date.jpg.chip.jpg), as in test_data.py."""
    root = tmp_path_factory.mktemp("utk")
    rng = np.random.default_rng(1)
    for i in range(50):
        age = int(rng.integers(1, 100))
        arr = np.random.default_rng(i).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{age}_{i % 2}_{i % 5}_2017{i:013d}.jpg.chip.jpg", format="JPEG")
    return root


# --------------------------------------------------------------------------------------------- recipes

def test_recipes_document_the_paper_settings():
    c, u, q = RECIPES["cifar"], RECIPES["utkface"], RECIPES["quick"]
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.scheduler, c.epochs, c.batch_size, c.augment) == \
        ("sgd", 0.01, 0.9, 5e-4, "cosine", 200, 128, True)
    assert (u.optimizer, u.scheduler, u.epochs, u.batch_size, u.grad_clip_value, u.select_best) == \
        ("adam", "onecycle", 100, 128, 0.1, True)
    assert dict(u.by_grouping) == {"TNN": (0.005, 1e-4), "MFD": (1e-4, 0.0), "balanced": (1e-3, 0.0),
                                   "groups": (1e-3, 1e-4), "tens": (1e-3, 1e-3)}
    assert (q.optimizer, q.lr, q.weight_decay, q.scheduler, q.epochs, q.batch_size, q.augment) == \
        ("adam", 1e-3, 0.0, None, 15, 64, False)
    s = resolve_settings("cifar", epochs=3, lr=0.1)
    assert (s["epochs"], s["lr"], s["batch_size"], s["weight_decay"]) == (3, 0.1, 128, 5e-4)


# --------------------------------------------------------------------------------------------- quick

def test_quick_recipe_learns_digits(digits, capsys):
    model = _small_cnn()
    logs = []
    r = pretrain(model, digits, recipe="quick", epochs=3, progress=False, log=logs.append)
    assert isinstance(r, TrainResult) and r.model is model and not model.training
    assert r.test_acc >= 0.90, r.history
    assert r.test_acc == pytest.approx(accuracy(model, digits.test))
    assert [h["epoch"] for h in r.history] == [1, 2, 3] and r.best_epoch == 3 and r.epochs == 3
    assert {"train_loss", "train_acc", "test_acc", "lr", "seconds"} <= set(r.history[0])
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert sum(line.startswith("epoch ") for line in logs) == 3  # one line per epoch
    assert r.settings["steps_per_epoch"] == math.ceil(1437 / 64)
    assert capsys.readouterr().err == ""  # progress=False: no bar


def test_same_seed_same_weights_and_rng_untouched(digits):
    runs = []
    for seed in (0, 0, 1):
        model = _small_cnn(seed=0)
        before = torch.get_rng_state()
        pretrain(model, digits, epochs=2, max_batches=3, seed=seed, progress=False, log=None)
        assert torch.equal(torch.get_rng_state(), before)  # the caller's global RNG is restored
        runs.append(model)
    assert _same_state(runs[0], runs[1])
    assert not _same_state(runs[0], runs[2])


def test_progress_bar_goes_to_stderr(digits, capsys):
    pretrain(_small_cnn(), digits, epochs=1, max_batches=2, progress=True, log=None)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and captured.out == ""


# --------------------------------------------------------------------------------------------- cifar

def test_cifar_recipe_sgd_cosine_schedule(tiny_rgb_npz, tmp_path, monkeypatch):
    made = []

    class SpySGD(torch.optim.SGD):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(torch.optim, "SGD", SpySGD)
    out = tmp_path / "cifar.safetensors"
    r = pretrain_to_file("small_cnn", f"npz:{tiny_rgb_npz}", out, recipe="cifar", epochs=2, batch_size=8,
                         max_batches=2, progress=False, log=None, model_kwargs={"width": 8})
    assert len(made) == 1
    g = made[0].param_groups[0]
    assert (g["momentum"], g["weight_decay"], g["initial_lr"]) == (0.9, 5e-4, 0.01)
    # cosine with T_max = epochs = 2, stepped per epoch: 0.01 in epoch 1, 0.005 in epoch 2, 0 afterwards
    assert [h["lr"] for h in r.history] == pytest.approx([0.01, 0.005])
    assert g["lr"] == pytest.approx(0.0, abs=1e-12)
    assert r.settings["augment"] and r.settings["steps_per_epoch"] == 2
    assert r.model.l2ul_meta["arch_kwargs"]["in_channels"] == 3  # taken from the RGB images
    loaded = load_model(out)
    assert loaded.l2ul_meta["class_names"] == ["a", "b", "c"]
    assert _same_state(loaded, r.model.cpu())
    # the same arguments (augmentation included) give the same weights
    out2 = tmp_path / "cifar2.safetensors"
    pretrain_to_file("small_cnn", f"npz:{tiny_rgb_npz}", out2, recipe="cifar", epochs=2, batch_size=8,
                     max_batches=2, progress=False, log=None, model_kwargs={"width": 8})
    assert _same_state(load_model(out2), loaded)


# --------------------------------------------------------------------------------------------- utkface

def test_utkface_recipe_grouping_clipping_onecycle(utk_dir, monkeypatch):
    bundle = load_dataset(f"utkface:{utk_dir}?grouping=TNN", augment=True)
    seen = {"calls": 0, "max_after": 0.0, "max_before": 0.0}
    real_clip = torch.nn.utils.clip_grad_value_

    def spy_clip(params, clip_value, **kw):
        params = list(params)
        seen["calls"] += 1
        seen["clip"] = clip_value
        seen["max_before"] = max(seen["max_before"], max(float(p.grad.abs().max()) for p in params))
        real_clip(params, clip_value, **kw)
        seen["max_after"] = max(seen["max_after"], max(float(p.grad.abs().max()) for p in params))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", spy_clip)
    made = []

    class SpyAdam(torch.optim.Adam):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    model = _small_cnn(num_classes=bundle.num_classes, in_channels=3, width=8)
    r = pretrain(model, bundle, recipe="utkface", epochs=2, batch_size=8, progress=False, log=None)
    steps = r.settings["steps_per_epoch"]
    assert steps == 5  # 40 training images / 8
    assert seen["calls"] == 2 * steps and seen["clip"] == 0.1
    assert seen["max_after"] <= 0.1 + 1e-7 < seen["max_before"]  # clipping did something
    g = made[0].param_groups[0]
    assert (g["max_lr"], g["weight_decay"]) == (0.005, 1e-4)  # TNN grouping
    assert r.settings["grouping"] == "TNN"
    # OneCycle over exactly epochs * steps_per_epoch steps: the last step runs at max_lr / (25 * 1e4)
    assert r.history[-1]["lr"] == pytest.approx(0.005 / 25 / 1e4, rel=1e-3)
    assert r.history[0]["lr"] > 0.005 / 25  # the first epoch ends past warm-up
    assert "val_acc" in r.history[0] and r.val_acc is not None and r.test_acc is not None


def test_utkface_keeps_best_validation_checkpoint(utk_dir, monkeypatch):
    bundle = load_dataset(f"utkface:{utk_dir}")  # balanced grouping
    model = _small_cnn(num_classes=bundle.num_classes, in_channels=3, width=8)
    scripted = iter([0.2, 0.8, 0.4])  # validation accuracy per epoch: best is epoch 2
    states = []
    real_accuracy = training.accuracy

    def fake_accuracy(m, data, **kw):
        value = next(scripted, None)
        if value is None:  # after training: the test accuracy of the returned model
            return real_accuracy(m, data, **kw)
        states.append(copy.deepcopy(m.state_dict()))
        return value

    monkeypatch.setattr(training, "accuracy", fake_accuracy)
    r = pretrain(model, bundle, recipe="utkface", epochs=3, batch_size=8, progress=False, log=None)
    assert [h["val_acc"] for h in r.history] == [0.2, 0.8, 0.4]
    assert r.best_epoch == 2 and r.val_acc == 0.8
    final = model.state_dict()
    assert all(torch.equal(final[k], states[1][k]) for k in final)
    assert not all(torch.equal(final[k], states[2][k]) for k in final)
    assert r.settings["lr"] == 1e-3 and r.settings["weight_decay"] == 0.0


# --------------------------------------------------------------------------------------------- to file / errors

def test_pretrain_to_file_refuses_existing_output_before_training(tmp_path, monkeypatch):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"precious")

    def must_not_run(*a, **kw):
        raise AssertionError("trained or loaded data although the output exists")

    monkeypatch.setattr(training, "pretrain", must_not_run)
    monkeypatch.setattr(training, "load_dataset", must_not_run)
    with pytest.raises(L2ULError, match="already exists"):
        pretrain_to_file("small_cnn", "digits", out, log=None)
    with pytest.raises(L2ULError, match="unknown pre-training recipe"):
        pretrain_to_file("small_cnn", "digits", tmp_path / "new.safetensors", recipe="imagenet", log=None)
    assert out.read_bytes() == b"precious"


def test_pretrain_to_file_writes_loadable_model(tmp_path):
    out = tmp_path / "sub" / "digits.safetensors"
    r = pretrain_to_file("small_cnn", "digits", out, epochs=1, max_batches=4, progress=False, log=None,
                         model_kwargs={"width": 8})
    loaded = load_model(out)
    assert loaded.l2ul_meta["num_classes"] == 10 and loaded.l2ul_meta["class_names"] == [str(i) for i in range(10)]
    assert _same_state(loaded, r.model)
    assert [p.name for p in out.parent.iterdir()] == ["digits.safetensors"]  # no partial files left
    with pytest.raises(L2ULError, match="already exists"):
        pretrain_to_file("small_cnn", "digits", out, epochs=1, max_batches=1, log=None)
    pretrain_to_file("small_cnn", "digits", out, epochs=1, max_batches=1, progress=False, log=None,
                     overwrite=True, model_kwargs={"width": 8})


def test_input_validation(digits):
    with pytest.raises(L2ULError, match="3 output classes but the dataset digits has 10"):
        pretrain(_small_cnn(num_classes=3), digits, progress=False, log=None)
    with pytest.raises(L2ULError, match=r"does not accept the images of digits \(shape \[1, 8, 8\]\)"):
        pretrain(_small_cnn(in_channels=3), digits, progress=False, log=None)
    with pytest.raises(L2ULError, match=r"unknown pre-training recipe 'fast'.*\n.*cifar"):
        pretrain(_small_cnn(), digits, recipe="fast", log=None)
    for bad in ({"epochs": 0}, {"batch_size": -1}, {"lr": 0}, {"weight_decay": -1.0}, {"max_batches": 0}):
        with pytest.raises(L2ULError):
            pretrain(_small_cnn(), digits, progress=False, log=None, **bad)
    with pytest.raises(L2ULError, match="grouping"):
        resolve_settings("utkface", epochs=1, grouping="decades")
