"""The unlearning engine: :func:`unlearn` runs one deletion request on a classifier.

Phases, each timed: (1) adversarial examples of the forget set on the original model (``adv``, ``l2ul``),
(2) MAS importance on the forget set (``l2ul``), (3) optimisation. After every optimisation step the whole
forget set is checked in eval mode; the run stops as soon as the task is done (``misclassify``: no forget
instance predicted as its label; ``relabel``: every instance predicted as its target) or when
``max_steps`` is spent. A non-finite loss or output stops the run as ``diverged``. Nothing reports success
it did not reach: see :attr:`UnlearnResult.status`.
"""
from __future__ import annotations

import copy
import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import AdversarialSet, frozen_eval, generate_adversarial_set
from .config import TASKS, UnlearnConfig
from .errors import ConfigError, RequestError
from .importance import ImportanceWeights, mas_importance, normalize_importance
from .methods import MethodContext, StepBatch, UnlearningMethod, get_method


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device`` if given, else CUDA if available, else Apple MPS if available, else CPU."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {device!r} requested but MPS is not available; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class UnlearnResult:
    """Outcome of one request. ``status`` is ``"converged"`` (task done), ``"budget_exhausted"`` (step budget
    spent first) or ``"diverged"`` (non-finite loss/outputs: do not use ``model``)."""

    model: nn.Module
    method: str
    task: str
    status: str
    steps: int
    timings: Dict[str, float]
    config: UnlearnConfig
    labels: List[int]
    targets: Optional[List[int]]
    preds_before: List[int]
    preds_after: List[int]
    forget_history: List[float] = field(default_factory=list)
    message: str = ""
    device: str = "cpu"
    adversarial: Optional[AdversarialSet] = field(default=None, repr=False)
    importance: Optional[Dict[str, torch.Tensor]] = field(default=None, repr=False)
    adversarial_success: Optional[float] = None
    #: ``bn="train"`` only (else ``None``): the task score (forget accuracy for ``misclassify``, target
    #: accuracy for ``relabel``) of the unlearned weights evaluated with the *original* model's batch-norm
    #: running statistics. If the request no longer holds with them, the forgetting lives in the running
    #: statistics that the training-mode passes drifted, not in the weights (see README, Known limitations).
    score_with_original_bn_stats: Optional[float] = None

    @property
    def holds_with_original_bn_stats(self) -> Optional[bool]:
        """Whether the request also holds with the original running statistics (``None`` when not measured)."""
        s = self.score_with_original_bn_stats
        if s is None:
            return None
        return s == 0.0 if self.task == "misclassify" else s == 1.0

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    @property
    def forget_accuracy(self) -> float:
        """Share of forget instances still predicted as their own label, after unlearning."""
        return sum(p == y for p, y in zip(self.preds_after, self.labels)) / max(len(self.labels), 1)

    @property
    def target_accuracy(self) -> Optional[float]:
        """``relabel`` only: share of forget instances predicted as their target."""
        if self.targets is None:
            return None
        return sum(p == t for p, t in zip(self.preds_after, self.targets)) / max(len(self.targets), 1)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (no tensors)."""
        return {
            "method": self.method, "task": self.task, "status": self.status, "converged": self.converged,
            "steps": self.steps, "message": self.message, "device": self.device,
            "timings_s": dict(self.timings), "config": self.config.to_dict(),
            "labels": self.labels, "targets": self.targets,
            "preds_before": self.preds_before, "preds_after": self.preds_after,
            "forget_accuracy": self.forget_accuracy, "target_accuracy": self.target_accuracy,
            "adversarial_examples": len(self.adversarial) if self.adversarial is not None else 0,
            "adversarial_success": self.adversarial_success,
            "score_with_original_bn_stats": self.score_with_original_bn_stats,
            "holds_with_original_bn_stats": self.holds_with_original_bn_stats,
            "forget_history": self.forget_history,
        }

    def summary(self) -> str:
        t = self.timings
        head = {"converged": "converged", "budget_exhausted": "DID NOT CONVERGE",
                "diverged": "DIVERGED"}[self.status]
        if self.status == "diverged":
            return f"{self.method}/{self.task}: DIVERGED after {self.steps} steps ({self.message})"
        warn = ""
        if self.converged and self.holds_with_original_bn_stats is False:
            n = len(self.labels)
            bad = (round(self.score_with_original_bn_stats * n) if self.task == "misclassify"
                   else round((1 - self.score_with_original_bn_stats) * n))
            what = ("be predicted as their label again" if self.task == "misclassify" else "miss their target")
            warn = (f"\nWARNING: with the original batch-norm running statistics, {bad} of {n} forget instances "
                    f"would {what}: this forgetting lives in the drifted running statistics, and recalibrating "
                    "batch norm on clean data would undo it (README, Known limitations)")
        return (f"{self.method}/{self.task}: {head} after {self.steps} steps; forget accuracy "
                f"{100 * self.forget_accuracy:.1f}%"
                + (f", on target {100 * self.target_accuracy:.1f}%" if self.targets is not None else "")
                + f"; time adversarial {t.get('adversarial', 0):.1f}s, importance {t.get('importance', 0):.1f}s, "
                  f"optimisation {t.get('optimization', 0):.1f}s" + warn)


# --------------------------------------------------------------------------------------------------------
# helpers

def _as_tensors(images, labels, name: str) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor):
        raise RequestError(f"{name} images must be a torch.Tensor of shape [k, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise RequestError(f"{name} images must have shape [k, C, H, W], got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise RequestError(f"the {name} set is empty; give at least one instance to forget")
    if not images.is_floating_point():
        raise RequestError(f"{name} images must be float in [0, 1] (got {images.dtype}); divide uint8 by 255")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise RequestError(f"{name} images must lie in [0, 1] (got [{lo:.3g}, {hi:.3g}]); l2ul models "
                           "normalise inside the model, so pass unnormalised pixels")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise RequestError(f"{name} labels must be a 1-D sequence with one label per image "
                           f"({images.shape[0]}), got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise RequestError(f"{name} labels must be integers")
    return images.float(), labels.long()


def _cycle_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``, reshuffled every pass, forever."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            yield perm[s:s + batch_size]


def _cycle_loader(loader) -> Iterator:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise RequestError("the retain data is empty")


def _make_retain_iter(retain, batch_size: int, generator: torch.Generator) -> Iterator:
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(retain, (tuple, list)) and len(retain) == 2 and isinstance(retain[0], torch.Tensor):
        retain = TensorDataset(retain[0], torch.as_tensor(retain[1]))
    if isinstance(retain, Dataset):
        if len(retain) == 0:
            raise RequestError("the retain data is empty")
        retain = DataLoader(retain, batch_size=batch_size, shuffle=True, generator=generator, drop_last=False)
    if not isinstance(retain, DataLoader):
        raise RequestError("retain must be a Dataset, a DataLoader or a tuple (images, labels)")
    return _cycle_loader(retain)


#: Revision of the optimisation loop's behaviour. Benchmarks hash it into their settings so that results of
#: different revisions are never mixed in one table or resumed into each other.
#: 1: train-mode BN forwarded the forget batch first. 2: the auxiliary batch first, as the original code.
ENGINE_REVISION = 2


def _bn_forward(bn_mode: str):
    """Forward of the forget and auxiliary batches. Frozen BN: one pass over the concatenation (identical
    to two passes in eval mode, and faster). Train-mode BN: two separate passes, as the original code does,
    so each batch is normalised with its own statistics, and in the original's order: auxiliary batch
    first, forget batch last. The order matters because each pass also updates the running statistics the
    evaluated model uses; on the parity forget set the forget-first order cost adv 1.7 and l2ul 2.0 points
    of D_r (BENCHMARKS.md, section 1)."""

    def forward(model, xf, xa):
        if xa is None:
            return model(xf), None
        if bn_mode == "freeze":
            out = model(torch.cat([xf, xa]))
            return out[: xf.shape[0]], out[xf.shape[0]:]
        logits_a = model(xa)
        return model(xf), logits_a

    return forward


def _running_stats(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Copies of every batch-norm running mean and variance (empty for a model without them)."""
    return {n: b.detach().clone() for n, b in model.named_buffers()
            if n.endswith(("running_mean", "running_var"))}


def _load_running_stats(model: nn.Module, stats: Dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for n, t in stats.items():
            buffers[n].copy_(t)


def _set_train_mode(model: nn.Module, bn_mode: str) -> None:
    """Eval mode everywhere for ``freeze`` (BN uses running stats and never updates them; dropout off);
    train mode for ``train`` (the original code's behaviour)."""
    model.train(bn_mode == "train")


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def make_adversarial_set(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                         config: UnlearnConfig, *, generator: Optional[torch.Generator] = None,
                         progress: bool = False) -> AdversarialSet:
    """The adversarial set :func:`unlearn` generates for ``config`` (targets, PGD settings, batch size), timed
    (``.seconds``). With ``generator=None`` it is seeded with ``config.seed`` exactly as :func:`unlearn`
    seeds it, so passing the result as ``adversarial=`` reproduces the run that would generate its own."""
    gen = generator if generator is not None else torch.Generator().manual_seed(config.seed)
    bar = _progress_bar(progress, images.shape[0] * config.adv_per_instance, "adversarial examples")
    t0 = time.perf_counter()
    adv = generate_adversarial_set(
        model, images, labels, num_classes, per_instance=config.adv_per_instance, eps=config.pgd_eps,
        alpha=config.pgd_alpha, steps=config.pgd_steps, batch_size=config.pgd_batch_size, generator=gen,
        progress=(lambda n: bar.update(n - bar.n)) if bar else None)
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    adv.seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    return adv


# --------------------------------------------------------------------------------------------------------

def unlearn(model: nn.Module, forget_images: torch.Tensor, forget_labels, *, method: Union[str, UnlearningMethod] = "l2ul",
            task: str = "misclassify", targets=None, config: Optional[UnlearnConfig] = None, retain=None,
            inplace: bool = False, progress: bool = False, adversarial: Optional[AdversarialSet] = None,
            importance: Optional[Dict[str, torch.Tensor]] = None,
            callback: Optional[Callable[[int, float], None]] = None) -> UnlearnResult:
    """Make ``model`` forget the instances ``forget_images`` (float [k, C, H, W] in [0, 1]) with labels
    ``forget_labels``.

    Parameters
    ----------
    method: ``"neggrad"``, ``"adv"``, ``"l2ul"`` (default) or ``"oracle"`` (see :func:`l2ul.list_methods`).
    task: ``"misclassify"`` (each instance leaves its label) or ``"relabel"`` (each instance is predicted as
        its entry in ``targets``).
    config: :class:`UnlearnConfig`; default is the paper's CIFAR-10 recipe.
    retain: remaining training data (Dataset, DataLoader or ``(images, labels)``), required by ``oracle``
        and refused by the others, which use only the forget set.
    inplace: update ``model`` itself; by default a deep copy is unlearned and ``model`` is left untouched.
    adversarial, importance: precomputed ingredients from an earlier result of the *same* original model and
        forget set (``result.adversarial``, ``result.importance``), e.g. to compare ``adv`` and ``l2ul``
        on identical adversarial examples; their generation time is carried over into ``timings``.
    callback: called as ``callback(step, forget_score)`` after every step.

    Returns an :class:`UnlearnResult`; ``result.model`` is the unlearned model (in eval mode).
    """
    cfg = (config or UnlearnConfig()).validate()
    m = get_method(method)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    x_f, y_f = _as_tensors(forget_images, forget_labels, "forget")
    if m.uses_retain and retain is None:
        raise ConfigError(f"method {m.name!r} needs the remaining training data: pass retain=(images, labels) "
                          "or a Dataset (the other methods use only the forget set)")
    if not m.uses_retain and retain is not None:
        raise ConfigError(f"method {m.name!r} uses only the forget set; do not pass retain data")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    work = model if inplace else copy.deepcopy(model)
    work.to(device)
    x_f, y_f = x_f.to(device), y_f.to(device)

    with frozen_eval(work), torch.no_grad():
        logits0 = work(x_f)
    num_classes = logits0.shape[1]
    if int(y_f.min()) < 0 or int(y_f.max()) >= num_classes:
        raise RequestError(f"forget labels must lie in [0, {num_classes - 1}] for this {num_classes}-class model")
    preds_before = logits0.argmax(1)

    t_f = None
    if task == "relabel":
        if targets is None:
            raise RequestError("task 'relabel' needs targets: one target label per forget instance")
        t_f = torch.as_tensor(targets).long().to(device)
        if t_f.shape != y_f.shape:
            raise RequestError(f"got {t_f.numel()} relabel targets for {y_f.numel()} forget instances")
        if int(t_f.min()) < 0 or int(t_f.max()) >= num_classes:
            raise RequestError(f"relabel targets must lie in [0, {num_classes - 1}]")
        same = (t_f == y_f).nonzero().flatten().tolist()
        if same:
            raise RequestError(f"relabel target equals the current label for forget position(s) {same}; "
                               "a target must differ from the instance's label")
    elif targets is not None:
        raise RequestError("targets are only used with task='relabel'")

    k = x_f.shape[0]
    timings = {"adversarial": 0.0, "importance": 0.0, "optimization": 0.0}

    # Phase 1: adversarial examples on the original model.
    adv_set = None
    if m.uses_adversarial:
        if adversarial is not None:
            adv_set = adversarial
            if int(adv_set.source.max()) >= k:
                raise RequestError("the precomputed adversarial set does not belong to this forget set")
            adv_set = AdversarialSet(adv_set.images.to(device), adv_set.labels.to(device),
                                     adv_set.source.to(device), adv_set.seconds)
        else:
            adv_set = make_adversarial_set(work, x_f, y_f, num_classes, cfg, generator=gen, progress=progress)
        timings["adversarial"] = adv_set.seconds
    adv_success = adv_set.success_rate(work, cfg.eval_batch_size) if adv_set is not None else None

    # Phase 2: importance on the original model.
    ctx = MethodContext(task=task, config=cfg)
    if m.uses_importance:
        if importance is not None:
            weights = ImportanceWeights({n: w.to(device) for n, w in importance.items()})
            weights.seconds = float(getattr(importance, "seconds", 0.0))
        else:
            t0 = time.perf_counter()
            weights = normalize_importance(mas_importance(work, x_f))
            weights.seconds = time.perf_counter() - t0
        timings["importance"] = weights.seconds
        ctx.importance = weights
        ctx.anchor = {n: p.detach().clone() for n, p in work.named_parameters() if n in weights}

    # Phase 3: optimisation.
    y_forget_term = t_f if task == "relabel" else y_f
    params = [p for p in work.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    forward = _bn_forward(cfg.bn)
    forget_batches = _cycle_batches(k, cfg.forget_batch_size, gen)
    if adv_set is not None:
        aux_batches = ((adv_set.images[i], adv_set.labels[i])
                       for i in _cycle_batches(len(adv_set), cfg.adv_batch_size, gen))
    elif m.uses_retain:
        aux_batches = ((xb.to(device), torch.as_tensor(yb).long().to(device))
                       for xb, yb in _make_retain_iter(retain, cfg.retain_batch_size, gen))
    else:
        aux_batches = itertools.repeat((None, None))

    def check() -> Tuple[bool, float, bool, torch.Tensor]:
        with torch.no_grad():
            was = work.training
            work.eval()
            logits = work(x_f)
            work.train(was)
        finite = bool(torch.isfinite(logits).all())
        preds = logits.argmax(1)
        if task == "misclassify":
            score = float((preds == y_f).float().mean())       # forget accuracy: 0 is done
            done = score == 0.0
        else:
            score = float((preds == t_f).float().mean())       # target accuracy: 1 is done
            done = score == 1.0
        return done, score, finite, preds

    bn_stats = _running_stats(work) if cfg.bn == "train" else {}
    history: List[float] = []
    done, score, finite, preds = check()
    status, message, steps = ("converged", "the request already holds for the original model", 0) if done else (None, "", 0)
    bar = _progress_bar(progress and not done, cfg.max_steps, f"unlearning ({m.name})")
    t0 = time.perf_counter()
    while status is None:
        if steps >= cfg.max_steps:
            status = "budget_exhausted"
            message = (f"step budget ({cfg.max_steps}) spent before the task was done: "
                       + (f"{round(score * k)} of {k} forget instances still predicted as their label"
                          if task == "misclassify" else f"{round((1 - score) * k)} of {k} not yet on their target"))
            break
        _set_train_mode(work, cfg.bn)
        idx = next(forget_batches).to(device)
        xa, ya = next(aux_batches)
        batch = StepBatch(x_f[idx], y_forget_term[idx], xa, ya)
        opt.zero_grad(set_to_none=True)
        loss = m.loss(work, batch, ctx, forward)
        if not torch.isfinite(loss):
            status, message = "diverged", f"non-finite loss ({float(loss)}) at step {steps + 1}; the model is unusable"
            break
        loss.backward()
        opt.step()
        steps += 1
        done, score, finite, preds = check()
        history.append(score)
        if callback is not None:
            callback(steps, score)
        if bar:
            bar.update(1)
            bar.set_postfix(forget=f"{score:.3f}")
        if not finite:
            status, message = "diverged", f"non-finite model outputs after step {steps}; the model is unusable"
        elif done:
            status = "converged"
            message = (f"no forget instance is predicted as its label after {steps} steps" if task == "misclassify"
                       else f"every forget instance is predicted as its target after {steps} steps")
    timings["optimization"] = time.perf_counter() - t0
    if bar:
        bar.close()
    work.eval()
    score_original_bn = None
    if status != "diverged":
        preds = check()[3]
        if bn_stats:
            current = _running_stats(work)
            _load_running_stats(work, bn_stats)
            score_original_bn = check()[1]
            _load_running_stats(work, current)

    return UnlearnResult(
        model=work, method=m.name, task=task, status=status, steps=steps, timings=timings, config=cfg,
        labels=y_f.tolist(), targets=t_f.tolist() if t_f is not None else None,
        preds_before=preds_before.tolist(), preds_after=preds.tolist(), forget_history=history,
        message=message, device=str(device), adversarial=adv_set, importance=ctx.importance,
        adversarial_success=adv_success, score_with_original_bn_stats=score_original_bn)
