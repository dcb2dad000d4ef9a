"""Data-free proxy images for the repair phase: inversion of batch-norm statistics, and cheap alternatives.

When no unlabeled in-domain images are available, the repair phase (issue #11) can distil the original
model on images synthesised from the model itself.

:func:`invert_bn_statistics` is DeepInversion (Yin et al., "Dreaming to Distill: Data-free Knowledge
Transfer via DeepInversion", CVPR 2020; reference code github.com/NVlabs/DeepInversion). Starting from
noise, a batch of images is optimised with Adam so that

* the model classifies image ``i`` as its target class ``i % num_classes`` (cross-entropy, class-balanced);
* at the input of every ``BatchNorm2d`` layer, the batch's per-channel mean and (biased) variance match the
  layer's running statistics: ``sum_l ||mu_l(x) - running_mean_l||_2 + ||var_l(x) - running_var_l||_2``,
  collected with forward hooks while the model runs in eval mode (its running statistics are read, never
  updated);
* the image is smooth: total variation, the L2 norm of the differences between neighbouring pixels
  (horizontal, vertical and both diagonals), as in the reference code;

with random jitter (the batch is rolled by up to ``jitter`` pixels in each direction) and random horizontal
flips at every step. Differences from the reference code, all deliberate: the pixels are optimised in
``[0, 1]`` image space (l2ul models normalise inside the model) and clamped back into ``[0, 1]`` after every
Adam step (projected Adam), so every image is a valid input; the final images are returned (the reference
keeps the lowest-loss batch); the defaults (200 steps, ``lr`` 0.1) are for CPU budgets, where the
reference runs 2000 iterations; ``tv_weight`` is in pixel units (the reference's 1e-3 on normalised inputs
is about 5e-3 on pixels for a standard deviation of 0.2).

:func:`cached_synthesis` stores the result in the l2ul cache folder (``$L2UL_CACHE_DIR`` or
``~/.cache/l2ul``, under ``synthesis/``) keyed by a hash of the model's state dict and every setting, so the
(slow) inversion runs once per model.

Cheap alternatives, for comparison: :func:`adversarial_proxy` (targeted PGD examples of the forget set,
which on their own collapse the repair, see ``benchmarks/results/repair_probe.md``), :func:`mixup_images`,
:func:`augment_images` and :func:`mix_sources`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .safety import atomic_path

PathLike = Union[str, os.PathLike]

__all__ = ["SynthesisResult", "invert_bn_statistics", "bn_statistics_loss", "cached_synthesis",
           "state_dict_hash", "synthesis_cache_path", "adversarial_proxy", "mixup_images", "augment_images",
           "mix_sources", "SYNTHESIS_VERSION"]

#: Bumped whenever the algorithm changes what a given setting produces; part of every cache key.
SYNTHESIS_VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# helpers


from .attacks import frozen_eval as _frozen  # noqa: E402  (eval mode, parameter gradients off, restored)


def _device_of(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _batch_seed(seed: int, index: int) -> int:
    """Independent generator seed for batch ``index``: with the same ``batch_size``, the first ``m`` images of
    an ``n``-image synthesis are those of an ``m``-image one."""
    return int.from_bytes(hashlib.sha256(f"l2ul-synthesis:{int(seed)}:{int(index)}".encode()).digest()[:8],
                          "little") & ((1 << 63) - 1)


def _bn_layers(model: nn.Module) -> List[nn.BatchNorm2d]:
    return [m for m in model.modules()
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None]


class _BNStatHooks:
    """Forward hooks on every ``BatchNorm2d``: after a forward pass, ``terms[i]`` is
    ``||mean - running_mean||_2 + ||var - running_var||_2`` of the batch at layer ``i``'s input."""

    def __init__(self, model: nn.Module):
        self.layers = _bn_layers(model)
        if not self.layers:
            raise ConfigError("the model has no BatchNorm2d layer with running statistics; batch-norm inversion "
                              "needs them (use an unlabeled proxy image set instead)")
        self.terms: List[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]

    def _hook(self, module: nn.BatchNorm2d, inputs, output) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(dim=1, unbiased=False)
        rm = module.running_mean.to(x.dtype)
        rv = module.running_var.to(x.dtype)
        self.terms.append(torch.linalg.vector_norm(mean - rm) + torch.linalg.vector_norm(var - rv))

    def pop(self, first_multiplier: float = 1.0) -> torch.Tensor:
        terms, self.terms = self.terms, []
        if not terms:
            raise ConfigError("no BatchNorm2d layer ran in the forward pass; batch-norm inversion needs them")
        total = terms[0] * first_multiplier
        for t in terms[1:]:
            total = total + t
        return total

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    """L2 norms of the horizontal, vertical and two diagonal neighbour differences, summed (reference code)."""
    d1 = x[:, :, :, :-1] - x[:, :, :, 1:]
    d2 = x[:, :, :-1, :] - x[:, :, 1:, :]
    d3 = x[:, :, 1:, :-1] - x[:, :, :-1, 1:]
    d4 = x[:, :, :-1, :-1] - x[:, :, 1:, 1:]
    return sum(torch.linalg.vector_norm(d) for d in (d1, d2, d3, d4))


def bn_statistics_loss(model: nn.Module, images: torch.Tensor) -> float:
    """The batch-norm statistic mismatch ``sum_l ||mu_l - running_mean_l|| + ||var_l - running_var_l||`` of
    ``images`` (one batch) on ``model`` in eval mode: the quantity :func:`invert_bn_statistics` lowers."""
    with _frozen(model), torch.no_grad():
        hooks = _BNStatHooks(model)
        try:
            model(images.to(_device_of(model)))
            return float(hooks.pop())
        finally:
            hooks.close()


def _check_settings(n, image_shape, num_classes, steps, lr, batch_size, jitter) -> Tuple[int, int, int]:
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ConfigError(f"n (images to synthesise) must be an integer >= 1, got {n!r}")
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"image_shape must be (C, H, W), got {image_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"image_shape must be three positive integers (C, H, W), got {image_shape!r}")
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 1):
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not (isinstance(steps, (int, np.integer)) and steps >= 0):
        raise ConfigError(f"steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(jitter, (int, np.integer)) and jitter >= 0):
        raise ConfigError(f"jitter must be an integer >= 0, got {jitter!r}")
    return shape  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# DeepInversion


def invert_bn_statistics(model: nn.Module, n: int, *, image_shape: Sequence[int], num_classes: int,
                         steps: int = 200, lr: float = 0.1, batch_size: int = 256, seed: int = 0,
                         bn_weight: float = 10.0, ce_weight: float = 1.0, tv_weight: float = 5e-3,
                         first_bn_multiplier: float = 1.0, jitter: int = 2, flip: bool = True,
                         init_std: float = 0.2, lr_schedule: str = "constant",
                         progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """``n`` images inverted from ``model``'s batch-norm running statistics (DeepInversion), float32
    ``[n, C, H, W]`` in ``[0, 1]`` on the CPU. Image ``i`` is synthesised toward class ``i % num_classes``.

    model: a classifier taking ``[0, 1]`` images (normalisation inside) with ``BatchNorm2d`` layers; it is run
        in eval mode with its parameters frozen, and left as it was (weights, running statistics, mode).
    steps, lr: Adam iterations per batch and learning rate (pixel units; clamped to ``[0, 1]`` after each
        step). ``lr_schedule="cosine"`` decays the rate to 0 over the steps.
    batch_size: images optimised together; the statistics are matched per batch, so batches much smaller
        than the number of classes give poor statistics. Batches are independent and seeded from
        ``(seed, batch index)``: the result is deterministic for a seed on one machine, and the first ``m``
        images of ``n`` equal an ``m``-image synthesis with the same batch size.
    bn_weight, ce_weight, tv_weight, first_bn_multiplier: loss weights (the first BN layer's term is
        multiplied by ``first_bn_multiplier``, as in the reference ImageNet code).
    jitter, flip: random roll of up to ``jitter`` pixels and random horizontal flip of the batch per step.
    init_std: initial images are ``clamp(0.5 + init_std * N(0, 1), 0, 1)``.
    progress: called as ``progress(done_steps, total_steps)`` over all batches.
    """
    shape = _check_settings(n, image_shape, num_classes, steps, lr, batch_size, jitter)
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    device = _device_of(model)
    n, batch_size = int(n), int(batch_size)
    n_batches = math.ceil(n / batch_size)
    total = n_batches * int(steps)
    out: List[torch.Tensor] = []
    done = 0
    with _frozen(model):
        hooks = _BNStatHooks(model)
        try:
            for b in range(n_batches):
                lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                gen = torch.Generator().manual_seed(_batch_seed(seed, b))
                targets = (torch.arange(lo, hi) % int(num_classes)).to(device)
                x = (0.5 + init_std * torch.randn((hi - lo,) + shape, generator=gen)).clamp_(0, 1).to(device)
                x.requires_grad_(True)
                opt = torch.optim.Adam([x], lr=lr)
                # all randomness of the batch drawn up front on the CPU: same images on every device
                shifts = (torch.randint(-int(jitter), int(jitter) + 1, (int(steps), 2), generator=gen)
                          if jitter else torch.zeros(int(steps), 2, dtype=torch.long))
                flips = (torch.rand(int(steps), generator=gen) < 0.5) if flip else torch.zeros(int(steps), dtype=torch.bool)
                for s in range(int(steps)):
                    if lr_schedule == "cosine":
                        for g in opt.param_groups:
                            g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * s / max(int(steps), 1)))
                    xj = x
                    dy, dx = int(shifts[s, 0]), int(shifts[s, 1])
                    if dy or dx:
                        xj = torch.roll(xj, shifts=(dy, dx), dims=(2, 3))
                    if bool(flips[s]):
                        xj = torch.flip(xj, dims=(3,))
                    opt.zero_grad(set_to_none=True)
                    hooks.terms = []
                    logits = model(xj)
                    loss = bn_weight * hooks.pop(first_bn_multiplier)
                    if ce_weight:
                        loss = loss + ce_weight * F.cross_entropy(logits, targets)
                    if tv_weight:
                        loss = loss + tv_weight * _total_variation(xj)
                    if not torch.isfinite(loss):
                        raise ConfigError(f"batch-norm inversion diverged (non-finite loss at step {s + 1} of "
                                          f"batch {b}); lower lr")
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(0.0, 1.0)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                out.append(x.detach().cpu())
        finally:
            hooks.close()
    return torch.cat(out).contiguous()


# ----------------------------------------------------------------------------------------------------------
# cache


@dataclass
class SynthesisResult:
    """Synthesised proxy images and where they came from.

    ``seconds`` is the synthesis wall time (of the run that produced them, also when read from the cache);
    ``in_class``: share of images the model predicts as their target class."""

    images: torch.Tensor
    targets: torch.Tensor
    seconds: float
    from_cache: bool
    path: Optional[Path]
    settings: Dict[str, Any] = field(default_factory=dict)
    in_class: float = float("nan")

    def describe(self) -> str:
        s = self.settings
        return (f"deepinversion ({len(self.images)} images, {s.get('steps')} steps, seed {s.get('seed')}, "
                f"{100 * self.in_class:.0f}% in class, {self.seconds:.0f} s"
                + (", from cache" if self.from_cache else "") + ")")


def state_dict_hash(model: nn.Module) -> str:
    """sha256 over the model's class name and every state-dict entry (name, dtype, shape, bytes)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


_DEFAULTS = dict(steps=200, lr=0.1, batch_size=256, seed=0, bn_weight=10.0, ce_weight=1.0, tv_weight=5e-3,
                 first_bn_multiplier=1.0, jitter=2, flip=True, init_std=0.2, lr_schedule="constant")


def _settings(n: int, image_shape, num_classes: int, kw: Dict[str, Any]) -> Dict[str, Any]:
    unknown = set(kw) - set(_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown synthesis setting(s) {sorted(unknown)}; valid: {sorted(_DEFAULTS)}")
    s: Dict[str, Any] = {**_DEFAULTS, **kw}
    s.update(n=int(n), image_shape=[int(v) for v in image_shape], num_classes=int(num_classes),
             algorithm="deepinversion", version=SYNTHESIS_VERSION)
    for k in ("lr", "bn_weight", "ce_weight", "tv_weight", "first_bn_multiplier", "init_std"):
        s[k] = float(s[k])
    for k in ("steps", "batch_size", "seed", "jitter"):
        s[k] = int(s[k])
    s["flip"] = bool(s["flip"])
    return s


def synthesis_cache_path(model: nn.Module, n: int, *, image_shape: Sequence[int], num_classes: int,
                         cache_dir: Optional[PathLike] = None, **kw: Any) -> Tuple[Path, str, Dict[str, Any]]:
    """``(path, key, settings)`` of the cache file :func:`cached_synthesis` uses for these arguments."""
    settings = _settings(n, image_shape, num_classes, kw)
    key = hashlib.sha256((state_dict_hash(model) + json.dumps(settings, sort_keys=True)).encode()).hexdigest()
    if cache_dir is None:
        from .data import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir).expanduser() / "synthesis" / f"deepinversion-{key[:32]}.safetensors", key, settings


def _read_cache(path: Path, key: str, n: int, shape: Sequence[int]):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            images, targets = f.get_tensor("images"), f.get_tensor("targets")
        if tuple(images.shape) != (n, *shape) or images.dtype != torch.float32 or targets.shape != (n,):
            return None
        return images, targets, float(meta.get("seconds", "nan")), float(meta.get("in_class", "nan"))
    except Exception:  # a damaged or foreign cache file is ignored and rewritten
        return None


def _in_class(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 512) -> float:
    dev = _device_of(model)
    hits = 0
    with _frozen(model), torch.no_grad():
        for s in range(0, len(images), batch_size):
            hits += int((model(images[s:s + batch_size].to(dev)).argmax(1).cpu() == targets[s:s + batch_size]).sum())
    return hits / max(len(images), 1)


def cached_synthesis(model: nn.Module, n: int, cache_dir: Optional[PathLike] = None, *,
                     image_shape: Sequence[int], num_classes: int,
                     progress: Optional[Callable[[int, int], None]] = None, **kw: Any) -> SynthesisResult:
    """:func:`invert_bn_statistics` with a file cache.

    The key hashes the model's state dict (so any change of weights or running statistics gives a new key)
    and every setting (``n``, ``image_shape``, ``num_classes`` and the keyword arguments of
    :func:`invert_bn_statistics`, defaults filled in). The file is
    ``<cache_dir or $L2UL_CACHE_DIR or ~/.cache/l2ul>/synthesis/deepinversion-<key>.safetensors``, written
    atomically; a damaged cache file is recomputed. An unwritable cache folder only costs the recomputation
    next time (``path`` is then ``None``).
    """
    path, key, settings = synthesis_cache_path(model, n, image_shape=image_shape, num_classes=num_classes,
                                               cache_dir=cache_dir, **kw)
    shape = settings["image_shape"]
    targets = torch.arange(int(n)) % int(num_classes)
    if path.is_file():
        hit = _read_cache(path, key, int(n), shape)
        if hit is not None:
            images, tgt, seconds, in_class = hit
            return SynthesisResult(images, tgt, seconds, True, path, settings, in_class)
    synth_kw = {k: settings[k] for k in _DEFAULTS}
    t0 = time.perf_counter()
    images = invert_bn_statistics(model, int(n), image_shape=shape, num_classes=int(num_classes),
                                  progress=progress, **synth_kw)
    seconds = time.perf_counter() - t0
    in_class = _in_class(model, images, targets)
    from safetensors.torch import save_file

    meta = {"key": key, "settings": json.dumps(settings, sort_keys=True), "seconds": repr(seconds),
            "in_class": repr(in_class), "format": "1"}
    written: Optional[Path] = path
    try:
        with atomic_path(path) as tmp:
            save_file({"images": images.contiguous(), "targets": targets.contiguous()}, str(tmp), metadata=meta)
    except OSError:
        written = None
    return SynthesisResult(images, targets, seconds, False, written, settings, in_class)


# the cheap alternatives and augmentations live in l2ul.proxy_augment (re-exported here)
from .proxy_augment import (  # noqa: E402,F401
    adversarial_proxy,
    augment_images,
    mix_sources,
    mixup_images,
)
