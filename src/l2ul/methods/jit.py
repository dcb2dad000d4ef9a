"""``jit``: JiT, zero-shot unlearning by Lipschitz regularisation (Foster et al., 2024)."""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_method
from .base import MethodContext, Phase, UnlearningMethod, cycle_batches


def lipschitz_ratio(model: nn.Module, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per instance and noisy copy, ``||f(x) - f(x')|| / ||x - x'||`` with ``x' = clip(x + noise, 0, 1)``
    (``noise``: ``[n, *x.shape]``), the noisy outputs without gradient: shape ``[n, len(x)]``. JiT's
    estimate of the model's local Lipschitz constant at each instance."""
    out = model(x)
    ratios = []
    for eps in noise:
        x2 = (x + eps).clamp(0, 1)
        with torch.no_grad():
            out2 = model(x2)
        ratios.append((out - out2).flatten(1).norm(dim=1) / (x - x2).flatten(1).norm(dim=1).clamp_min(1e-12))
    return torch.stack(ratios)


@register_method
class JiT(UnlearningMethod):
    """JiT ("just in time"): make the model's output insensitive to small input perturbations around each
    forget instance, which smooths away what the model memorised about it, with no data but the forget set.

    Each step draws ``jit_samples`` Gaussian perturbations ``x' = clip(x + N(0, jit_sigma^2), 0, 1)`` of every
    instance of a forget batch and descends ``sum_i mean_n ||f(x_i) - f(x'_i)||_2 / ||x_i - x'_i||_2`` (``f``:
    the logits; the perturbed outputs are constants), with plain SGD (no momentum, no weight decay) and batch
    norm frozen, until no forget instance is predicted as its label.

    Foster, Fogarty, Schoepf, Oztireli, Brintrup et al.: *Zero-shot Machine Unlearning at Scale via
    Lipschitz Regularization* (arXiv 2402.01401, 2024); official code
    github.com/jwf40/Zeroshot-Unlearning-At-Scale (``src/lipschitz.py``, ``Lipschitz.modify_weight``;
    ``src/forget_random_main.py``). Taken from the code: the loss exactly so (sum over the batch of the
    ratio, averaged over the noisy copies, ``n_samples = 25``; Gaussian noise clamped to the image range;
    the logits as the output), plain SGD with the code's VGG16 learning rate ``3e-4``. The code's noise:
    sigma 0.01 (VGG16, CIFAR) or 0.5 (ViT) on the *normalised* image, i.e. about 0.0025 or 0.125 in [0, 1]
    pixels, where l2ul adds it (the model normalises inside). Changed: ``jit_sigma = 0.2`` pixels, chosen on
    the 8x8 digits test model, where sigma 0.0025 destroyed the model in one step (the ratio's gradient
    grows as the perturbation shrinks) and 0.05 to 0.125 needed up to 1000 steps; batch norm frozen (eval
    mode) whatever the config's ``bn``: the code leaves the model in train mode, where the clean and the 25
    noisy forwards are normalised with different batch statistics and each one overwrites the running
    statistics from the same few instances (on digits, 4 requests of 8: D_r 0.40 to 0.56 in train mode, 0.53
    to 0.65 frozen, seeds 0-3); the run goes on until the task holds instead of one pass over the forget set.
    The code's unused SSD parameters (dampening, selection weighting) are left out. ``relabel`` is refused:
    the loss has no label to pull toward."""

    name = "jit"
    description = "JiT: minimise the forget set's output change under input noise (zero-shot Lipschitz)"
    data_needs = "none"
    source = "Foster et al., arXiv 2402.01401, 2024 (github.com/jwf40/Zeroshot-Unlearning-At-Scale)"
    tasks = ("misclassify",)
    #: noisy copies per forget instance and step (the code's n_samples)
    jit_samples = 25
    #: std of the Gaussian input noise, [0, 1] pixel space
    jit_sigma = 0.2
    #: SGD learning rate (no momentum, no weight decay, as the code; its VGG16 value)
    jit_lr = 3e-4

    def phases(self, ctx: MethodContext):
        cfg = ctx.config
        batches = cycle_batches(ctx.x_forget.shape[0], cfg.forget_batch_size, ctx.generator)
        n, sigma = self.jit_samples, self.jit_sigma

        def loss(model: nn.Module, c: MethodContext) -> torch.Tensor:
            idx = next(batches).to(c.device)
            x = c.x_forget[idx]
            # drawn on the CPU with the run's generator: the same seed gives the same noise on every device
            noise = torch.randn((n, *x.shape), generator=c.generator).to(c.device) * sigma
            return lipschitz_ratio(model, x, noise).sum(1).mean()

        lr = self.jit_lr
        return [Phase("optimization", "forget", cfg.max_steps, lambda params: torch.optim.SGD(params, lr=lr), loss,
                      bn="freeze")]
