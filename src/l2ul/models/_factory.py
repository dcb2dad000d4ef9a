"""The factory: :func:`create_model` builds a registered architecture as a NormalizedClassifier."""
from __future__ import annotations

import inspect
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..errors import L2ULError
from ._checkpoint import _infer_num_classes, _load_net_state, _read_checkpoint, check_finite_model
from ._registry import ModelSpec, _default, _spec, is_loading_option
from .classifier import Floats, NormalizedClassifier

__all__ = ["create_model"]


def create_model(name: str, num_classes: Optional[int] = 10, *, pretrained: bool = False,
                 weights: Optional[Union[str, os.PathLike]] = None,
                 class_names: Optional[Sequence[str]] = None, mean: Optional[Floats] = None,
                 std: Optional[Floats] = None, **kwargs: Any) -> NormalizedClassifier:
    """Build the registered model ``name`` (or ``tv:<torchvision name>``) as a :class:`NormalizedClassifier`.

    ``pretrained=True`` downloads the architecture's published weights (torchvision models only).
    ``weights`` is a local checkpoint to load strictly (a foreign ``state_dict``; see
    :func:`import_state_dict`); with it, ``num_classes=None`` infers the class count from the final layer.
    ``mean``/``std`` override the architecture's normalisation; ``kwargs`` are architecture options
    (:func:`model_info` lists them). Raises :class:`~l2ul.errors.L2ULError` for unknown names or options,
    :class:`~l2ul.errors.ModelFileError` for weights that do not fit or hold NaN/inf (see
    :func:`~l2ul.models.check_finite_model`).
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
    # what a model file records: architecture options only (a file never carries what downloads or reads)
    arch_kwargs = resolved.get("arch_kwargs", {k: v for k, v in options.items() if not is_loading_option(k)})
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
        _load_net_state(model, state, weights)
        check_finite_model(model, source=weights)
    return model


# ----------------------------------------------------------------------------------------------- helpers

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
