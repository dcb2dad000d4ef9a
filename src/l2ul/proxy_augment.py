"""Cheap proxy sources and augmentations beside the data-free synthesis (:mod:`l2ul.synthesis`): targeted
PGD examples of the forget set, mixup pairs, shifted/flipped copies, and mixtures of several sources.
Measured on the CIFAR-10 ResNet-20 (benchmarks/results/repair_probe.md): 4,096 mixup + shift/flip copies of
512 inverted images repaired to 83.7 D_r against 81.0 without them; the forget set's adversarial examples as
the *only* proxy collapsed the model."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import DataError


def adversarial_proxy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                      per_instance: int = 20, eps: float = 4.0, alpha: float = 0.1, steps: int = 100,
                      seed: int = 0, batch_size: int = 512) -> torch.Tensor:
    """Targeted L2-PGD adversarial examples of ``images`` (the forget set) toward random wrong classes
    (:func:`l2ul.attacks.generate_adversarial_set`), as an unlabeled proxy. Cheap, but they all sit next to
    the forget instances: as the *only* proxy they collapsed the repair on the CIFAR-10 ResNet-20."""
    from .attacks import generate_adversarial_set

    gen = torch.Generator().manual_seed(int(seed))
    adv = generate_adversarial_set(model, images, torch.as_tensor(labels).long(), int(num_classes),
                                   per_instance=int(per_instance), eps=eps, alpha=alpha, steps=int(steps),
                                   batch_size=int(batch_size), generator=gen)
    return adv.images.detach().cpu()


def _check_pool(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise DataError(f"{what} needs a non-empty image tensor [N, C, H, W]")


def mixup_images(images: torch.Tensor, n: int, *, alpha: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``n`` convex combinations ``lam * x_i + (1 - lam) * x_j`` of random pairs (``lam ~ Beta(alpha, alpha)``)."""
    _check_pool(images, "mixup_images")
    gen = torch.Generator().manual_seed(int(seed))
    i = torch.randint(0, images.shape[0], (int(n),), generator=gen)
    j = torch.randint(0, images.shape[0], (int(n),), generator=gen)
    rng = np.random.default_rng(int(seed))
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=int(n)).astype(np.float32)).to(images.device)
    lam = lam.view(-1, 1, 1, 1)
    return (lam * images[i] + (1 - lam) * images[j]).clamp_(0, 1)


def augment_images(images: torch.Tensor, n: int, *, shift: int = 2, flip: bool = True, seed: int = 0) -> torch.Tensor:
    """``n`` random variants of ``images``: a translation of up to ``shift`` pixels (edge pixels replicated)
    and a horizontal flip with probability 1/2."""
    _check_pool(images, "augment_images")
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, images.shape[0], (int(n),), generator=gen)
    return shift_flip(images[idx], gen, shift=shift, flip=flip)


def shift_flip(images: torch.Tensor, generator: Optional[torch.Generator], *, shift: int = 2,
               flip: bool = True) -> torch.Tensor:
    """A copy of ``images`` with each image translated by up to ``shift`` pixels (edge pixels replicated) and
    flipped horizontally with probability 1/2, drawn from ``generator`` (offsets first, then flips)."""
    out = images.clone()
    n = out.shape[0]
    if shift:
        padded = F.pad(out, (shift, shift, shift, shift), mode="replicate")
        offs = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
        h, w = out.shape[2:]
        for k in range(n):
            dy, dx = int(offs[k, 0]), int(offs[k, 1])
            out[k] = padded[k, :, dy:dy + h, dx:dx + w]
    if flip:
        f = (torch.rand(n, generator=generator) < 0.5).to(out.device)
        out[f] = torch.flip(out[f], dims=(3,))
    return out


def mix_sources(sources: Sequence[torch.Tensor], n: int, *, weights: Optional[Sequence[float]] = None,
                seed: int = 0) -> torch.Tensor:
    """``n`` images drawn without replacement (with replacement once a source runs out) from several
    sources, in proportion to ``weights`` (default: equal shares), shuffled."""
    if not sources:
        raise DataError("mix_sources needs at least one image tensor")
    for s in sources:
        _check_pool(s, "mix_sources")
    shapes = {tuple(s.shape[1:]) for s in sources}
    if len(shapes) > 1:
        raise DataError(f"mix_sources: the sources have different image shapes {sorted(shapes)}")
    w = np.asarray(weights if weights is not None else [1.0] * len(sources), dtype=np.float64)
    if w.shape != (len(sources),) or (w < 0).any() or w.sum() <= 0:
        raise DataError("mix_sources: weights must be one non-negative number per source, not all zero")
    counts = np.floor(w / w.sum() * int(n)).astype(int)
    counts[np.argmax(w)] += int(n) - counts.sum()
    gen = torch.Generator().manual_seed(int(seed))
    parts = []
    for s, c in zip(sources, counts):
        if c <= 0:
            continue
        if c <= s.shape[0]:
            idx = torch.randperm(s.shape[0], generator=gen)[:c]
        else:
            idx = torch.randint(0, s.shape[0], (int(c),), generator=gen)
        parts.append(s[idx])
    out = torch.cat(parts)
    return out[torch.randperm(out.shape[0], generator=gen)]
