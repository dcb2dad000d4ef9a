"""Targeted L2 PGD adversarial examples of the forget instances.

Why hand-written: the original code uses advertorch (unmaintained since 2020, does not install on current
PyTorch); torchattacks pins an old ``requests`` and its L2 PGD is untargeted-first, runs the model's
parameters with gradients enabled and draws its random start differently. The attack is ~40 lines, so
l2ul owns it and tests it (norm bound, [0, 1] range, target hit rate).

The update is advertorch's ``L2PGDAttack(targeted=True, rand_init=True)``, which the paper used:
random start (uniform image minus x, clipped to the L2 ball, image clamped to [0, 1]); then ``steps`` times:
``delta -= alpha * g / ||g||_2`` (g = gradient of the summed cross-entropy toward the target), clamp
``x + delta`` to [0, 1], project ``delta`` onto the L2 ball of radius ``eps``. Projection after clamping
keeps the image in [0, 1] because it is a convex combination of two points in [0, 1].

Speed: the model's parameters are excluded from autograd during the attack (only the input gradient is
needed), the model runs in eval mode, and all instances are attacked together in large batches.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

_TINY = 1e-12
_GRAD_NORM_FLOOR = 1e-6   # advertorch.utils.normalize_by_pnorm's small_constant


def _l2_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped for broadcasting over an image batch."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def clip_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Scale each perturbation so that its L2 norm is at most ``eps``."""
    factor = torch.clamp(eps / (_l2_norm(delta) + _TINY), max=1.0)
    return delta * factor


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode with parameter gradients disabled; restore both afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def random_other_labels(labels: torch.Tensor, num_classes: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A label drawn uniformly from the classes other than each ``labels[i]`` (never the label itself).

    The original code draws uniformly over all classes and replaces collisions by ``num_classes // 2``,
    which doubles that class's mass and, for instances of that class, returns the true label (bug B3).
    """
    if num_classes < 2:
        raise ValueError("targeted attacks need at least 2 classes")
    # Drawn on the CPU (with a CPU generator) so that a seed gives the same labels on every device.
    offset = torch.randint(1, num_classes, tuple(labels.shape), generator=generator)
    return (labels + offset.to(labels.device)) % num_classes


class TargetedL2PGD:
    """Targeted L2 projected gradient descent with random start (torchattacks-style: one object, same call).

    >>> attack = TargetedL2PGD(model, eps=4.0, alpha=0.1, steps=100)
    >>> x_adv = attack(images, target_labels)   # images in [0, 1]

    The model is used in eval mode with frozen parameters; its mode and ``requires_grad`` flags are restored.
    ``stop_margin``: stop each example once its target logit leads every other by this margin (it is then
    no longer forwarded, so the attack costs fewer passes); ``None`` (the default, the paper's) runs all
    ``steps`` iterations for every example.
    """

    def __init__(self, model: nn.Module, eps: float = 4.0, alpha: float = 0.1, steps: int = 100,
                 random_start: bool = True, batch_size: int = 512, stop_margin: Optional[float] = None):
        if eps <= 0 or alpha <= 0 or steps < 0:
            raise ValueError("eps and alpha must be > 0 and steps >= 0")
        if stop_margin is not None and stop_margin < 0:
            raise ValueError("stop_margin must be >= 0 (or None: every iteration)")
        self.model, self.eps, self.alpha, self.steps = model, float(eps), float(alpha), int(steps)
        self.random_start, self.batch_size, self.stop_margin = random_start, int(batch_size), stop_margin

    def _attack_batch(self, x: torch.Tensor, target: torch.Tensor, generator: Optional[torch.Generator],
                      on_step=None) -> torch.Tensor:
        if self.random_start:
            noise = torch.rand(tuple(x.shape), generator=generator)   # CPU draw: same start on every device
            delta = clip_l2(noise.to(x.device) - x, self.eps)
            delta = (x + delta).clamp_(0.0, 1.0) - x
        else:
            delta = torch.zeros_like(x)
        if self.stop_margin is not None:
            return self._attack_until_reached(x, target, delta, on_step)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(self.model(x + delta), target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                # descend (toward the target); like advertorch, a gradient norm below 1e-6 is not blown up
                # to a full step, so an example already deep in its target class stays put
                delta = delta - self.alpha * grad / _l2_norm(grad).clamp_min(_GRAD_NORM_FLOOR)
                delta = (x + delta).clamp_(0.0, 1.0) - x
                delta = clip_l2(delta, self.eps)
            if on_step is not None:
                on_step()
        return (x + delta).detach().clamp_(0.0, 1.0)

    def _attack_until_reached(self, x: torch.Tensor, target: torch.Tensor, delta: torch.Tensor, on_step) -> torch.Tensor:
        """The same iterations, but an example whose target logit leads every other by ``stop_margin`` at its
        current point stops there (it is not stepped again, and no longer forwarded): the returned examples
        either reach the margin or used every iteration."""
        active = torch.arange(x.shape[0], device=x.device)
        for _ in range(self.steps):
            if active.numel():
                d = delta[active].clone().requires_grad_(True)
                logits = self.model(x[active] + d)
                z_t = logits.gather(1, target[active][:, None]).squeeze(1)
                lead = z_t - logits.scatter(1, target[active][:, None], float("-inf")).amax(1)
                loss = F.cross_entropy(logits, target[active], reduction="sum")
                (grad,) = torch.autograd.grad(loss, d)
                with torch.no_grad():
                    going = lead.detach() < self.stop_margin
                    step = d - self.alpha * grad / _l2_norm(grad).clamp_min(_GRAD_NORM_FLOOR)
                    step = clip_l2((x[active] + step).clamp_(0.0, 1.0) - x[active], self.eps)
                    delta[active[going]] = step[going]
                    active = active[going]
            if on_step is not None:
                on_step()
        return (x + delta).detach().clamp_(0.0, 1.0)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if images.shape[0] != targets.shape[0]:
            raise ValueError("images and targets must have the same length")
        out = []
        with frozen_eval(self.model):
            for start in range(0, images.shape[0], self.batch_size):
                out.append(self._attack_batch(images[start:start + self.batch_size],
                                              targets[start:start + self.batch_size], generator))
        return torch.cat(out) if out else images.clone()


@dataclass
class AdversarialSet:
    """Adversarial examples of the forget instances: ``images[i]`` was made from forget instance
    ``source[i]`` toward label ``labels[i]`` (never that instance's own label)."""

    images: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    seconds: float = 0.0   # wall time it took to generate

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def success_rate(self, model: nn.Module, batch_size: Optional[int] = None) -> float:
        """Share of examples that ``model`` classifies as their target label (``batch_size``: ``None``
        chooses by device, :func:`l2ul.config.default_eval_batch`)."""
        from .config import default_eval_batch

        if len(self) == 0:
            return float("nan")
        if batch_size is None:
            batch_size = default_eval_batch(self.images.device)
        with frozen_eval(model), torch.no_grad():
            hits = sum(int((model(self.images[s:s + batch_size]).argmax(1) == self.labels[s:s + batch_size]).sum())
                       for s in range(0, len(self), batch_size))
        return hits / len(self)


def generate_adversarial_set(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                             per_instance: int = 20, eps: float = 4.0, alpha: float = 0.1, steps: int = 100,
                             batch_size: int = 512, generator: Optional[torch.Generator] = None,
                             progress=None, stop_margin: Optional[float] = None) -> AdversarialSet:
    """``per_instance`` targeted adversarial examples of every forget instance, each toward a fresh uniformly
    random wrong label, generated on ``model`` (the original, before unlearning) in large batches.

    ``stop_margin``: see :class:`TargetedL2PGD` (None: every iteration, as the paper).
    ``progress``: optional callable ``progress(n_done)``, called after every PGD iteration with the examples
    done so far, counting a batch's iterations in fractions (a batch of 512 takes ``steps`` iterations).
    """
    k = images.shape[0]
    source = torch.arange(k, device=images.device).repeat(per_instance)          # instance index per example
    targets = random_other_labels(labels[source], num_classes, generator)
    x_all = images[source]
    attack = TargetedL2PGD(model, eps=eps, alpha=alpha, steps=steps, batch_size=batch_size, stop_margin=stop_margin)
    out = []
    with frozen_eval(model):
        for start in range(0, x_all.shape[0], batch_size):
            n = min(batch_size, x_all.shape[0] - start)
            it = [0]

            def on_step(start=start, n=n, it=it):
                it[0] += 1
                progress(start + n * it[0] / max(steps, 1))

            out.append(attack._attack_batch(x_all[start:start + batch_size], targets[start:start + batch_size],
                                            generator, on_step=on_step if progress is not None else None))
            if progress is not None:
                progress(start + n)
    adv = torch.cat(out) if out else x_all.clone()
    return AdversarialSet(images=adv, labels=targets, source=source)


def make_adversarial_set(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                         config, *, generator: Optional[torch.Generator] = None,
                         progress: bool = False) -> AdversarialSet:
    """The adversarial set :func:`l2ul.unlearn` generates for ``config`` (an :class:`l2ul.UnlearnConfig`:
    targets, PGD settings, batch size), timed (``.seconds``). With ``generator=None`` it is seeded with
    ``config.seed`` exactly as the engine seeds it, so passing the result as ``adversarial=`` reproduces the
    run that would generate its own."""
    from ._progress import progress_bar

    gen = generator if generator is not None else torch.Generator().manual_seed(config.seed)
    bar = progress_bar(progress, images.shape[0] * config.adv_per_instance, "adversarial examples", fractional=True)
    t0 = time.perf_counter()
    adv = generate_adversarial_set(
        model, images, labels, num_classes, per_instance=config.adv_per_instance, eps=config.pgd_eps,
        alpha=config.pgd_alpha, steps=config.pgd_steps, batch_size=config.pgd_batch_size, generator=gen,
        progress=(lambda n: bar.update(n - bar.n)) if bar else None,
        stop_margin=config.pgd_stop_margin)
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    adv.seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    return adv
