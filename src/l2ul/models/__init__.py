"""Model registry: build classifiers by name, timm-style.

Every model l2ul creates is a :class:`NormalizedClassifier`: it takes NCHW float images in [0, 1],
normalises them (and optionally resizes them) inside the model and returns logits as a plain tensor. It
carries ``l2ul_meta`` (architecture name and options, classes, normalisation), which is what
:func:`save_model` writes next to the weights so :func:`load_model` can rebuild the model without pickles.

>>> from l2ul.models import create_model, list_models
>>> model = create_model("resnet20", num_classes=10)                      # random init
>>> model = create_model("resnet20", weights="cifar10_resnet20.th")       # foreign checkpoint  # doctest: +SKIP
>>> model = create_model("tv:mobilenet_v3_small", num_classes=1000, pretrained=True)  # download # doctest: +SKIP

Names: see :func:`list_models`; in addition ``tv:<name>`` builds any torchvision classification model.

A builder registered with :func:`register_model` is ``fn(num_classes, **options) -> nn.Module``. It may
accept ``pretrained`` (download weights). It may set ``net.l2ul_resolved``, a dict with any of
``arch_kwargs`` (the options that rebuild this architecture offline), ``mean``, ``std``, ``input_size``
and ``class_names``, to report what it learnt while building (``hf_vit`` does, from a Hub config).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, L2ULError

__all__ = [
    "NormalizedClassifier", "register_model", "create_model", "list_models", "model_info",
    "save_model", "load_model", "import_state_dict", "model_sha256", "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Floats = Sequence[float]
#: a default that is either a value or a function of the builder's options (defaults filled in)
Default = Union[Any, Callable[[Dict[str, Any]], Any]]


class NormalizedClassifier(nn.Module):
    """An image classifier that takes NCHW float images in [0, 1] and returns logits ``[N, num_classes]``.

    ``forward`` resizes the images to ``input_size`` (bilinear; only if given and different), normalises
    them with ``mean``/``std`` (buffers shaped ``[1, C, 1, 1]``, saved in the state dict) and runs ``net``.
    Outputs with a ``.logits`` attribute (Hugging Face, torchvision Inception) are unwrapped to a tensor.

    ``l2ul_meta`` describes how to rebuild the model: ``arch``, ``arch_kwargs``, ``num_classes``,
    ``class_names`` (list or None), ``mean``, ``std``, ``input_shape`` ([C, H, W] the model was designed
    for, or None for any size).
    """

    def __init__(self, net: nn.Module, mean: Floats, std: Floats, *,
                 input_size: Optional[Sequence[int]] = None, meta: Optional[Dict[str, Any]] = None):
        super().__init__()
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if not mean or len(mean) != len(std) or min(std) <= 0:
            raise L2ULError(f"mean {mean} and std {std} must be per-channel lists of equal length with std > 0")
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1))
        self.input_size: Optional[Tuple[int, int]] = _pair(input_size) if input_size is not None else None
        self.l2ul_meta: Dict[str, Any] = {
            "arch": None, "arch_kwargs": {}, "num_classes": None, "class_names": None, "input_shape": None,
            **(meta or {}), "mean": mean, "std": std,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.mean.shape[1]
        if x.dim() != 4 or x.shape[1] != channels:
            raise DataError(f"the model expects images shaped [N, {channels}, H, W] in [0, 1], got "
                            f"{list(x.shape)}; convert the data to {channels} channel(s)")
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        out = self.net((x - self.mean) / self.std)
        return out if isinstance(out, torch.Tensor) else out.logits

    def extra_repr(self) -> str:
        return f"arch={self.l2ul_meta.get('arch')!r}, input_size={self.input_size}"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered architecture (see :func:`model_info` for a printable summary)."""

    name: str
    builder: Callable[..., nn.Module]
    mean: Default
    std: Default
    input_shape: Default = None
    description: str = ""

    @property
    def downloads_weights(self) -> bool:
        return "pretrained" in inspect.signature(self.builder).parameters


_REGISTRY: Dict[str, ModelSpec] = {}
#: name prefixes for open-ended families, e.g. "tv" -> spec for "tv:<torchvision name>"
_FAMILIES: Dict[str, Callable[[str], ModelSpec]] = {}


def register_model(name: str, *, mean: Default, std: Default, input_shape: Default = None,
                   description: str = "") -> Callable:
    """Decorator registering ``fn(num_classes, **options) -> nn.Module`` under ``name``.

    ``mean``/``std`` (per channel) and ``input_shape`` ([C, H, W] or None = any size) are the defaults for
    models built by this name; each may be a function of the builder's options (with defaults filled in).
    """
    if ":" in name:
        raise ValueError(f"model names cannot contain ':' (reserved for families such as tv:NAME): {name!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, fn, mean, std, input_shape, description or (fn.__doc__ or "").strip())
        return fn

    return decorator


def list_models() -> List[str]:
    """Sorted registered model names (``tv:<name>`` additionally builds any torchvision classifier)."""
    return sorted(_REGISTRY)


def model_info(name: str) -> Dict[str, Any]:
    """What ``create_model(name)`` builds: description, options with defaults, normalisation, input shape."""
    spec = _spec(name)
    params = inspect.signature(spec.builder).parameters
    options = {k: p.default for k, p in list(params.items())[1:]
               if k != "pretrained" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    defaults = {k: (v if v is not inspect.Parameter.empty else None) for k, v in options.items()}
    return {
        "name": spec.name, "description": spec.description, "options": defaults,
        "mean": _default(spec.mean, defaults), "std": _default(spec.std, defaults),
        "input_shape": _default(spec.input_shape, defaults), "pretrained_download": spec.downloads_weights,
    }


def create_model(name: str, num_classes: Optional[int] = 10, *, pretrained: bool = False,
                 weights: Optional[Union[str, os.PathLike]] = None,
                 class_names: Optional[Sequence[str]] = None, mean: Optional[Floats] = None,
                 std: Optional[Floats] = None, **kwargs: Any) -> NormalizedClassifier:
    """Build the registered model ``name`` (or ``tv:<torchvision name>``) as a :class:`NormalizedClassifier`.

    ``pretrained=True`` downloads the architecture's published weights (torchvision models only).
    ``weights`` is a local checkpoint to load strictly (a foreign ``state_dict``; see
    :func:`import_state_dict`); with it, ``num_classes=None`` infers the class count from the final layer.
    ``mean``/``std`` override the architecture's normalisation; ``kwargs`` are architecture options
    (:func:`model_info` lists them). Raises :class:`~l2ul.errors.L2ULError` for unknown names or options.
    """
    spec = _spec(name)
    if pretrained and weights is not None:
        raise L2ULError("pass either pretrained=True (download) or weights=PATH (local file), not both")
    if pretrained and not spec.downloads_weights:
        raise L2ULError(f"{name} has no downloadable weights (pretrained=True); pass weights=PATH to a local "
                        f"checkpoint (see model_info({name!r}))")
    state: Dict[str, torch.Tensor] = {}
    file_norm: Dict[str, torch.Tensor] = {}
    if weights is not None:
        from .io import _infer_num_classes, _read_checkpoint
        state, file_norm = _read_checkpoint(weights)
        if num_classes is None:
            _bind_options(spec, 1, kwargs)  # report bad options before probing
            num_classes = _infer_num_classes(state, weights, _state_keys(spec, kwargs))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise L2ULError(f"num_classes must be a positive integer, got {num_classes!r} "
                        "(it can be left out only with weights=PATH, to infer it from the final layer)")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            raise L2ULError(f"got {len(class_names)} class names for {num_classes} classes; give one per class")

    options = _bind_options(spec, num_classes, kwargs)
    net = spec.builder(num_classes, pretrained=True, **kwargs) if pretrained else spec.builder(num_classes, **kwargs)
    resolved: Dict[str, Any] = net.__dict__.pop("l2ul_resolved", None) or {}
    arch_kwargs = resolved.get("arch_kwargs", options)
    try:
        arch_kwargs = json.loads(json.dumps(arch_kwargs))
    except (TypeError, ValueError) as e:
        raise L2ULError(f"options for {name} must be JSON values (numbers, strings, lists, dicts): {e}") from None

    # normalisation: caller's > stored in the weights file > reported by the builder > registered default
    if mean is None:
        mean = file_norm["mean"].flatten().tolist() if "mean" in file_norm else \
            resolved.get("mean", _default(spec.mean, options))
    if std is None:
        std = file_norm["std"].flatten().tolist() if "std" in file_norm else \
            resolved.get("std", _default(spec.std, options))
    if class_names is None and resolved.get("class_names") is not None:
        class_names = list(resolved["class_names"])
    input_shape = _default(spec.input_shape, options)
    meta = {
        "arch": spec.name, "arch_kwargs": arch_kwargs, "num_classes": num_classes, "class_names": class_names,
        "input_shape": list(input_shape) if input_shape is not None else None,
    }
    model = NormalizedClassifier(net, mean, std, input_size=resolved.get("input_size"), meta=meta)
    if weights is not None:
        from .io import _load_net_state
        _load_net_state(model, state, weights)
    return model


# ----------------------------------------------------------------------------------------------- helpers

def _spec(name: str) -> ModelSpec:
    if not isinstance(name, str):
        raise L2ULError(f"model name must be a string, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _FAMILIES:
        return _FAMILIES[prefix](rest)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise L2ULError(f"unknown model {name!r}{hint}; available: {', '.join(list_models())}, "
                    f"or tv:<name> for any torchvision classification model")


def _bind_options(spec: ModelSpec, num_classes: int, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The builder's options with defaults filled in (what ``arch_kwargs`` records)."""
    sig = inspect.signature(spec.builder)
    if "pretrained" in kwargs:
        raise L2ULError("pass pretrained=True to create_model itself, not as an architecture option")
    try:
        bound = sig.bind(num_classes, **kwargs)
    except TypeError as e:
        options = ", ".join(k for k in list(sig.parameters)[1:] if k != "pretrained") or "none"
        raise L2ULError(f"bad options for {spec.name}: {e}; its options are: {options}") from None
    bound.apply_defaults()
    options: Dict[str, Any] = {}
    for key, value in list(bound.arguments.items())[1:]:
        kind = sig.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            options.update(value)
        elif key != "pretrained":
            options[key] = value
    return options


def _state_keys(spec: ModelSpec, kwargs: Dict[str, Any]) -> List[str]:
    """State-dict keys of the architecture in registration order (classifier last), built on the meta
    device so nothing is allocated; [] if the builder cannot run there."""
    try:
        with torch.device("meta"):
            return list(spec.builder(1, **kwargs).state_dict())
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return []


def _default(value: Default, options: Dict[str, Any]) -> Any:
    value = value(options) if callable(value) else value
    return list(value) if isinstance(value, (tuple, list)) else value


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


# register the built-in architectures (imports at the bottom: they use register_model)
from . import cifar_resnet, paper_resnet, small, torchvision_models, hf_vit  # noqa: E402,F401
from .io import import_state_dict, load_model, model_sha256, save_model  # noqa: E402
