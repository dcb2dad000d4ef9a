"""``boundary_shrink``: Boundary Shrink (Chen et al., CVPR 2023), instance-wise."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import frozen_eval
from ..errors import RequestError
from ._peers import other_class_argmax
from ._registry import register_method
from .base import MethodContext, UnlearningMethod, fixed_target_phase
from .ingredients import register_ingredient

#: L-infinity radius of the FGSM neighbour search in [0, 1] pixel space ("hard coding in the paper")
FGSM_BOUND = 0.1


def _adopt_neighbours(labels: torch.Tensor, ctx: MethodContext) -> torch.Tensor:
    t = torch.as_tensor(labels).long().to(ctx.device)
    if t.shape != ctx.y_forget.shape or bool((t == ctx.y_forget).any()):
        raise RequestError("the precomputed boundary neighbours do not belong to this forget set")
    return t


def fgsm_neighbours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float = FGSM_BOUND,
                    batch_size: int = 512):
    """``(labels, crossed)``: each instance's label at its untargeted FGSM neighbour
    ``x' = round255(clip(x + bound * sign(grad_x CE(f(x), y)), 0, 1))`` on ``model`` (eval mode), and whether
    that label differs from ``y``. Where the step did not cross (``crossed`` false) the label is the
    neighbour's highest-scoring class other than ``y``."""
    labels, crossed = [], []
    with frozen_eval(model):
        for s in range(0, x.shape[0], batch_size):
            xb, yb = x[s:s + batch_size].detach().clone().requires_grad_(True), y[s:s + batch_size]
            grad, = torch.autograd.grad(F.cross_entropy(model(xb), yb), xb)
            x_adv = torch.round((xb.detach() + bound * grad.sign()).clamp(0, 1) * 255) / 255
            with torch.no_grad():
                logits = model(x_adv)
            pred = logits.argmax(1)
            labels.append(torch.where(pred != yb, pred, other_class_argmax(logits, yb)))
            crossed.append(pred != yb)
    return torch.cat(labels), torch.cat(crossed)


@register_ingredient("boundary_neighbours", adopt=_adopt_neighbours,
                     description="each forget instance's label at its FGSM neighbour on the original model")
def boundary_neighbours(ctx: MethodContext) -> torch.Tensor:
    """The nearest-wrong-class label of every forget instance, found on the original model by one FGSM step
    of L-infinity length ``FGSM_BOUND`` (see :func:`fgsm_neighbours`)."""
    labels, crossed = fgsm_neighbours(ctx.model, ctx.x_forget, ctx.y_forget, FGSM_BOUND, ctx.config.pgd_batch_size)
    labels.crossed = crossed        # where the FGSM step itself crossed the boundary
    return labels


@register_method
class BoundaryShrink(UnlearningMethod):
    """Boundary Shrink: find each forget instance's nearest wrong class by a neighbour search on the
    original model, then fine-tune the instance toward that class, so the decision boundary shrinks around
    it and it lands where the model would have put it had it never been a member of its class.

    Chen, Gao, Liu, Peng, Wang: *Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
    Decision Boundary*, CVPR 2023. The authors' code (a zip linked from the paper, re-published at
    github.com/TY-LEE-KR/Boundary-Unlearning-Code, ``boundary_unlearning.py``; also re-implemented in
    github.com/OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/boundary_sh.py``): an untargeted FGSM
    step of L-infinity size ``bound = 0.1`` in [0, 1] pixel space on a frozen copy of the original model,
    pixels rounded to 1/255, no random start; the neighbour's predicted label is the new label; plain
    cross-entropy toward it. Taken: the neighbour search exactly so (computed once on the original model,
    ingredient ``boundary_neighbours``: the authors' search runs on the frozen original every batch, so the
    label of an instance never changes either). Not taken: the authors' SGD lr 1e-5 (momentum 0.9) for 10
    epochs of a whole class, too slow for a few instances: the config's SGD and step budget, the run stops
    when the task holds. Added: where the FGSM step does not cross the boundary, the neighbour's
    highest-scoring class other than the label is used (the code would train the instance toward its own
    label and never forget it); ``result.ingredients["boundary_neighbours"].crossed`` says where. Boundary
    Expanding (the paper's other method, which widens the classifier head) is not implemented. For
    ``relabel`` the request's targets replace the neighbour labels."""

    name = "boundary_shrink"
    description = "Boundary Shrink: fine-tune each forget instance toward its FGSM nearest wrong class"
    ingredients = ("boundary_neighbours",)
    data_needs = "none"
    source = "Chen et al., CVPR 2023 (authors' code: github.com/TY-LEE-KR/Boundary-Unlearning-Code)"

    def phases(self, ctx: MethodContext):
        targets = ctx.targets if ctx.task == "relabel" else ctx.ingredients["boundary_neighbours"]
        return [fixed_target_phase(ctx, targets, bn=ctx.config.bn)]
