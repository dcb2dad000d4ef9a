"""The model registry: :class:`ModelSpec`, :func:`register_model`, :func:`list_models`, :func:`model_info`.

A builder registered with :func:`register_model` is ``fn(num_classes, **options) -> nn.Module``. It may
accept ``pretrained`` (download weights). It may set ``net.l2ul_resolved``, a dict with any of
``arch_kwargs`` (the options that rebuild this architecture offline), ``mean``, ``std``, ``input_size``
and ``class_names``, to report what it learnt while building (``hf_vit`` does, from a Hub config).

This module imports no model family; the families import it and register themselves.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Dict, List, Union

from torch import nn

from ..errors import L2ULError

__all__ = ["ModelSpec", "register_model", "list_models", "model_info"]

#: a default that is either a value or a function of the builder's options (defaults filled in)
Default = Union[Any, Callable[[Dict[str, Any]], Any]]


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


def _spec(name: str) -> ModelSpec:
    """The spec registered as ``name`` or built by its family (``tv:<name>``); L2ULError if unknown."""
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


def _default(value: Default, options: Dict[str, Any]) -> Any:
    """A spec default (value or function of the options); tuples become lists (JSON-like)."""
    value = value(options) if callable(value) else value
    return list(value) if isinstance(value, (tuple, list)) else value
