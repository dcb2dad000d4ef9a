"""Pre-training recipes: the optimiser, schedule and defaults :func:`l2ul.training.pretrain` trains with.

The recipes (:data:`RECIPES`, printed by :func:`describe_recipes`):

``cifar``
    The paper's CIFAR-10 ResNet-18 / CIFAR-100 ResNet-50 pre-training: SGD (lr 0.01, momentum 0.9, weight
    decay 5e-4), ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch, 200 epochs, batch 128, data
    augmentation (random crop 32 with padding 4 + horizontal flip: the dataset is loaded with
    ``augment=True``).
``utkface``
    The paper's UTKFace ResNet-18: Adam with ``OneCycleLR(max_lr=lr, total_steps=epochs * steps_per_epoch)``
    stepped once per batch, 100 epochs, batch 128, gradient *value* clipping at 0.1
    (``nn.utils.clip_grad_value_``), augmentation (random 120 crop + flip), and the checkpoint with the best
    validation accuracy (``bundle.extra["val"]``) is the one returned. Learning rate / weight decay depend on
    the age grouping (read from ``bundle.extra["grouping"]``): TNN 0.005 / 1e-4, MFD 1e-4 / 0,
    balanced 1e-3 / 0, groups 1e-3 / 1e-4, tens 1e-3 / 1e-3.
``quick``
    Small data (digits, Fashion-MNIST demos, tests): Adam lr 1e-3, no weight decay, no schedule, 15 epochs,
    batch 64, no augmentation.

Any of ``epochs``, ``batch_size``, ``lr`` and ``weight_decay`` may be overridden per call; the schedules
follow the effective values (``T_max`` = epochs, ``total_steps`` = epochs x batches per epoch).

Everything here is also importable from :mod:`l2ul.training`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .errors import L2ULError

__all__ = ["Recipe", "RECIPES", "describe_recipes", "get_recipe"]


@dataclass(frozen=True)
class Recipe:
    """A pre-training recipe: optimiser, schedule and defaults.

    ``optimizer``: ``"sgd"`` (with ``momentum``) or ``"adam"``. ``scheduler``: ``None``, ``"cosine"``
    (``CosineAnnealingLR(T_max=epochs)``, stepped per epoch) or ``"onecycle"``
    (``OneCycleLR(max_lr=lr, total_steps=epochs * steps_per_epoch)``, stepped per batch).
    ``grad_clip_value``: clip every gradient element to ``[-v, v]`` before each step. ``select_best``: return
    the weights of the epoch with the best validation accuracy (needs ``bundle.extra["val"]``).
    ``augment``: load the dataset with ``augment=True`` (used by :func:`pretrain_to_file`).
    ``by_grouping``: UTKFace age grouping -> ``(lr, weight_decay)``, overriding ``lr``/``weight_decay``.
    """

    name: str
    description: str
    optimizer: str
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    augment: bool
    momentum: float = 0.0
    scheduler: Optional[str] = None
    grad_clip_value: Optional[float] = None
    select_best: bool = False
    by_grouping: Mapping[str, Tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["by_grouping"] = {k: list(v) for k, v in self.by_grouping.items()}
        return d


#: Recipe name -> :class:`Recipe` (see the module docstring for the paper's settings).
RECIPES: Dict[str, Recipe] = {
    "cifar": Recipe(
        name="cifar",
        description="paper's CIFAR-10 ResNet-18 / CIFAR-100 ResNet-50: SGD lr 0.01 momentum 0.9 wd 5e-4, "
                    "cosine annealing per epoch, 200 epochs, batch 128, random crop + flip",
        optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, scheduler="cosine", epochs=200,
        batch_size=128, augment=True),
    "utkface": Recipe(
        name="utkface",
        description="paper's UTKFace ResNet-18: Adam + OneCycleLR per batch, 100 epochs, batch 128, grad value "
                    "clip 0.1, best-validation checkpoint; lr/wd by grouping (TNN 0.005/1e-4, MFD 1e-4/0, "
                    "balanced 1e-3/0, groups 1e-3/1e-4, tens 1e-3/1e-3)",
        optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler="onecycle", epochs=100, batch_size=128,
        augment=True, grad_clip_value=0.1, select_best=True,
        by_grouping={"TNN": (0.005, 1e-4), "MFD": (1e-4, 0.0), "balanced": (1e-3, 0.0),
                     "groups": (1e-3, 1e-4), "tens": (1e-3, 1e-3)}),
    "quick": Recipe(
        name="quick",
        description="small data (digits, Fashion-MNIST, tests): Adam lr 1e-3, no weight decay, 15 epochs, "
                    "batch 64, no augmentation",
        optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=15, batch_size=64, augment=False),
}


def describe_recipes() -> str:
    """The recipes, one per line, for CLI help and error messages."""
    width = max(len(n) for n in RECIPES)
    return "\n".join(f"  {n.ljust(width)}  {r.description}" for n, r in RECIPES.items())


def get_recipe(recipe: Union[str, Recipe]) -> Recipe:
    """A :class:`Recipe` by name (case-insensitive) or the recipe itself."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str) and recipe.lower() in RECIPES:
        return RECIPES[recipe.lower()]
    raise L2ULError(f"unknown pre-training recipe {recipe!r}; valid recipes:\n{describe_recipes()}")
