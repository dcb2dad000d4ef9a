"""``salun``: SalUn, saliency unlearning (Fan et al., ICLR 2024): random labels on the forget set and
remaining-data fine-tuning, updating only the weights most salient to forgetting."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ._peers import retain_batches
from ._registry import register_method
from .base import MethodContext, Phase, UnlearningMethod, cycle_batches
from .ingredients import register_ingredient


def saliency_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fraction: float,
                  batch_size: int) -> Dict[str, torch.Tensor]:
    """SalUn's weight saliency map: ``g = |sum over forget batches of grad_theta (-CE(f(x), y))|`` on
    ``model`` in eval mode, and a 0/1 mask per parameter tensor that is 1 on the ``fraction`` of all weights
    (one threshold over every tensor) with the largest ``g`` (ties broken by position)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) for _, p in params]
    was = model.training
    model.eval()
    for s in range(0, x.shape[0], batch_size):
        loss = -F.cross_entropy(model(x[s:s + batch_size]), y[s:s + batch_size])
        for g, d in zip(grads, torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)):
            if d is not None:
                g += d
    model.train(was)
    flat = torch.cat([g.abs().flatten() for g in grads])
    keep = int(flat.numel() * fraction)
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.argsort(-flat, stable=True)[:keep]] = True
    masks, start = {}, 0
    for (name, p), g in zip(params, grads):
        masks[name] = chosen[start:start + g.numel()].view_as(g).to(p.dtype)
        start += g.numel()
    return masks


@register_ingredient("saliency_mask", description="SalUn's weight saliency mask from the forget loss's gradient")
def saliency(ctx: MethodContext) -> Dict[str, torch.Tensor]:
    """The weight saliency mask of the original model on the forget set (``SalUn.salun_fraction`` of the
    weights), see :func:`saliency_mask`."""
    with torch.enable_grad():
        masks = saliency_mask(ctx.model, ctx.x_forget, ctx.y_forget, SalUn.salun_fraction,
                              ctx.config.forget_batch_size)
    return _Masks(masks)


class _Masks(dict):
    """The masks by parameter name (a dict that can carry ``seconds``)."""


class _MaskedSGD(torch.optim.SGD):
    """SGD that changes only the masked weights: gradients are masked before the step, and after it every
    unmasked weight is put back to its value before unlearning and its momentum cleared (weight decay and
    momentum would otherwise move it), as ``_apply_mask_to_grads`` / ``_restore_masked_params`` of the
    official code."""

    def __init__(self, params: List[nn.Parameter], masks: Dict[nn.Parameter, torch.Tensor], **kw):
        super().__init__(params, **kw)
        self._masks = masks
        self._theta0 = {p: p.detach().clone() for p in masks}

    @torch.no_grad()
    def step(self, closure=None):
        for p, m in self._masks.items():
            if p.grad is not None:
                p.grad.mul_(m)
        out = super().step(closure)
        for p, m in self._masks.items():
            p.mul_(m).add_(self._theta0[p] * (1 - m))
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(m)
        return out


@register_method
class SalUn(UnlearningMethod):
    """SalUn: compute a weight saliency map from the gradient of the forget loss on the original model,
    keep the most salient ``salun_fraction`` of the weights trainable and freeze the rest at their original
    values, then fine-tune with random labels on the forget set plus cross-entropy on the remaining data.

    Fan, Liu, Zhang, Wei, Wong, Liu: *SalUn: Empowering Machine Unlearning via Gradient-based Weight
    Saliency in Both Image Classification and Generation*, ICLR 2024; official code
    github.com/OPTML-Group/Unlearn-Saliency (``Classification/generate_mask.py: save_gradient_ratio``,
    ``Classification/unlearn/RL.py``). Taken: the mask exactly so (``|sum of gradients of -CE|`` over the
    forget batches in eval mode, one global threshold, the README's ``with_0.5.pt``: half of the weights,
    ``salun_fraction = 0.5``; ingredient ``saliency_mask``); the masked update (gradients masked, unmasked
    weights restored and their momentum cleared after every step); random labels on the forget set, never
    the true label, as the paper's loss defines (the code draws from all classes); forget and remaining
    examples in one batch, the cross-entropy averaged over it (the CIFAR-100 branch's mixed loader):
    ``(B_f * CE(forget, random) + B_r * CE(retain)) / (B_f + B_r)``. Changed: the random labels are drawn
    once per instance (ingredient ``random_targets``, shared with ``random_labels``), where the code redraws
    them every batch (CIFAR-10) or every epoch (CIFAR-100): redrawn every step, the run reached l2ul's
    stopping criterion on 2 of 5 requests of 8 digits within 1000 steps, with fixed labels on 5 of 5 (93 to
    217 steps, D_r 0.96 to 0.97); the config's SGD, ``forget_batch_size`` + ``retain_batch_size`` examples
    per step until no forget instance is predicted as its label, instead of the code's lr 0.013 for 10
    epochs over the forget and remaining data. For ``relabel`` the request's targets replace the random
    labels."""

    name = "salun"
    description = "SalUn: random labels + remaining-data CE, only the weights most salient to the forget loss updated"
    ingredients = ("random_targets", "saliency_mask")
    data = ("retain",)
    data_needs = "remaining training data"
    source = "Fan et al., ICLR 2024 (github.com/OPTML-Group/Unlearn-Saliency)"
    #: fraction of the weights updated (the official README's mask with_0.5.pt)
    salun_fraction = 0.5

    def phases(self, ctx: MethodContext):
        cfg = ctx.config
        by_name = dict(ctx.model.named_parameters())
        masks = {by_name[n]: m.to(ctx.device) for n, m in ctx.ingredients["saliency_mask"].items()}
        forget = cycle_batches(ctx.x_forget.shape[0], cfg.forget_batch_size, ctx.generator)
        retain = retain_batches(ctx)
        targets = ctx.targets if ctx.task == "relabel" else ctx.ingredients["random_targets"]

        def loss(model: nn.Module, c: MethodContext) -> torch.Tensor:
            idx = next(forget).to(c.device)
            xr, yr = next(retain)
            out = model(torch.cat([c.x_forget[idx], xr]))
            return F.cross_entropy(out, torch.cat([targets[idx], yr]))

        def optimizer(params):
            return _MaskedSGD(params, masks, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

        return [Phase("optimization", "forget", cfg.max_steps, optimizer, loss, bn=cfg.bn)]
