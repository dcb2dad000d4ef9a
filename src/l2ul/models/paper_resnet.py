"""The paper's CIFAR models: torchvision ResNet-18 / ResNet-50 with a 3x3 stride-1 stem.

``cifar_resnet18`` (CIFAR-10) keeps the stem's max-pool, as the original L2UL code's ``resnet.py`` does;
``cifar_resnet50`` (CIFAR-100) drops it. Both are torchvision ``ResNet`` instances with ``conv1`` (and
``maxpool``) replaced, so parameter names are torchvision's (``conv1``, ``bn1``, ``layer1..4``, ``fc``).
"""
from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ._registry import register_model

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


def _cifar_stem(net: ResNet, maxpool: bool) -> ResNet:
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    if not maxpool:
        net.maxpool = nn.Identity()
    return net


@register_model("cifar_resnet18", mean=CIFAR10_MEAN, std=CIFAR10_STD, input_shape=(3, 32, 32),
                description="paper's CIFAR-10 model: ResNet-18 (BasicBlock), 3x3 stride-1 stem, "
                            "stem max-pool kept by default (maxpool=False removes it)")
def cifar_resnet18(num_classes: int, maxpool: bool = True) -> nn.Module:
    """ResNet-18 for 32x32 inputs; ``maxpool`` keeps the stem max-pool like the paper's code."""
    return _cifar_stem(ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes), maxpool)


@register_model("cifar_resnet50", mean=CIFAR100_MEAN, std=CIFAR100_STD, input_shape=(3, 32, 32),
                description="paper's CIFAR-100 model: ResNet-50 (Bottleneck), 3x3 stride-1 stem, no max-pool")
def cifar_resnet50(num_classes: int, maxpool: bool = False) -> nn.Module:
    """ResNet-50 for 32x32 inputs; no stem max-pool unless ``maxpool=True``."""
    return _cifar_stem(ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes), maxpool)
