"""l2ul.loading: one way to get a model (load_model_from) and one check that it fits the data (check_fit)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from l2ul.data import load_dataset
from l2ul.errors import ConfigError, DataError, L2ULError, ModelFileError
from l2ul.loading import check_fit, load_model_from
from l2ul.models import create_model, save_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("loading")
    torch.manual_seed(0)
    model = create_model("small_cnn", 10).eval()  # default options: arch + weights rebuild it as is
    save_model(model, d / "m.safetensors")
    torch.save(model.net.state_dict(), d / "w.pt")
    return model, d


# ------------------------------------------------------------------------------------------- load_model_from

def test_model_file_loads_in_eval_mode(files):
    model, d = files
    loaded = load_model_from(model=d / "m.safetensors")
    assert not loaded.training and loaded.l2ul_meta == model.l2ul_meta
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert load_model_from(model=str(d / "m.safetensors"), num_classes=10).l2ul_meta["num_classes"] == 10


def test_arch_and_weights_import_a_checkpoint_inferring_the_class_count(files):
    model, d = files
    loaded = load_model_from(arch="small_cnn", weights=d / "w.pt")
    assert loaded.l2ul_meta["num_classes"] == 10 and not loaded.training
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("kwargs, words", [
    ({}, ["no model given", "model=FILE", "arch=NAME with weights=PATH"]),
    ({"model": "m", "arch": "small_cnn"}, ["either model=FILE", "not both"]),
    ({"model": "m", "weights": "w.pt"}, ["either model=FILE", "not both"]),
    ({"arch": "small_cnn"}, ["arch needs weights", "weights=PATH"]),
    ({"weights": "w.pt"}, ["weights needs arch", "arch=NAME"]),
    ({"model": 3}, ["model must be a file path", "int"]),
    ({"arch": 3, "weights": "w.pt"}, ["arch must be an architecture name"]),
])
def test_bad_combinations_name_the_parameters_not_cli_flags(kwargs, words):
    with pytest.raises(ConfigError) as info:
        load_model_from(**kwargs)
    message = str(info.value)
    assert all(w in message for w in words), message
    assert "--" not in message and "\n" not in message


def test_num_classes_must_agree_with_a_model_file(files):
    _, d = files
    with pytest.raises(ConfigError, match=r"has 10 classes but num_classes=5.*leave num_classes out"):
        load_model_from(model=d / "m.safetensors", num_classes=5)


def test_file_problems_stay_model_file_errors(files, tmp_path):
    _, d = files
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_from(model=tmp_path / "missing.safetensors")
    with pytest.raises(ModelFileError, match="looks like a PyTorch pickle"):
        load_model_from(model=d / "w.pt")
    with pytest.raises(ModelFileError, match="does not fit resnet20"):
        load_model_from(arch="resnet20", weights=d / "w.pt")
    with pytest.raises(L2ULError, match="unknown model 'nope'"):
        load_model_from(arch="nope", weights=d / "w.pt")


# ------------------------------------------------------------------------------------------------- check_fit

def test_fitting_model_returns_the_class_count_and_keeps_its_state(digits):
    model = create_model("small_cnn", 10, width=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert check_fit(model, digits) == 10
    assert check_fit(model, digits, device="cpu") == 10
    assert model.training and all(m.training for m in model.modules())  # train/eval flags restored
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BN statistics untouched


def test_a_plain_module_works_too(digits):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert check_fit(net, digits) == 10


def test_class_count_mismatch_is_a_data_error(digits):
    with pytest.raises(DataError) as info:
        check_fit(create_model("small_cnn", 5, width=4), digits)
    message = str(info.value)
    for words in ("5 classes", "digits has 10", "use a model trained on this dataset", "num_classes=10"):
        assert words in message, message


def test_images_the_model_cannot_take_are_a_data_error(digits):
    rgb = create_model("small_cnn", 10, in_channels=3, width=4)
    with pytest.raises(DataError, match=r"cannot process digits images of shape \(1, 8, 8\) \(DataError: .*3 "
                                        r"channel.*use a model built for this dataset"):
        check_fit(rgb, digits)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))  # expects 10x10 images
    with pytest.raises(DataError, match=r"cannot process digits images.*RuntimeError"):
        check_fit(wide, digits)


class _Returns(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out(x)


@pytest.mark.parametrize("out, shapes", [
    (lambda x: {"scores": x}, ["dict"]),                                             # not a logits tensor
    (lambda x: x.flatten(1)[:, :10].unsqueeze(1), ["[1, 1, 10]", "(1, 1, 10)"]),  # 3-D output
    (lambda x: x.flatten()[:10], ["[10]", "(10,)"]),                                # batch dimension lost
])
def test_outputs_that_are_not_logits_are_a_data_error(digits, out, shapes):
    with pytest.raises(DataError) as info:
        check_fit(_Returns(out), digits)
    message = str(info.value)
    assert any(s in message for s in shapes) and "\n" not in message, message
    assert "logits" in message, message


def test_wrong_argument_types(digits):
    with pytest.raises(L2ULError, match="must be a torch.nn.Module"):
        check_fit("model.safetensors", digits)
    with pytest.raises(L2ULError, match="must be a DatasetBundle"):
        check_fit(create_model("small_cnn", 10, width=4), "digits")
