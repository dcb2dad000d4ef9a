"""Small pieces the peer methods (random_labels, boundary_shrink, jit, amun, suli, scrub, salun, bad_teacher) share:
a frozen copy of the original model, the temperature-scaled distillation KL, remaining-data batches, and
the refusal of a task a method cannot do."""
from __future__ import annotations

import copy
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import MethodContext


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with no gradients: the original model as a teacher."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T)) * T^2``, averaged over the batch (Hinton et al.'s distillation
    loss, as ``DistillKL`` of RepDistiller, which SCRUB uses)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits.detach() / t, 1),
                    reduction="batchmean", log_target=True) * (t * t)


def retain_batches(ctx: MethodContext) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``retain_batch_size`` remaining-data examples on the run's device, reshuffled every pass
    with the run's generator, forever."""
    from .oracle import _retain_iter

    for xb, yb in _retain_iter(ctx.data["retain"], ctx.config.retain_batch_size, ctx.generator):
        yield xb.to(ctx.device), torch.as_tensor(yb).long().to(ctx.device)


def other_class_argmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's highest-scoring class other than its label."""
    return logits.scatter(1, labels[:, None], float("-inf")).argmax(1)
