"""``random_labels``: fine-tune the forget set toward random wrong labels, fixed per instance."""
from __future__ import annotations

import torch

from ..attacks import random_other_labels
from ..errors import RequestError
from ._registry import register_method
from .base import MethodContext, UnlearningMethod, fixed_target_phase
from .ingredients import register_ingredient


def _adopt_targets(targets: torch.Tensor, ctx: MethodContext) -> torch.Tensor:
    t = torch.as_tensor(targets).long().to(ctx.device)
    if t.shape != ctx.y_forget.shape or bool((t == ctx.y_forget).any()):
        raise RequestError("the precomputed random targets do not belong to this forget set")
    return t


@register_ingredient("random_targets", adopt=_adopt_targets,
                     description="one random label per forget instance, never its own (the run's generator)")
def random_targets(ctx: MethodContext) -> torch.Tensor:
    """One label per forget instance drawn uniformly from the classes other than its own, with the run's
    generator (so the same seed gives the same targets)."""
    return random_other_labels(ctx.y_forget, ctx.num_classes, ctx.generator)


@register_method
class RandomLabels(UnlearningMethod):
    """Fine-tune the forget instances toward random labels: each instance gets one label drawn uniformly
    from the classes other than its own, **fixed once** before the first step (ingredient
    ``random_targets``), and the model descends the cross-entropy toward it until no instance is
    predicted as its label. No other data is used.

    The forget term of "Amnesiac Machine Learning" (Graves, Nagisetty, Ganesh, AAAI 2021: relabel the
    sensitive data with randomly selected incorrect labels and train), and the "random labeling" (RL)
    baseline of SalUn (Fan et al., ICLR 2024, github.com/OPTML-Group/Unlearn-Saliency,
    ``Classification/unlearn/RL.py``), here without the remaining-data term so that it needs nothing but the
    forget set. Defaults: the config's SGD (``lr``, ``momentum``, ``weight_decay``), ``forget_batch_size``
    instances per step, the config's batch-norm mode. Differences from the sources: the labels exclude the
    true one (the RL code draws from all classes) and are fixed per instance rather than redrawn per epoch,
    so the target never moves and never is the label being forgotten. For ``relabel`` the request's
    targets replace the random ones (plain fine-tuning toward them)."""

    name = "random_labels"
    description = "fine-tune the forget set toward random wrong labels, fixed per instance (retain-free)"
    ingredients = ("random_targets",)
    data_needs = "none"
    source = "Graves et al., AAAI 2021 (random relabelling); the RL baseline of SalUn (Fan et al., ICLR 2024)"

    def phases(self, ctx: MethodContext):
        targets = ctx.targets if ctx.task == "relabel" else ctx.ingredients["random_targets"]
        return [fixed_target_phase(ctx, targets, bn=ctx.config.bn)]
