"""The boundary check of a model file's metadata: :func:`validate_meta`.

An l2ul model file is data from anywhere. Its metadata (``arch``, ``arch_kwargs``, ``num_classes``,
``class_names``, ``mean``, ``std``, ``input_shape``) is checked here, in one place, before anything is
built from it: unknown keys are refused, ``arch_kwargs`` must be architecture options on the spec's
allow-list (:meth:`~l2ul.models._registry.ModelSpec.file_option_types`; loading options such as
``pretrained``, ``weights`` or ``name_or_path`` never are), and every value must have its type and lie in
its range. Problems raise :class:`MetaError` with a one-line message naming the key.
"""
from __future__ import annotations

import collections.abc
import math
import typing
from typing import Any, Dict, List, Tuple

from ..errors import L2ULError
from ._registry import JSONObject, ModelSpec, _spec, is_loading_option

__all__ = ["validate_meta", "MetaError", "META_KEYS", "MAX_CLASSES"]

META_KEYS = ("arch", "arch_kwargs", "num_classes", "class_names", "input_shape", "mean", "std")
MAX_CLASSES = 100_000
MAX_CHANNELS = 64
MAX_SIZE = 1_000_000   # an integer architecture option (a width, a depth, an image size)
MAX_STR = 1_000
MAX_ITEMS = 1_024       # elements of a list / keys of an object
MAX_DEPTH = 4           # nesting of plain JSON values


class MetaError(L2ULError):
    """Metadata that a model file must not carry (the caller adds the file's path)."""


def validate_meta(meta: Any) -> Tuple[ModelSpec, Dict[str, Any]]:
    """Check model-file metadata; returns the architecture's spec and the metadata with defaults filled in
    (``arch_kwargs`` ``{}``, ``class_names`` / ``input_shape`` None). Raises :class:`MetaError`."""
    if not isinstance(meta, dict):
        raise MetaError(f"the metadata must be a JSON object, got {_kind(meta)}")
    for key in meta:
        if key not in META_KEYS:
            raise MetaError(_not_allowed(f"key {key!r}", str(key),
                                         f"an l2ul metadata key (allowed: {', '.join(META_KEYS)})"))
    arch = meta.get("arch")
    if not isinstance(arch, str) or not 0 < len(arch) <= 200:
        raise MetaError(f"arch must be an architecture name, got {_show(arch)}")
    try:
        spec = _spec(arch)
    except L2ULError as e:
        raise MetaError(f"arch {arch!r} is not an architecture this l2ul knows ({e})") from None
    num_classes = meta.get("num_classes")
    if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
        raise MetaError(f"num_classes must be an integer in 1..{MAX_CLASSES}, got {_show(num_classes)}")
    out = {"arch": arch, "num_classes": num_classes, "class_names": meta.get("class_names"),
           "input_shape": meta.get("input_shape"), "mean": meta.get("mean"), "std": meta.get("std"),
           "arch_kwargs": meta.get("arch_kwargs", {})}
    names = out["class_names"]
    if names is not None:
        if not isinstance(names, list):
            raise MetaError(f"class_names must be a list of strings, got {_show(names)}")
        if len(names) != num_classes:
            raise MetaError(f"class_names has {len(names)} names for {num_classes} classes")
        for i, name in enumerate(names):
            _check(name, str, f"class_names[{i}]")
    if out["input_shape"] is not None:
        _check(out["input_shape"], List[int], "input_shape")
        if not 1 <= len(out["input_shape"]) <= 4:
            raise MetaError(f"input_shape must be [C, H, W], got {_show(out['input_shape'])}")
    for key in ("mean", "std"):
        _check(out[key], List[float], key)
        if not 1 <= len(out[key]) <= MAX_CHANNELS:
            raise MetaError(f"{key} must list 1..{MAX_CHANNELS} per-channel values, got {len(out[key])}")
    if len(out["mean"]) != len(out["std"]):
        raise MetaError(f"mean has {len(out['mean'])} channels but std has {len(out['std'])}")
    if min(out["std"]) <= 0:
        raise MetaError(f"std must be positive on every channel (it divides the images), got {out['std']}")
    types = spec.file_option_types()
    _check_object(out["arch_kwargs"], JSONObject(types.keys, f"architecture options of {arch}"), "arch_kwargs", types)
    return spec, out


# --------------------------------------------------------------------------------------------- type checks

def _check(value: Any, hint: Any, where: str, types: Any = None) -> None:
    """Raise MetaError unless ``value`` (from JSON) has type ``hint``; ``types``: per-key hints of a
    JSONObject (else its values are plain JSON)."""
    if hint is Any:
        _check_json(value, where, 0)
        return
    if isinstance(hint, JSONObject):
        _check_object(value, hint, where, types)
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        for option in options:  # the alternative of the value's own kind decides (and names the problem)
            if _same_kind(value, option):
                _check(value, option, where)
                return
        raise MetaError(f"{where} must be {' or '.join(_describe(a) for a in options)}, got {_show(value)}")
    if not _same_kind(value, hint):
        raise MetaError(f"{where} must be {_describe(hint)}, got {_show(value)}")
    if hint is int and not 1 <= value <= MAX_SIZE:
        raise MetaError(f"{where} must be {_describe(hint)}, got {_show(value)}")
    if hint is float and not math.isfinite(value):
        raise MetaError(f"{where} must be a finite number, got {_show(value)}")
    if hint is str and len(value) > MAX_STR:
        raise MetaError(f"{where} is a string of {len(value)} characters (at most {MAX_STR})")
    if origin in (list, tuple, collections.abc.Sequence):
        if len(value) > MAX_ITEMS:
            raise MetaError(f"{where} has {len(value)} items (at most {MAX_ITEMS})")
        item = args[0] if args else Any
        for i, v in enumerate(value):
            _check(v, item, f"{where}[{i}]")
    elif origin in (dict, collections.abc.Mapping):
        _check_object(value, JSONObject(lambda: value.keys()), where, None, item=args[1] if args else Any)


def _check_object(value: Any, hint: JSONObject, where: str, types: Any, item: Any = Any) -> None:
    if not isinstance(value, dict):
        raise MetaError(f"{where} must be a JSON object of {hint.what}, got {_show(value)}")
    if len(value) > MAX_ITEMS:
        raise MetaError(f"{where} has {len(value)} keys (at most {MAX_ITEMS})")
    allowed = types if types is not None else hint.keys()
    for key, v in value.items():
        if is_loading_option(key) or key not in allowed:
            shown = ", ".join(sorted(allowed)[:12]) + (", ..." if len(allowed) > 12 else "") or "none"
            raise MetaError(_not_allowed(f"{where}.{key}", key, f"one of the {hint.what} (allowed: {shown})"))
        _check(v, types[key] if types is not None else item, f"{where}.{key}")


def _check_json(value: Any, where: str, depth: int) -> None:
    """A plain JSON value of bounded size: null, bool, number, string, and lists / objects of them."""
    if depth > MAX_DEPTH:
        raise MetaError(f"{where} nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_SIZE:
            raise MetaError(f"{where} must be a finite number of at most {MAX_SIZE} in size, got {_show(value)}")
    elif isinstance(value, str):
        _check(value, str, where)
    elif isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise MetaError(f"{where} has {len(value)} items (at most {MAX_ITEMS})")
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise MetaError(f"{where} has {len(value)} keys (at most {MAX_ITEMS})")
        for k, v in value.items():
            if is_loading_option(str(k)):
                raise MetaError(_not_allowed(f"{where}.{k}", str(k), "a plain value"))
            _check_json(v, f"{where}.{k}", depth + 1)
    else:  # json.loads gives nothing else
        raise MetaError(f"{where} must be a JSON value, got {_kind(value)}")


def _same_kind(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the top-level JSON kind of ``hint`` (ints count as floats, bools as neither)."""
    if hint is Any or isinstance(hint, JSONObject):
        return hint is Any or isinstance(value, dict)
    origin = typing.get_origin(hint) or hint
    if origin is typing.Union:
        return any(_same_kind(value, a) for a in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True  # a hint this checker does not know: the builder validates the value


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple = {bool: "true or false", int: f"an integer in 1..{MAX_SIZE}", float: "a finite number",
              str: "a string", type(None): "null"}
    if hint in simple:
        return simple[hint]
    if origin is typing.Union:
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        plural = {bool: "booleans", int: f"integers in 1..{MAX_SIZE}", float: "finite numbers", str: "strings"}
        return f"a list of {plural.get(args[0], 'values') if args else 'values'}"
    if origin in (dict, collections.abc.Mapping) or isinstance(hint, JSONObject):
        return "a JSON object"
    return "a JSON value"


def _not_allowed(where: str, key: str, what: str) -> str:
    if is_loading_option(key):
        return (f"{where} is a loading option (it would download weights or read another file); a model file "
                "may carry only architecture options, and l2ul builds the model from the file's own tensors")
    return f"{where} is not {what}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
