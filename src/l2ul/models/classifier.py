"""The wrapper every l2ul model is: :class:`NormalizedClassifier` (images in [0, 1] -> logits)."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, L2ULError

__all__ = ["NormalizedClassifier", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Floats = Sequence[float]


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
        if not mean or len(mean) != len(std) or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
            raise L2ULError(f"mean {mean} and std {std} must be per-channel lists of equal length of finite "
                            "numbers, with std > 0")
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


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))
