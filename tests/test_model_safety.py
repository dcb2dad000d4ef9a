"""A model file's metadata never reaches outside it (issue #15 item 3).

The files here are crafted with safetensors directly, the way an attacker (or a damaged disk) would: l2ul's
own writer refuses to produce them. Every case must end in a one-line ModelFileError naming the problem,
and the cases that used to download weights, read another file or call the Hugging Face Hub must not even
try (the network and file-loading functions are patched to record any call).
"""
from __future__ import annotations

import json
import math
import socket
import time

import pytest
import safetensors.torch
import torch
import torchvision
from torch import nn

import l2ul.models._checkpoint as checkpoint_mod
import l2ul.models._factory as factory_mod
from l2ul.errors import L2ULError, ModelFileError
from l2ul.models import check_finite_model, create_model, import_state_dict, load_model, register_model, save_model
from l2ul.models._registry import _REGISTRY, LOADING_OPTIONS
from l2ul.models.torchvision_models import torchvision_file_options

TINY_VIT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                image_size=32, patch_size=8)


def _small(**kw):
    torch.manual_seed(0)
    return create_model("small_cnn", 4, width=4, **kw).eval()


def _craft(path, meta, tensors=None):
    """An l2ul model file with exactly this metadata and these tensors (default: a small_cnn's)."""
    if tensors is None:
        tensors = _small().state_dict()
    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "l2ul-model", "version": "1",
                                                              "meta": json.dumps(meta)})
    return path


def _meta(**changes):
    meta = json.loads(json.dumps(_small().l2ul_meta))
    for key, value in changes.items():
        if key.startswith("kw_"):
            meta["arch_kwargs"][key[3:]] = value
        else:
            meta[key] = value
    return meta


def _refused(path, *words):
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for w in words:
        assert w in message, f"{w!r} not in: {message}"
    return message


@pytest.fixture
def outside(monkeypatch, tmp_path):
    """Records every attempt to reach the network or load weights from elsewhere (list of strings)."""
    calls = []

    def recorder(label, original=None, only=None):
        def fake(*args, **kwargs):
            target = str(args[0]) if args else ""
            if only is None or only in target:
                calls.append(f"{label}({target})")
                raise RuntimeError(f"test: {label} must not be called")
            return original(*args, **kwargs)
        return fake

    monkeypatch.setattr(socket.socket, "connect", recorder("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", recorder("socket.create_connection"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", recorder("torch.hub.load_state_dict_from_url"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", recorder("torch.hub.download_url_to_file"))
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", recorder("WeightsEnum.get_state_dict"))
    other = tmp_path / "other_weights.pt"
    torch.save(_small().net.state_dict(), other)  # a checkpoint that would load fine if it were opened
    for mod in (factory_mod, checkpoint_mod):
        monkeypatch.setattr(mod, "_read_checkpoint", recorder("_read_checkpoint", mod._read_checkpoint, "other"))
    monkeypatch.setattr(torch, "load", recorder("torch.load", torch.load, "other"))
    try:
        import transformers
    except ImportError:
        transformers = None
    if transformers is not None:
        for cls in (transformers.ViTForImageClassification, transformers.AutoImageProcessor,
                    transformers.ViTConfig):
            monkeypatch.setattr(cls, "from_pretrained", recorder(f"{cls.__name__}.from_pretrained"))
    return calls, other


# ----------------------------------------------------------------------------------------- forbidden keys

FORBIDDEN = {  # family -> (arch, arch_kwargs with a loading option, the option)
    "torchvision pretrained": ("imagenet_resnet18", {"pretrained": True}, "pretrained"),
    "torchvision weights": ("imagenet_resnet50", {"weights": "{other}"}, "weights"),
    "tv family pretrained": ("tv:resnet18", {"pretrained": True}, "pretrained"),
    "tv family weights": ("tv:mobilenet_v3_small", {"weights": "DEFAULT"}, "weights"),
    "tv family progress": ("tv:resnet18", {"progress": True}, "progress"),
    "cifar weights": ("resnet20", {"weights": "{other}"}, "weights"),
    "paper resnet download": ("cifar_resnet18", {"maxpool": True, "download": True}, "download"),
    "small cache_dir": ("small_cnn", {"width": 4, "cache_dir": "/tmp"}, "cache_dir"),
    "small weights": ("small_cnn", {"width": 4, "weights": "{other}"}, "weights"),
    "hf name_or_path": ("hf_vit", {"name_or_path": "google/vit-base-patch16-224", "input_size": [224, 224]},
                        "name_or_path"),
    "hf private name_or_path": ("hf_vit", {"_name_or_path": "google/vit-base-patch16-224"}, "_name_or_path"),
    "hf config attn kernel": ("hf_vit", {"vit_config": {**TINY_VIT, "attn_implementation": "kernels-community/x"}},
                              "vit_config.attn_implementation"),
    "hf config remote code": ("hf_vit", {"vit_config": {**TINY_VIT, "auto_map": {"AutoModel": "x--y.Z"}}},
                              "vit_config.auto_map"),
}


@pytest.mark.parametrize("case", list(FORBIDDEN))
def test_loading_options_in_a_file_are_refused_before_anything_is_fetched(case, tmp_path, outside):
    arch, kwargs, key = FORBIDDEN[case]
    if arch == "hf_vit":
        pytest.importorskip("transformers")
    calls, other = outside
    kwargs = json.loads(json.dumps(kwargs).replace("{other}", str(other)))
    path = _craft(tmp_path / "m.safetensors", _meta(arch=arch, arch_kwargs=kwargs))
    _refused(path, f"arch_kwargs.{key}", "is a loading option", "download weights or read another file")
    assert calls == []


def test_a_top_level_weights_key_is_refused(tmp_path, outside):
    calls, other = outside
    path = _craft(tmp_path / "m.safetensors", _meta(weights=str(other)))
    _refused(path, "key 'weights'", "loading option")
    assert calls == []


@pytest.mark.parametrize("arch, kwargs, key, allowed", [
    ("small_cnn", {"depth": 3}, "depth", "allowed: in_channels, width"),
    ("small_cnn", {"mean": [0.5]}, "mean", "allowed: in_channels, width"),  # create_model's own parameter
    ("resnet20", {"width": 16}, "width", "allowed: none"),
    ("imagenet_resnet18", {"num_classes": 5}, "num_classes", "allowed: none"),
    ("hf_vit", {"vit_config": {**TINY_VIT, "not_a_vit_key": 1}}, "vit_config.not_a_vit_key", "ViTConfig options"),
])
def test_unknown_options_are_refused_naming_the_allow_list(arch, kwargs, key, allowed, tmp_path):
    if arch == "hf_vit":
        pytest.importorskip("transformers")
    path = _craft(tmp_path / "m.safetensors", _meta(arch=arch, arch_kwargs=kwargs))
    _refused(path, f"arch_kwargs.{key} is not one of the", allowed)


def test_each_family_declares_its_allow_list():
    from l2ul.models._registry import _spec

    assert set(_spec("small_cnn").file_option_types()) == {"in_channels", "width"}
    assert set(_spec("mlp").file_option_types()) == {"in_channels", "pool_size", "hidden"}
    assert set(_spec("cifar_resnet50").file_option_types()) == {"maxpool"}
    assert _spec("resnet20").file_option_types() == {} == _spec("imagenet_resnet18").file_option_types()
    assert set(_spec("hf_vit").file_option_types()) == {"vit_config", "input_size"}
    tv = set(_spec("tv:resnet18").file_option_types())
    assert {"zero_init_residual", "dropout", "aux_logits", "image_size"} <= tv
    assert not tv & (LOADING_OPTIONS | {"num_classes"}) and not set(torchvision_file_options()) & {"weights"}


def test_a_registered_family_can_declare_file_options(tmp_path):
    def custom(num_classes: int, width: int = 4, cache_dir: str = "/tmp") -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.Linear(width, num_classes))

    try:
        register_model("safety_custom", mean=(0.5,), std=(0.5,), file_options=("width",))(custom)
        model = create_model("safety_custom", 3, width=5, cache_dir="/elsewhere")
        assert model.l2ul_meta["arch_kwargs"] == {"width": 5}  # loading options are never recorded
        loaded = load_model(save_model(model, tmp_path / "c.safetensors"))
        assert loaded.l2ul_meta == model.l2ul_meta
        bad = _craft(tmp_path / "bad.safetensors", {**model.l2ul_meta, "arch_kwargs": {"width": 5, "cache_dir": "/x"}},
                     model.state_dict())
        _refused(bad, "arch_kwargs.cache_dir is a loading option")
        wrong = _craft(tmp_path / "wrong.safetensors", {**model.l2ul_meta, "arch_kwargs": {"width": "5"}},
                       model.state_dict())
        _refused(wrong, "arch_kwargs.width must be an integer")  # typed by the builder's annotation
        with pytest.raises(ValueError, match="cache_dir cannot be file options"):
            register_model("safety_custom2", mean=(0.5,), std=(0.5,), file_options=("cache_dir",))(custom)
        with pytest.raises(ValueError, match="depth are not parameters of custom"):
            register_model("safety_custom2", mean=(0.5,), std=(0.5,), file_options=("depth",))(custom)
    finally:
        _REGISTRY.pop("safety_custom", None)
        _REGISTRY.pop("safety_custom2", None)


# ------------------------------------------------------------------------------------------- wrong types

WRONG = {
    "width a string": (dict(kw_width="abc"), "arch_kwargs.width must be an integer in 1..1000000, got 'abc'"),
    "width negative": (dict(kw_width=-3), "arch_kwargs.width must be an integer in 1..1000000, got -3"),
    "width a bool": (dict(kw_width=True), "arch_kwargs.width must be an integer"),
    "width a float": (dict(kw_width=4.5), "arch_kwargs.width must be an integer"),
    "num_classes a string": (dict(num_classes="4"), "num_classes must be an integer in 1..100000, got '4'"),
    "num_classes a float": (dict(num_classes=4.0), "num_classes must be an integer"),
    "num_classes zero": (dict(num_classes=0), "num_classes must be an integer in 1..100000, got 0"),
    "class_names a number": (dict(class_names=12345), "class_names must be a list of strings, got 12345"),
    "class_names of numbers": (dict(class_names=[1, 2, 3, 4]), "class_names[0] must be a string, got 1"),
    "class_names too few": (dict(class_names=["a"]), "class_names has 1 names for 4 classes"),
    "arch_kwargs a list": (dict(arch_kwargs=["width", 4]), "arch_kwargs must be a JSON object"),
    "mean a string": (dict(mean="abc"), "mean must be a list of finite numbers, got 'abc'"),
    "mean NaN": (dict(mean=[math.nan]), "mean[0] must be a finite number, got nan"),
    "std zero": (dict(std=[0.0]), "std must be positive on every channel"),
    "std negative": (dict(std=[-0.5]), "std must be positive on every channel"),
    "std too long": (dict(std=[0.5, 0.5]), "mean has 1 channels but std has 2"),
    "std empty": (dict(std=[]), "std must list 1..64 per-channel values, got 0"),
    "input_shape": (dict(input_shape="1x8x8"), "input_shape must be a list of integers"),
    "arch a number": (dict(arch=12), "arch must be an architecture name, got 12"),
    "arch unknown": (dict(arch="resnet9000"), "arch 'resnet9000' is not an architecture this l2ul knows"),
    "arch unknown tv": (dict(arch="tv:resnet9000"), "arch 'tv:resnet9000' is not an architecture"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_values_of_the_wrong_type_or_range_are_one_line_errors(case, tmp_path):
    changes, words = WRONG[case]
    path = _craft(tmp_path / "m.safetensors", _meta(**changes))
    _refused(path, "unusable l2ul metadata", words)


@pytest.mark.parametrize("arch, kwargs, words", [
    ("mlp", {"hidden": "abc"}, "arch_kwargs.hidden must be a list of integers in 1..1000000, got 'abc'"),
    ("mlp", {"hidden": [16, 0]}, "arch_kwargs.hidden[1] must be an integer in 1..1000000, got 0"),
    ("cifar_resnet18", {"maxpool": "yes"}, "arch_kwargs.maxpool must be true or false, got 'yes'"),
    ("hf_vit", {"vit_config": ["hidden_size", 32]}, "arch_kwargs.vit_config must be a JSON object"),
    ("hf_vit", {"vit_config": TINY_VIT, "input_size": "big"}, "arch_kwargs.input_size must be an integer"),
    ("hf_vit", {"vit_config": {**TINY_VIT, "hidden_act": "x" * 5000}}, "vit_config.hidden_act is a string of 5000"),
    ("hf_vit", {"vit_config": {**TINY_VIT, "hidden_size": 10 ** 9}}, "vit_config.hidden_size must be a finite number"),
    ("tv:resnet18", {"zero_init_residual": [[[[[[1]]]]]]}, "nests deeper than 4 levels"),
    ("tv:resnet18", {"groups": [1] * 5000}, "arch_kwargs.groups has 5000 items"),
])
def test_option_types_follow_the_builders_annotations(arch, kwargs, words, tmp_path):
    if arch == "hf_vit":
        pytest.importorskip("transformers")
    path = _craft(tmp_path / "m.safetensors", _meta(arch=arch, arch_kwargs=kwargs))
    _refused(path, words)


def test_options_the_builder_rejects_are_one_line_errors(tmp_path):
    # on the tv allow-list (another torchvision class takes it) but not an option of ResNet-18
    path = _craft(tmp_path / "m.safetensors", _meta(arch="tv:resnet18", arch_kwargs={"aux_logits": True}))
    _refused(path, "cannot rebuild its architecture tv:resnet18", "TypeError", "aux_logits")
    path = _craft(tmp_path / "b.safetensors", _meta(arch="tv:resnet18", arch_kwargs={"block": 3}))
    _refused(path, "cannot rebuild its architecture tv:resnet18", "TypeError")


def test_metadata_that_is_not_an_object_is_damaged(tmp_path):
    path = tmp_path / "m.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(path),
                                metadata={"format": "l2ul-model", "version": "1", "meta": "[1, 2]"})
    _refused(path, "damaged l2ul metadata", "not a JSON object")


# ---------------------------------------------------------------------------------- oversized architectures

def test_huge_num_classes_is_refused(tmp_path):
    path = _craft(tmp_path / "m.safetensors", _meta(num_classes=10 ** 12))
    _refused(path, "num_classes must be an integer in 1..100000, got 1000000000000")
    path = _craft(tmp_path / "c.safetensors", _meta(class_names=["x"] * 10 ** 6))
    _refused(path, "class_names has 1000000 names for 4 classes")


def test_many_classes_with_names_round_trip(tmp_path):
    model = create_model("mlp", 3000, hidden=[8], class_names=[f"c{i}" for i in range(3000)])
    assert load_model(save_model(model, tmp_path / "m.safetensors")).l2ul_meta == model.l2ul_meta


def test_an_oversized_architecture_is_refused_without_allocating_it(tmp_path):
    # within every cap, but small_cnn of width 1e6 would need ~3e14 bytes; the file holds a width-4 model
    start = time.perf_counter()
    path = _craft(tmp_path / "w.safetensors", _meta(kw_width=1_000_000))
    _refused(path, "stored tensors do not match its architecture small_cnn", "shape mismatches")
    path = _craft(tmp_path / "n.safetensors", _meta(num_classes=100_000))
    _refused(path, "stored tensors do not match", "net.13.weight [4, 16] vs [100000, 16]")
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------------- another architecture

def test_tensors_of_another_architecture_are_a_model_file_error(tmp_path):
    resnet = create_model("resnet20", 4).state_dict()
    path = _craft(tmp_path / "r.safetensors", _meta(), resnet)  # says small_cnn, holds a ResNet-20
    _refused(path, "stored tensors do not match its architecture small_cnn with 4 classes", "missing net.0.weight",
             "unexpected net.bn1.bias", "another architecture")
    wider = create_model("small_cnn", 4, width=8).state_dict()
    path = _craft(tmp_path / "w.safetensors", _meta(), wider)
    _refused(path, "shape mismatches (file vs architecture) net.0.weight [8, 1, 3, 3] vs [4, 1, 3, 3]")
    state = _small().state_dict()
    path = _craft(tmp_path / "m.safetensors", _meta(), {k: v for k, v in state.items() if k != "net.1.running_var"})
    _refused(path, "missing net.1.running_var")
    path = _craft(tmp_path / "x.safetensors", _meta(), {**state, "net.extra": torch.zeros(2)})
    _refused(path, "unexpected net.extra")


def test_architectures_that_cannot_be_built_on_the_meta_device_still_load_strictly(tmp_path):
    model = create_model("tv:regnet_x_400mf", 3).eval()  # RegNet's init cannot run on the meta device
    loaded = load_model(save_model(model, tmp_path / "r.safetensors"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    path = _craft(tmp_path / "s.safetensors", {**model.l2ul_meta}, _small().state_dict())
    _refused(path, "stored tensors do not match its architecture tv:regnet_x_400mf")


# ----------------------------------------------------------------------------------------- bad tensors

def _with(**edits):
    state = {k: v.clone() for k, v in _small().state_dict().items()}
    for key, fn in edits.items():
        fn(state[key.replace("__", ".")])
    return state


@pytest.mark.parametrize("edit, words", [
    (dict(net__0__weight=lambda t: t.view(-1)[3].fill_(math.nan)), "tensor net.0.weight holds 1 non-finite value"),
    (dict(net__13__bias=lambda t: t.fill_(math.inf)), "tensor net.13.bias holds 4 non-finite value"),
    (dict(net__1__running_mean=lambda t: t.view(-1)[0].fill_(-math.inf)), "tensor net.1.running_mean holds 1"),
])
def test_nan_or_inf_weights_are_refused(edit, words, tmp_path):
    path = _craft(tmp_path / "m.safetensors", _meta(), _with(**edit))
    _refused(path, words, "NaN or inf")


def test_zero_std_tensor_is_refused(tmp_path):
    path = _craft(tmp_path / "m.safetensors", _meta(), _with(std=lambda t: t.zero_()))
    _refused(path, "tensor std (the input normalisation std) must be positive")
    path = _craft(tmp_path / "n.safetensors", _meta(), _with(std=lambda t: t.fill_(math.nan)))
    _refused(path, "tensor std holds 1 non-finite value")
    path = _craft(tmp_path / "d.safetensors", _meta(), _with(std=lambda t: t.fill_(0.25)))  # metadata says 0.5
    _refused(path, "its std tensor [0.25] differs from the std in its metadata [0.5]")


def test_negative_running_var_is_refused(tmp_path):
    path = _craft(tmp_path / "m.safetensors", _meta(), _with(net__5__running_var=lambda t: t.view(-1)[2].fill_(-1)))
    _refused(path, "tensor net.5.running_var (a BatchNorm running variance) holds negative values", "min -1")


def test_import_state_dict_and_in_memory_models_get_the_same_checks(tmp_path):
    state = _with(net__0__weight=lambda t: t.view(-1)[0].fill_(math.nan))
    torch.save({k[4:]: v for k, v in state.items() if k.startswith("net.")}, tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match=r"nan\.pt: tensor net\.0\.weight holds 1 non-finite"):
        import_state_dict("small_cnn", tmp_path / "nan.pt", num_classes=4, width=4)
    model = _small()
    check_finite_model(model)  # a healthy model passes
    with torch.no_grad():
        model.net[1].running_var[0] = -2.0
    with pytest.raises(ModelFileError, match=r"^tensor net\.1\.running_var \(a BatchNorm running variance\)"):
        check_finite_model(model)
    plain = torch.nn.Linear(2, 2)
    with torch.no_grad():
        plain.bias[1] = math.inf
    with pytest.raises(ModelFileError, match="tensor bias holds 1 non-finite"):
        check_finite_model(plain)


# ------------------------------------------------------------------------------------ what l2ul writes

def test_save_model_refuses_metadata_load_model_would_refuse(tmp_path):
    model = _small()
    model.l2ul_meta["arch_kwargs"]["weights"] = "/other/file"
    with pytest.raises(L2ULError, match="cannot save this model.*arch_kwargs.weights is a loading option"):
        save_model(model, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_hf_vit_records_only_architecture_keys_and_round_trips(tmp_path):
    pytest.importorskip("transformers")
    model = create_model("hf_vit", 3, vit_config=TINY_VIT).eval()
    config = model.l2ul_meta["arch_kwargs"]["vit_config"]
    assert config["hidden_size"] == 32 and not {"id2label", "_name_or_path", "transformers_version"} & set(config)
    loaded = load_model(save_model(model, tmp_path / "v.safetensors"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
