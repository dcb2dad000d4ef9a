"""The model registry: :class:`ModelSpec`, :func:`register_model`, :func:`list_models`, :func:`model_info`.

A builder registered with :func:`register_model` is ``fn(num_classes, **options) -> nn.Module``. It may
accept ``pretrained`` (download weights). It may set ``net.l2ul_resolved``, a dict with any of
``arch_kwargs`` (the options that rebuild this architecture offline), ``mean``, ``std``, ``input_size``
and ``class_names``, to report what it learnt while building (``hf_vit`` does, from a Hub config).

A model file (:func:`l2ul.models.save_model`) records the options a model was built with, and
:func:`l2ul.models.load_model` passes them back to the builder. Only *file options* travel that way: each
spec's allow-list (:meth:`ModelSpec.file_option_types`, declared with ``register_model(file_options=...)``
or derived from the builder's signature) names the architecture options a file may carry and their types.
Options that fetch or read weights (:data:`LOADING_OPTIONS`: ``pretrained``, ``weights``,
``name_or_path``, ...) are never file options, so a file cannot make l2ul download or open anything.

This module imports no model family; the families import it and register themselves.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Union

from torch import nn

from ..errors import L2ULError

__all__ = ["ModelSpec", "register_model", "list_models", "model_info", "JSONObject", "LOADING_OPTIONS"]

#: a default that is either a value or a function of the builder's options (defaults filled in)
Default = Union[Any, Callable[[Dict[str, Any]], Any]]

#: option names that download, open or execute something (weights, Hub ids, caches, remote code or kernels):
#: never taken from a model file, whatever a family declares (matched with leading underscores stripped)
LOADING_OPTIONS = frozenset({
    "pretrained", "pretrained_backbone", "weights", "weights_backbone", "name_or_path",
    "pretrained_model_name_or_path", "cache_dir", "model_dir", "download", "progress", "url", "hub",
    "revision", "token", "use_auth_token", "local_files_only", "force_download", "proxies", "subfolder",
    "trust_remote_code", "auto_map", "attn_implementation", "quantization_config", "path", "file",
})
#: create_model's own parameters: a model file records them at its top level, never as architecture options
RESERVED_OPTIONS = frozenset({"num_classes", "class_names", "mean", "std"})


def is_loading_option(name: str) -> bool:
    """Whether ``name`` is (an alias of) a :data:`LOADING_OPTIONS` name."""
    return name.lstrip("_") in LOADING_OPTIONS


@dataclasses.dataclass(frozen=True)
class JSONObject:
    """File-option type: a JSON object whose keys are allowed by ``keys()`` (called when a file is checked,
    so it may import an optional dependency) and whose values are plain JSON values (bounded in size)."""

    keys: Callable[[], Collection[str]]
    what: str = "options"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered architecture (see :func:`model_info` for a printable summary)."""

    name: str
    builder: Callable[..., nn.Module]
    mean: Default
    std: Default
    input_shape: Default = None
    description: str = ""
    #: the architecture options a model file may carry: {name: type}, or None to derive them from the
    #: builder's named parameters and annotations (see :meth:`file_option_types`)
    file_options: Optional[Mapping[str, Any]] = None

    @property
    def downloads_weights(self) -> bool:
        return "pretrained" in inspect.signature(self.builder).parameters

    def file_option_types(self) -> Dict[str, Any]:
        """The allow-list of options a model file of this architecture may carry, ``{name: type}``.

        Types are typing hints (``int``: a size, 1..1e6; ``bool``; ``float``; ``str``; ``Optional``,
        ``Union``, ``Sequence[...]``, ``Dict[str, ...]``; ``Any``: a plain JSON value) or a
        :class:`JSONObject`. Loading options and create_model's own parameters are never included.
        """
        declared = self.file_options if self.file_options is not None else _builder_options(self.builder)
        return {k: v for k, v in declared.items() if not is_loading_option(k) and k not in RESERVED_OPTIONS}


_REGISTRY: Dict[str, ModelSpec] = {}
#: name prefixes for open-ended families, e.g. "tv" -> spec for "tv:<torchvision name>"
_FAMILIES: Dict[str, Callable[[str], ModelSpec]] = {}
#: other spellings of a family prefix: "timm/<name>" (timm's Hub naming) is "timm:<name>"
_FAMILY_ALIASES = {"timm/": "timm"}


def register_model(name: str, *, mean: Default, std: Default, input_shape: Default = None,
                   description: str = "",
                   file_options: Union[None, Sequence[str], Mapping[str, Any]] = None) -> Callable:
    """Decorator registering ``fn(num_classes, **options) -> nn.Module`` under ``name``.

    ``mean``/``std`` (per channel) and ``input_shape`` ([C, H, W] or None = any size) are the defaults for
    models built by this name; each may be a function of the builder's options (with defaults filled in).
    ``file_options``: the options a model file of this architecture may carry (names, typed by the builder's
    annotations, or ``{name: type}``); default: the builder's named parameters. Loading options
    (:data:`LOADING_OPTIONS`) cannot be file options.
    """
    if ":" in name:
        raise ValueError(f"model names cannot contain ':' (reserved for families such as tv:NAME): {name!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        options = file_options
        if options is not None and not isinstance(options, Mapping):
            hints = _builder_options(fn)
            options = {k: hints.get(k, Any) for k in options}
        bad = [k for k in (options or {}) if is_loading_option(k) or k in RESERVED_OPTIONS]
        if bad:
            raise ValueError(f"{name}: {', '.join(bad)} cannot be file options (loading options or "
                             "create_model parameters)")
        params = inspect.signature(fn).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = [k for k in (options or {}) if k not in params]
            if unknown:
                raise ValueError(f"{name}: file options {', '.join(unknown)} are not parameters of {fn.__name__}")
        _REGISTRY[name] = ModelSpec(name, fn, mean, std, input_shape, description or (fn.__doc__ or "").strip(),
                                    options)
        return fn

    return decorator


def list_models() -> List[str]:
    """Sorted registered model names (``tv:<name>`` additionally builds any torchvision classifier,
    ``timm:<name>`` any timm model)."""
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
    for alias, family in _FAMILY_ALIASES.items():
        if not sep and name.startswith(alias):
            prefix, sep, rest = family, ":", name[len(alias):]
    if sep and prefix in _FAMILIES:
        return _FAMILIES[prefix](rest)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise L2ULError(f"unknown model {name!r}{hint}; available: {', '.join(list_models())}, "
                    f"or tv:<name> for any torchvision classification model, timm:<name> for any timm "
                    "model (extra: pip install 'l2ul[timm]'), or hf:<Hub id or folder> for a Hugging Face ViT "
                    "(extra: pip install 'l2ul[vit]')")


def _default(value: Default, options: Dict[str, Any]) -> Any:
    """A spec default (value or function of the options); tuples become lists (JSON-like)."""
    value = value(options) if callable(value) else value
    return list(value) if isinstance(value, (tuple, list)) else value


def _builder_options(builder: Callable[..., nn.Module]) -> Dict[str, Any]:
    """``{name: annotation}`` of the builder's named options (after ``num_classes``; ``**kwargs`` excluded)."""
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # noqa: BLE001 - unresolvable annotations: the options are untyped (plain JSON)
        hints = {}
    params = list(inspect.signature(builder).parameters.values())[1:]
    return {p.name: hints.get(p.name, Any) for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
