"""MAS weight importance (Aljundi et al. 2018) on the forget set, as L2UL's anchor weights.

``mas_importance`` returns, for every trainable parameter tensor, the mean over forget instances of the
per-sample absolute gradient ``|d ||f(x)||_2 / d theta|`` (``f(x)`` the logit vector, L2 norm not squared,
as in the authors' code). ``normalize_importance`` turns it into the anchor weights L2UL uses: min-max
normalised per tensor, then ``1 - that``: parameters important to the forget set get weight ~0 (free to
move), unimportant ones ~1 (held at their original values).

Differences from the original code, on purpose (see its notes, bug B6): per-sample absolute gradients
(true MAS) instead of the absolute gradient of the batch mean; gradients are cleared between samples
(the original lets them pile up across batches); eval mode (running BN statistics, as deployed) instead of
train mode; and a tensor whose importance is constant does not divide by zero (it gets weight 1: no
parameter in it is more important to the forget set than another, so it is anchored).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn


def mas_importance(model: nn.Module, images: torch.Tensor, *, progress: Optional[Callable[[int], None]] = None
                   ) -> Dict[str, torch.Tensor]:
    """Mean per-sample ``|grad of ||f(x)||_2|`` for each trainable parameter, on ``images`` (the forget set).

    Per-sample gradients need one backward pass per instance; forget sets are small (k <= a few hundred),
    so a plain loop is both exact and cheap next to adversarial generation.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(images.shape[0]):
            out = model(images[i:i + 1])
            norm = out.flatten(1).norm(p=2, dim=1).sum()
            grads = torch.autograd.grad(norm, list(params.values()), allow_unused=True)
            for (n, _), g in zip(params.items(), grads):
                if g is not None:
                    total[n] += g.abs()
            if progress is not None:
                progress(i + 1)
    finally:
        model.train(was_training)
    k = max(images.shape[0], 1)
    return {n: t / k for n, t in total.items()}


class ImportanceWeights(dict):
    """Anchor weights per parameter name, with the wall time (``seconds``) it took to compute them."""

    seconds: float = 0.0


def normalize_importance(raw: Dict[str, torch.Tensor]) -> ImportanceWeights:
    """Anchor weights ``1 - (raw - min) / (max - min)`` per tensor; a constant tensor gets all ones."""
    out = ImportanceWeights()
    for n, t in raw.items():
        lo, hi = t.min(), t.max()
        span = hi - lo
        if float(span) > 0 and torch.isfinite(span):
            out[n] = 1.0 - (t - lo) / span
        else:
            out[n] = torch.ones_like(t)
    return out


def anchor_penalty(model: nn.Module, weights: Dict[str, torch.Tensor], anchor: Dict[str, torch.Tensor]) -> torch.Tensor:
    """``sum_n sum(weights_n * (theta_n - anchor_n)^2) / 2`` over the parameters in ``weights``."""
    terms = [(weights[n] * (p - anchor[n]).pow(2)).sum() for n, p in model.named_parameters() if n in weights]
    if not terms:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.stack(terms).sum() / 2
