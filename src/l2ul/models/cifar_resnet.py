"""CIFAR ResNets of He et al. 2016 (Sec. 4.2): ResNet-20/32/44/56/110 with option-A shortcuts.

The layout and parameter names match ``akamaster/pytorch_resnet_cifar10`` (the widely used CIFAR-10
checkpoints), so its ``.th`` files import with :func:`l2ul.models.import_state_dict` (strip ``module.``):
``conv1.weight``, ``bn1.*``, ``layer{S}.{B}.{conv1,bn1,conv2,bn2}.*``, ``linear.{weight,bias}``.
Those checkpoints were trained on inputs normalised with the ImageNet mean/std, hence the defaults.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .classifier import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CifarResNet", "ShortcutA", "BasicBlock"]


class ShortcutA(nn.Module):
    """Parameter-free "option A" shortcut: subsample by 2 in space and zero-pad the channels.

    Maps ``[N, C_in, H, W]`` to ``[N, C_out, ceil(H/2), ceil(W/2)]`` with ``(C_out - C_in) / 2`` zero channels
    on each side.
    """

    def __init__(self, in_planes: int, planes: int):
        super().__init__()
        if (planes - in_planes) % 2:
            raise ValueError(f"option-A shortcut needs an even width increase, got {in_planes} -> {planes}")
        self.pad = (planes - in_planes) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ShortcutA(in_planes, planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for 32x32 inputs: 3 stages of ``(depth - 2) / 6`` blocks, widths 16/32/64."""

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the reference implementation's init
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _register(depth: int, params: str) -> None:
    def build(num_classes: int) -> nn.Module:
        return CifarResNet(depth, num_classes)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (He et al. 2016, option-A shortcuts)."
    register_model(
        f"resnet{depth}", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_shape=(3, 32, 32),
        description=f"CIFAR ResNet-{depth} of He et al. 2016, option-A shortcuts ({params} params at 10 classes); "
                    "imports the akamaster/pytorch_resnet_cifar10 checkpoints",
    )(build)


for _depth, _params in ((20, "0.27M"), (32, "0.46M"), (44, "0.66M"), (56, "0.85M"), (110, "1.7M")):
    _register(_depth, _params)
