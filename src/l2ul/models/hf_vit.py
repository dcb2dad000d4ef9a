"""Hugging Face ViT image classifiers (optional extra: ``pip install 'l2ul[vit]'``).

``hf_vit`` builds ``transformers.ViTForImageClassification`` either from a Hub id / local directory
(``name_or_path``, loads pretrained weights; a new head is initialised when ``num_classes`` differs) or
from ``vit_config`` (``ViTConfig`` keyword arguments, random init). Images of any size are resized
(bilinear) to ``input_size`` (default: the config's ``image_size``) inside the model, so 32x32 CIFAR images
work. The model's ``arch_kwargs`` record the full config, so :func:`l2ul.models.load_model` rebuilds it
offline. Parameter names are Hugging Face's (``vit.*``, ``classifier.*``), so HF ``model.safetensors``
files import with ``weights=PATH``.
"""
from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Dict, FrozenSet, Optional, Sequence, Union

from torch import nn

from ..errors import L2ULError
from ._registry import _FAMILIES, _REGISTRY, JSONObject, ModelSpec, is_loading_option, register_model

HF_IMAGE_MEAN = (0.5, 0.5, 0.5)  # ViTImageProcessor defaults
HF_IMAGE_STD = (0.5, 0.5, 0.5)
_NOT_ARCHITECTURE = ("id2label", "label2id", "transformers_version", "architectures", "_name_or_path",
                     "torch_dtype", "dtype", "num_labels")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise L2ULError("hf_vit needs Hugging Face transformers; install the vit extra: "
                        "pip install 'l2ul[vit]'") from None
    return transformers


def _channels(options: Dict[str, Any]) -> int:
    return int((options.get("vit_config") or {}).get("num_channels", 3))


@functools.lru_cache(maxsize=1)
def vit_config_keys() -> FrozenSet[str]:
    """The ``vit_config`` keys a model file may carry: ViTConfig's parameters and the attributes of its
    ``to_dict()``, less labels, bookkeeping and anything that loads (``attn_implementation``, ...)."""
    tf = _transformers()
    keys = set(list(inspect.signature(tf.ViTConfig.__init__).parameters)[1:]) | set(tf.ViTConfig().to_dict())
    return frozenset(k for k in keys if k not in _NOT_ARCHITECTURE and k not in ("args", "kwargs")
                     and not is_loading_option(k))


@register_model("hf_vit", mean=lambda o: HF_IMAGE_MEAN[:1] * _channels(o),
                std=lambda o: HF_IMAGE_STD[:1] * _channels(o), input_shape=None,
                description="Hugging Face ViTForImageClassification; options name_or_path (Hub id or local "
                            "directory, pretrained) or vit_config (ViTConfig kwargs, random init), input_size "
                            "(images are resized to it; default config.image_size)",
                file_options={"vit_config": JSONObject(vit_config_keys, "ViTConfig options"),
                              "input_size": Optional[Union[int, Sequence[int]]]})
def hf_vit(num_classes: int, name_or_path: Optional[str] = None, vit_config: Optional[Dict[str, Any]] = None,
           input_size: Optional[Union[int, Sequence[int]]] = None) -> nn.Module:
    """ViT classifier from ``name_or_path`` (pretrained) or ``vit_config`` (random init)."""
    if (name_or_path is None) == (vit_config is None):
        raise L2ULError("hf_vit needs exactly one of name_or_path='google/vit-base-patch16-224' (pretrained, "
                        "Hub id or local directory) or vit_config={...} (ViTConfig options, random init)")
    tf = _transformers()
    resolved: Dict[str, Any] = {}
    if name_or_path is not None:
        try:
            net = tf.ViTForImageClassification.from_pretrained(
                name_or_path, num_labels=num_classes, ignore_mismatched_sizes=True)
        except OSError as e:
            raise L2ULError(f"could not load ViT {name_or_path!r}: {e}; give a local directory holding "
                            "config.json and the weights, or check network access") from None
        resolved.update(_processor_norm(tf, name_or_path))
        labels = [net.config.id2label[i] for i in range(num_classes)]
        if not all(re.fullmatch(r"LABEL_\d+", str(label)) for label in labels):
            resolved["class_names"] = labels
    else:
        try:
            config = tf.ViTConfig(**{k: v for k, v in dict(vit_config).items() if k not in _NOT_ARCHITECTURE})
        except (TypeError, ValueError) as e:
            raise L2ULError(f"bad vit_config for hf_vit: {e}") from None
        config.num_labels = num_classes
        net = tf.ViTForImageClassification(config)
    config = net.config
    # the ViT processor defaults, one per channel of the checkpoint (when it ships no processor of its own)
    resolved.setdefault("mean", list(HF_IMAGE_MEAN[:1]) * int(config.num_channels))
    resolved.setdefault("std", list(HF_IMAGE_STD[:1]) * int(config.num_channels))
    size = input_size if input_size is not None else config.image_size
    size = [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]
    arch_config = {k: v for k, v in config.to_dict().items() if k in vit_config_keys()}
    resolved.update(input_size=size, arch_kwargs={"vit_config": arch_config, "input_size": size})
    net.l2ul_resolved = resolved
    return net


def _processor_norm(tf, name_or_path: str) -> Dict[str, Any]:
    """Mean/std of the checkpoint's image processor, if it ships one (else the ViT defaults apply)."""
    try:
        processor = tf.AutoImageProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError):
        return {}
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    return {"mean": list(mean), "std": list(std)} if mean is not None and std is not None else {}


def hf_spec(name_or_path: str) -> ModelSpec:
    """Registry entry for ``hf:<Hub id or local directory>``: a Hugging Face ViT classifier by name, so the
    CLI can ask for one (``l2ul convert --arch hf:google/vit-base-patch16-224 --pretrained --num-classes 10``).
    ``pretrained=True`` loads that checkpoint's weights (a new head when the class count differs); without
    it the model is built from the checkpoint's config with random weights (e.g. for ``--weights PATH``).
    The model is an ``hf_vit`` whose file records the resolved ViT config, so it reloads offline."""
    if not name_or_path:
        raise L2ULError("hf:<name> needs a Hub id or a local directory, e.g. hf:google/vit-base-patch16-224")
    base = _REGISTRY["hf_vit"]

    def build(num_classes: int, pretrained: bool = False,
              input_size: Optional[Union[int, Sequence[int]]] = None) -> nn.Module:
        if pretrained:
            return hf_vit(num_classes, name_or_path=name_or_path, input_size=input_size)
        try:
            config = _transformers().ViTConfig.from_pretrained(name_or_path).to_dict()
        except OSError as e:
            raise L2ULError(f"could not read the ViT config of {name_or_path!r}: {e}; give a local directory "
                            "holding config.json, or check network access") from None
        return hf_vit(num_classes, vit_config={k: v for k, v in config.items() if k in vit_config_keys()},
                      input_size=input_size)

    return ModelSpec("hf_vit", build, base.mean, base.std, None,
                     f"Hugging Face ViT {name_or_path} (pretrained=True loads its weights)",
                     file_options=base.file_options)


_FAMILIES["hf"] = hf_spec
