"""timm models by name (optional extra: ``pip install 'l2ul[timm]'``): ``timm:<name>``, also written
``timm/<name>`` (timm's own naming on the Hugging Face Hub, e.g. ``timm/resnet18.a1_in1k``).

``<name>`` is any name :func:`timm.create_model` accepts (:func:`timm.list_models`), with an optional
pretrained tag (``resnet18.a1_in1k``). ``pretrained=True`` lets timm fetch the tag's weights from the
Hugging Face Hub, or from its local cache (``HF_HUB_OFFLINE=1``: the cache only); for a ``num_classes``
other than the weights' timm initialises a new classifier (a fine-tuning start). ``weights=PATH`` loads a
local state dict instead (timm's ``model.safetensors`` files fit, parameter names being timm's).
Normalisation and input shape are the tag's pretrained config (mean, std, input size), for ``in_channels``
channels (timm's ``in_chans``; l2ul's name, so ``l2ul pretrain`` sets it from the dataset). A model file
records ``in_channels`` and ``drop_rate``; nothing in it can make timm download.
"""
from __future__ import annotations

import difflib
from typing import Any, List, Sequence

from torch import nn

from ..errors import L2ULError
from ._registry import _FAMILIES, ModelSpec
from .classifier import IMAGENET_MEAN, IMAGENET_STD

#: the other spelling of the family (timm's Hub organisation): ``timm/<name>`` is ``timm:<name>``
HUB_PREFIX = "timm/"


def _timm():
    try:
        import timm
    except ImportError:
        raise L2ULError("timm:<name> models need timm; install the extra: pip install 'l2ul[timm]'") from None
    return timm


def _per_channel(values: Sequence[float], channels: int) -> List[float]:
    """The config's per-channel values for ``channels`` channels (their mean repeated if the count differs)."""
    values = [float(v) for v in values]
    return values if channels == len(values) else [sum(values) / len(values)] * channels


def timm_spec(name: str) -> ModelSpec:
    """Registry entry for ``timm:<name>`` (raises L2ULError without timm or for a name timm does not know)."""
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join('timm:' + c for c in close)}?)" if close else ""
        raise L2ULError(f"unknown timm model {name!r}{hint}; see timm.list_models()")
    cfg = timm.models.get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
    std = getattr(cfg, "std", None) or IMAGENET_STD
    size = list(getattr(cfg, "input_size", None) or (3, 224, 224))

    def build(num_classes: int, pretrained: bool = False, in_channels: int = 3, drop_rate: float = 0.0) -> nn.Module:
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                                     drop_rate=drop_rate)
        except OSError as e:  # no network, not in the cache, disk full
            raise L2ULError(f"could not fetch the timm weights of {name} ({e}); check network access (or the "
                            "Hugging Face cache, with HF_HUB_OFFLINE=1), or pass weights=PATH to a local state "
                            "dict") from None

    def channels_of(options: Any) -> int:
        return int(options.get("in_channels", 3))

    return ModelSpec(f"timm:{name}", build, lambda o: _per_channel(mean, channels_of(o)),
                     lambda o: _per_channel(std, channels_of(o)), lambda o: [channels_of(o), *size[1:]],
                     f"timm {name} (its pretrained config's normalisation; pretrained=True fetches its weights)",
                     file_options={"in_channels": int, "drop_rate": float})


_FAMILIES["timm"] = timm_spec
