"""torchvision ImageNet classifiers by name: ``imagenet_resnet18``, ``imagenet_resnet50`` and ``tv:<name>``.

``tv:<name>`` accepts any name from ``torchvision.models.list_models(module=torchvision.models)``
(classification models), with torchvision's own options as keyword arguments. ``pretrained=True`` downloads
torchvision's default weights; for ``num_classes`` other than the weights' class count the last linear layer
is replaced by a freshly initialised one (fine-tuning start). Inputs are normalised with the ImageNet
mean/std; ``input_shape`` is the crop size of the default weights' transforms (224 for most models).
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Dict, List

import torchvision
from torch import nn

from ..errors import L2ULError
from ._registry import _FAMILIES, ModelSpec, register_model
from .classifier import IMAGENET_MEAN, IMAGENET_STD


def classification_models() -> List[str]:
    """torchvision classification model names usable as ``tv:<name>``."""
    return torchvision.models.list_models(module=torchvision.models)


def build_torchvision(tv_name: str, num_classes: int, pretrained: bool = False, **options: Any) -> nn.Module:
    """torchvision model ``tv_name`` with ``num_classes`` outputs, optionally with downloaded weights."""
    if not pretrained:
        return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **options)
    weights = torchvision.models.get_model_weights(tv_name).DEFAULT
    try:
        net = torchvision.models.get_model(tv_name, weights=weights, **options)
    except OSError as e:  # URLError, no network, disk full
        raise L2ULError(f"could not download torchvision weights {weights} ({e}); check network access, or "
                        f"save the state_dict elsewhere and pass weights=PATH") from None
    categories = list(weights.meta.get("categories") or [])
    if num_classes == len(categories):
        net.l2ul_resolved = {"class_names": categories}
    else:
        _replace_last_linear(net, num_classes, tv_name)
    return net


def _replace_last_linear(net: nn.Module, num_classes: int, tv_name: str) -> None:
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise L2ULError(f"tv:{tv_name} has no linear classifier to resize to {num_classes} classes; "
                        "use its native class count with pretrained=True")
    parent_name, _, attr = linears[-1].rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, attr, nn.Linear(getattr(parent, attr).in_features, num_classes))


def _input_shape(tv_name: str) -> List[int]:
    try:
        crop = torchvision.models.get_model_weights(tv_name).DEFAULT.transforms().crop_size
        return [3, int(crop[0]), int(crop[0])]
    except (ValueError, AttributeError, TypeError, IndexError):
        return [3, 224, 224]


def torchvision_spec(tv_name: str) -> ModelSpec:
    """Registry entry for ``tv:<tv_name>`` (raises L2ULError for names torchvision does not know)."""
    names = classification_models()
    if tv_name not in names:
        close = difflib.get_close_matches(tv_name, names, n=3)
        hint = f" (did you mean {', '.join('tv:' + c for c in close)}?)" if close else ""
        raise L2ULError(f"unknown torchvision classification model {tv_name!r}{hint}; see "
                        "torchvision.models.list_models(module=torchvision.models)")

    def build(num_classes: int, pretrained: bool = False, **options: Any) -> nn.Module:
        return build_torchvision(tv_name, num_classes, pretrained, **options)

    return ModelSpec(f"tv:{tv_name}", build, IMAGENET_MEAN, IMAGENET_STD, _input_shape(tv_name),
                     f"torchvision {tv_name} (ImageNet normalisation; pretrained=True downloads its weights)",
                     file_options=torchvision_file_options())


@functools.lru_cache(maxsize=1)
def torchvision_file_options() -> Dict[str, Any]:
    """The options a ``tv:`` model file may carry: the named constructor parameters of torchvision's
    classification model classes (ResNet, VisionTransformer, ...), as plain JSON values. Options another
    model does not take fail when it is built; loading options (``weights``, ``progress``) are excluded."""
    names = set()
    for obj in vars(torchvision.models).values():
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            params = list(inspect.signature(obj.__init__).parameters.values())[1:]
            names.update(p.name for p in params
                         if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    return {name: Any for name in sorted(names)}


_FAMILIES["tv"] = torchvision_spec


@register_model("imagenet_resnet18", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_shape=(3, 224, 224),
                description="torchvision ResNet-18 (ImageNet); pretrained=True downloads IMAGENET1K_V1")
def imagenet_resnet18(num_classes: int, pretrained: bool = False) -> nn.Module:
    return build_torchvision("resnet18", num_classes, pretrained)


@register_model("imagenet_resnet50", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_shape=(3, 224, 224),
                description="torchvision ResNet-50 (ImageNet); pretrained=True downloads IMAGENET1K_V2")
def imagenet_resnet50(num_classes: int, pretrained: bool = False) -> nn.Module:
    return build_torchvision("resnet50", num_classes, pretrained)
