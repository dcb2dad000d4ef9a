"""Small networks for tiny data (sklearn digits 1x8x8, MNIST / Fashion-MNIST 1x28x28) and fast tests.

Both use adaptive pooling, so any input of at least 4x4 pixels works. Default normalisation is mean 0.5 /
std 0.5 on each of ``in_channels`` channels.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ._registry import register_model


def _half(kwargs: dict) -> tuple:
    return (0.5,) * int(kwargs["in_channels"])


@register_model("small_cnn", mean=_half, std=_half,
                description="3-block CNN (conv-BN-ReLU, widths w/2w/4w) + global average pool + linear; "
                            "kwargs in_channels=1, width=32")
def small_cnn(num_classes: int, in_channels: int = 1, width: int = 32) -> nn.Module:
    """conv-BN-ReLU-maxpool, conv-BN-ReLU-maxpool, conv-BN-ReLU, global average pool, linear."""
    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    w = int(width)
    return nn.Sequential(
        *block(int(in_channels), w), nn.MaxPool2d(2, ceil_mode=True),
        *block(w, 2 * w), nn.MaxPool2d(2, ceil_mode=True),
        *block(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes),
    )


@register_model("mlp", mean=_half, std=_half,
                description="MLP on the image average-pooled to pool_size x pool_size; "
                            "kwargs in_channels=1, pool_size=8, hidden=[256, 128]")
def mlp(num_classes: int, in_channels: int = 1, pool_size: int = 8, hidden: Sequence[int] = (256, 128)) -> nn.Module:
    """Adaptive average pool to ``pool_size``, flatten, then Linear-ReLU layers of widths ``hidden``."""
    layers: list = [nn.AdaptiveAvgPool2d(int(pool_size)), nn.Flatten()]
    width = int(in_channels) * int(pool_size) ** 2
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
