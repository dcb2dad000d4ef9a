"""Pre-training: train a classifier from scratch on a :class:`~l2ul.data.DatasetBundle`.

Unlearning starts from a trained model; ``l2ul pretrain`` (and ``l2ul demo``) make one with
:func:`pretrain` (in memory) or :func:`pretrain_to_file` (build by name, train, save atomically).

The recipes (the paper's ``cifar`` and ``utkface`` settings and a ``quick`` one for small data) are in
:mod:`l2ul.recipes` (:data:`RECIPES`, :func:`get_recipe`, :func:`describe_recipes`), re-exported here.

Determinism: training runs under ``torch.random.fork_rng`` seeded with ``seed`` (the caller's global RNG
state is restored afterwards) and shuffles with a ``torch.Generator`` seeded with ``seed``, so the same
model, data, seed and ``num_workers`` give bit-identical weights on CPU. (CUDA kernels may be
non-deterministic; with ``num_workers > 0`` augmentation draws from per-worker RNGs seeded from the shuffling
generator, so results differ from ``num_workers=0`` but are still reproducible.)

A final training batch of a single image is skipped (BatchNorm cannot normalise one value per channel).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .data import ArrayImageDataset, DatasetBundle, load_dataset, stack
from .engine import resolve_device
from .errors import ConfigError, L2ULError
from .evaluation import accuracy, predict
from .recipes import RECIPES, Recipe, describe_recipes, get_recipe  # noqa: F401
from .safety import PathLike, check_output_path, check_writable

__all__ = ["Recipe", "RECIPES", "TrainResult", "pretrain", "pretrain_to_file", "describe_recipes", "get_recipe",
           "resolve_settings"]


@dataclass
class TrainResult:
    """Outcome of :func:`pretrain`.

    ``model``: the trained model (eval mode, on the training device). ``history``: one dict per epoch with
    ``epoch``, ``train_loss``, ``train_acc`` (running, in train mode, on augmented data), ``lr`` (of the
    epoch's last step), ``seconds`` and ``val_acc`` (when the bundle has a validation split) or ``test_acc``.
    ``best_epoch``: the epoch whose weights ``model`` holds (the last one unless the recipe selects the best
    validation checkpoint). ``test_acc`` / ``val_acc``: accuracy of the returned weights. ``settings``: the
    effective hyperparameters.
    """

    model: nn.Module
    recipe: str
    epochs: int
    history: List[Dict[str, Any]]
    best_epoch: int
    seconds: float
    settings: Dict[str, Any] = field(default_factory=dict)
    test_acc: Optional[float] = None
    val_acc: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (no model)."""
        return {"recipe": self.recipe, "epochs": self.epochs, "best_epoch": self.best_epoch,
                "seconds": self.seconds, "test_acc": self.test_acc, "val_acc": self.val_acc,
                "settings": dict(self.settings), "history": [dict(h) for h in self.history]}

    def summary(self) -> str:
        parts = [f"pretrained ({self.recipe}) for {self.epochs} epochs in {self.seconds:.1f}s"]
        if self.val_acc is not None:
            parts.append(f"val acc {100 * self.val_acc:.2f}% (epoch {self.best_epoch})")
        if self.test_acc is not None:
            parts.append(f"test acc {100 * self.test_acc:.2f}%")
        return "; ".join(parts)


# ------------------------------------------------------------------------------------------------ settings

def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _float(name: str, value: Any, *, positive: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ConfigError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return v


def resolve_settings(recipe: Union[str, Recipe], bundle: Optional[DatasetBundle] = None, *,
                     epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
                     weight_decay: Optional[float] = None, grouping: Optional[str] = None) -> Dict[str, Any]:
    """The effective hyperparameters of ``recipe`` for ``bundle`` with the given overrides.

    Recipes with per-grouping settings (``utkface``) take the grouping from ``bundle.extra["grouping"]``;
    ``grouping`` is used only for a bundle that does not record one (it must agree when both exist).
    """
    r = get_recipe(recipe)
    base_lr, base_wd, used_grouping = r.lr, r.weight_decay, None
    if r.by_grouping:
        recorded = bundle.extra.get("grouping") if bundle is not None else None
        if recorded is not None and grouping is not None and str(grouping).lower() != str(recorded).lower():
            raise ConfigError(f"grouping={grouping!r} disagrees with the dataset's grouping {recorded!r}; load the "
                              f"dataset with ?grouping={grouping} instead")
        chosen = recorded if recorded is not None else grouping
        if chosen is not None:
            match = {k.lower(): k for k in r.by_grouping}.get(str(chosen).lower())
            if match is None:
                raise ConfigError(f"recipe {r.name!r} has no settings for grouping {chosen!r}; valid: "
                                  f"{', '.join(r.by_grouping)}")
            used_grouping = match
            base_lr, base_wd = r.by_grouping[match]
    return {
        "recipe": r.name,
        "optimizer": r.optimizer,
        "lr": _float("lr", lr if lr is not None else base_lr, positive=True),
        "weight_decay": _float("weight_decay", weight_decay if weight_decay is not None else base_wd,
                               positive=False),
        "momentum": r.momentum,
        "scheduler": r.scheduler,
        "epochs": _positive_int("epochs", epochs if epochs is not None else r.epochs),
        "batch_size": _positive_int("batch_size", batch_size if batch_size is not None else r.batch_size),
        "grad_clip_value": r.grad_clip_value,
        "select_best": r.select_best,
        "augment": r.augment,
        "grouping": used_grouping,
    }


def _make_optimizer(params: List[nn.Parameter], s: Dict[str, Any]) -> torch.optim.Optimizer:
    if s["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])
    if s["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=s["lr"], weight_decay=s["weight_decay"])
    raise ConfigError(f"unknown optimizer {s['optimizer']!r} in recipe {s['recipe']!r}; use 'sgd' or 'adam'")


def _make_scheduler(opt: torch.optim.Optimizer, s: Dict[str, Any], steps_per_epoch: int):
    kind = s["scheduler"]
    if kind is None:
        return None
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["epochs"])
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s["lr"], total_steps=s["epochs"] * steps_per_epoch)
    raise ConfigError(f"unknown scheduler {kind!r} in recipe {s['recipe']!r}; use None, 'cosine' or 'onecycle'")


# ------------------------------------------------------------------------------------------------ batches

def _is_array_dataset(ds: Dataset) -> bool:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return isinstance(ds, ArrayImageDataset)


class _ArrayBatches:
    """Shuffled ``(x, y)`` batches of an in-memory :class:`ArrayImageDataset` (or Subset of one), gathered with
    one indexing op per batch instead of per-item ``__getitem__`` + collate. Augmentation (if any) draws
    from torch's global RNG, as it would in a single-process ``DataLoader``."""

    def __init__(self, ds: Dataset, batch_size: int, generator: torch.Generator):
        self.ds, self.batch_size, self.generator = ds, batch_size, generator

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.ds)
        perm = torch.randperm(n, generator=self.generator)
        for s in range(0, n, self.batch_size):
            yield stack(self.ds, perm[s:s + self.batch_size].tolist())


def _steps_per_epoch(n: int, batch_size: int, max_batches: Optional[int]) -> int:
    """Optimisation steps per epoch: full batches plus a last partial batch of at least 2 images."""
    steps = n // batch_size + (1 if n % batch_size >= 2 else 0)
    return min(steps, max_batches) if max_batches is not None else steps


def _eval_loader(ds: Dataset, batch_size: int, num_workers: int, pin: bool) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin)


# ------------------------------------------------------------------------------------------------ training

def _output_classes(model: nn.Module, bundle: DatasetBundle) -> int:
    """Number of model outputs, from one forward pass on the first (un-augmented) training image; also surfaces
    an input-shape mismatch before training starts."""
    x, _ = stack(bundle.extra.get("train_eval", bundle.train), [0])
    try:
        logits = predict(model, (x, torch.zeros(1, dtype=torch.int64))).logits
    except L2ULError as e:
        raise type(e)(f"the model does not accept the images of {bundle.name} (shape "
                      f"{list(bundle.input_shape)}): {e}") from None
    return int(logits.shape[1])


def pretrain(model: nn.Module, bundle: DatasetBundle, *, recipe: Union[str, Recipe] = "quick",
             epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
             weight_decay: Optional[float] = None, seed: int = 0,
             device: Union[str, torch.device, None] = None, progress: bool = True,
             log: Optional[Callable[[str], Any]] = print, max_batches: Optional[int] = None,
             grouping: Optional[str] = None, num_workers: int = 0) -> TrainResult:
    """Train ``model`` (in place) on ``bundle.train`` with ``recipe``; returns a :class:`TrainResult`.

    ``epochs``/``batch_size``/``lr``/``weight_decay`` override the recipe's defaults (see
    :func:`resolve_settings`; ``grouping`` only for a UTKFace-style recipe on a bundle that records none).
    ``max_batches`` caps the optimisation steps per epoch (smoke tests). ``device``: as
    :func:`l2ul.resolve_device` (CUDA, then MPS, then CPU). ``progress``: a tqdm bar per epoch on stderr;
    ``log``: called with one line per epoch (None = silent). ``num_workers``: ``DataLoader`` workers for
    file-backed datasets (in-memory arrays are batched in-process). The model is left in eval mode on
    ``device``. The augmentation of the training set is whatever ``bundle`` was loaded with (the recipes'
    ``augment`` flag is applied by :func:`pretrain_to_file`). Writes no files.
    """
    t_start = time.perf_counter()
    s = resolve_settings(recipe, bundle, epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, grouping=grouping)
    if not isinstance(model, nn.Module):
        raise L2ULError(f"pretrain needs a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(bundle, DatasetBundle):
        raise L2ULError(f"pretrain needs a DatasetBundle (l2ul.data.load_dataset), got {type(bundle).__name__}")
    if max_batches is not None:
        max_batches = _positive_int("max_batches", max_batches)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    n_train = len(bundle.train)
    if n_train < 2:
        raise L2ULError(f"{bundle.name}: the training set has {n_train} image(s); pre-training needs at least 2")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise L2ULError("the model has no trainable parameters (all have requires_grad=False)")
    dev = resolve_device(device)
    # Everything that draws random numbers (shuffling, augmentation, dropout, even a DataLoader's base seed)
    # runs on a forked, seeded RNG, so the caller's RNG state is left as it was.
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        result = _train(model, bundle, s, dev, params=params, n_train=n_train, seed=seed, progress=progress,
                        log=log, max_batches=max_batches, num_workers=num_workers)
    result.seconds = time.perf_counter() - t_start
    if log:
        log(result.summary())
    return result


def _train(model: nn.Module, bundle: DatasetBundle, s: Dict[str, Any], dev: torch.device, *,
           params: List[nn.Parameter], n_train: int, seed: int, progress: bool,
           log: Optional[Callable[[str], Any]], max_batches: Optional[int], num_workers: int) -> TrainResult:
    model.to(dev)
    outputs = _output_classes(model, bundle)
    if outputs != bundle.num_classes:
        raise L2ULError(f"the model has {outputs} output classes but the dataset {bundle.name} has "
                        f"{bundle.num_classes}; build the model with num_classes={bundle.num_classes}")
    val_set, select_best, sel_name = _selection(bundle, s, log)
    bs, n_epochs = s["batch_size"], s["epochs"]
    steps = _steps_per_epoch(n_train, bs, max_batches)
    if steps < 1:
        raise L2ULError(f"no full training batch: {n_train} images with batch size {bs}; lower the batch size")
    pin = dev.type == "cuda"
    eval_bs = max(2 * bs, 64)
    sel_loader = _eval_loader(val_set if val_set is not None else bundle.test, eval_bs, num_workers, pin)
    test_loader = _eval_loader(bundle.test, eval_bs, num_workers, pin) if val_set is not None else sel_loader
    s.update(seed=seed, max_batches=max_batches, steps_per_epoch=steps, device=str(dev), n_train=n_train)
    if log:
        log(_start_line(bundle, s, dev))

    history: List[Dict[str, Any]] = []
    best_acc, best_epoch, best_state = -1.0, n_epochs, None
    gen = torch.Generator().manual_seed(seed)
    if num_workers == 0 and _is_array_dataset(bundle.train):
        batches: Any = _ArrayBatches(bundle.train, bs, gen)
    else:
        batches = DataLoader(bundle.train, batch_size=bs, shuffle=True, generator=gen, num_workers=num_workers,
                             pin_memory=pin, persistent_workers=num_workers > 0)
    opt = _make_optimizer(params, s)
    sched = _make_scheduler(opt, s, steps)
    for epoch in range(1, n_epochs + 1):
        t0 = time.perf_counter()
        bar_desc = f"epoch {epoch}/{n_epochs}" if progress else None
        train_loss, train_acc, last_lr = _train_epoch(model, batches, opt, sched, s, params, dev, pin=pin,
                                                      steps=steps, bar_desc=bar_desc)
        finite = all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())
        if not math.isfinite(train_loss) or not finite:
            raise L2ULError(f"training diverged in epoch {epoch}: the loss became {train_loss}"
                            + ("" if finite else " and the weights hold NaN or inf")
                            + f"; lower the learning rate (lr={s['lr']:g}); nothing was written")
        if s["scheduler"] == "cosine":
            sched.step()
        acc = accuracy(model, sel_loader)
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                  f"{sel_name}_acc": acc, "lr": last_lr, "seconds": time.perf_counter() - t0}
        history.append(record)
        improved = select_best and acc > best_acc
        if improved:
            best_acc, best_epoch = acc, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if log:
            log(_epoch_line(record, n_epochs, sel_name, improved))

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if val_set is not None:
        val_acc = best_acc if select_best else history[-1]["val_acc"]
        test_acc = accuracy(model, test_loader)
    else:
        val_acc, test_acc = None, history[-1]["test_acc"]
    return TrainResult(model=model, recipe=s["recipe"], epochs=n_epochs, history=history,
                       best_epoch=best_epoch if select_best else n_epochs,
                       seconds=0.0, settings=s, test_acc=test_acc, val_acc=val_acc)


def _selection(bundle: DatasetBundle, s: Dict[str, Any],
               log: Optional[Callable[[str], Any]]) -> Tuple[Optional[Dataset], bool, str]:
    """The validation split (None when the bundle has none or an empty one), whether the best-validation
    checkpoint is kept, and the name (``val`` or ``test``) of the split each epoch is evaluated on."""
    val_set = bundle.extra.get("val")
    if val_set is not None and len(val_set) == 0:
        val_set = None
    select_best = bool(s["select_best"]) and val_set is not None
    if s["select_best"] and val_set is None and log:
        log(f"note: recipe {s['recipe']} keeps the best-validation checkpoint, but {bundle.name} has no "
            f"validation split; keeping the last epoch")
    return val_set, select_best, "val" if val_set is not None else "test"


def _train_epoch(model: nn.Module, batches: Any, opt: torch.optim.Optimizer, sched: Any, s: Dict[str, Any],
                 params: List[nn.Parameter], dev: torch.device, *, pin: bool, steps: int,
                 bar_desc: Optional[str]) -> Tuple[float, float, float]:
    """One epoch of at most ``steps`` optimisation steps (a progress bar titled ``bar_desc`` unless None);
    returns the running training loss and accuracy and the learning rate of the last step."""
    model.train()
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.int64)
    seen, done, last_lr = 0, 0, opt.param_groups[0]["lr"]
    clip = s["grad_clip_value"]
    bar = _progress_bar(bar_desc is not None, steps, bar_desc)
    try:
        for x, y in batches:
            if len(y) < 2:
                continue  # a trailing single image: BatchNorm cannot train on it
            x = x.to(dev, non_blocking=pin)
            y = torch.as_tensor(y).to(dev, non_blocking=pin)
            opt.zero_grad(set_to_none=True)
            out = model(x)
            if not isinstance(out, torch.Tensor):
                out = out.logits
            loss = F.cross_entropy(out, y)
            loss.backward()
            if clip:
                nn.utils.clip_grad_value_(params, clip)
            last_lr = opt.param_groups[0]["lr"]
            opt.step()
            if s["scheduler"] == "onecycle":
                sched.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(y)
            done += 1
            if bar is not None:
                bar.update(1)
                if done % 10 == 0 or done == steps:
                    bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}")
            if done >= steps:
                break
    finally:
        if bar is not None:
            bar.close()
    return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1), last_lr


def _start_line(bundle: DatasetBundle, s: Dict[str, Any], dev: torch.device) -> str:
    """The log line that opens a training run: data, recipe, effective settings, device."""
    return (f"pretraining on {bundle.name} ({s['n_train']} images, {bundle.num_classes} classes) with recipe "
            f"{s['recipe']}: {s['optimizer']} lr {s['lr']:g} wd {s['weight_decay']:g}"
            + (f" momentum {s['momentum']:g}" if s["optimizer"] == "sgd" else "")
            + (f", {s['scheduler']} schedule" if s["scheduler"] else "")
            + (f", grad clip {s['grad_clip_value']:g}" if s["grad_clip_value"] else "")
            + (f", grouping {s['grouping']}" if s["grouping"] else "")
            + f", {s['epochs']} epochs x {s['steps_per_epoch']} batches of {s['batch_size']}, device {dev}")


def _epoch_line(record: Dict[str, Any], n_epochs: int, sel_name: str, improved: bool) -> str:
    """The log line of one epoch (``record``: its entry of :attr:`TrainResult.history`)."""
    return (f"epoch {record['epoch']}/{n_epochs}: loss {record['train_loss']:.4f}, train acc "
            f"{100 * record['train_acc']:.2f}%, {sel_name} acc {100 * record[f'{sel_name}_acc']:.2f}%, "
            f"lr {record['lr']:.3g}, {record['seconds']:.1f}s" + (" (best)" if improved else ""))


def _progress_bar(enabled: bool, total: int, desc: Optional[str]):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, unit="batch")


# ------------------------------------------------------------------------------------------------ to file
def pretrain_to_file(arch: str, dataset_spec: str, out: PathLike, *, recipe: Union[str, Recipe] = "quick",
                     epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
                     weight_decay: Optional[float] = None, seed: int = 0,
                     device: Union[str, torch.device, None] = None, progress: bool = True,
                     log: Optional[Callable[[str], Any]] = print, max_batches: Optional[int] = None,
                     overwrite: bool = False, data_dir: Optional[PathLike] = None, download: bool = False,
                     model_kwargs: Optional[Dict[str, Any]] = None, grouping: Optional[str] = None,
                     num_workers: int = 0, pretrained: bool = False) -> TrainResult:
    """Build ``arch`` for ``dataset_spec``, :func:`pretrain` it and save it to ``out`` with
    :func:`l2ul.models.save_model` (atomic: an interrupted run leaves no file).

    The output path and the settings are checked *before* the data is loaded and training starts. The dataset
    is loaded with the recipe's ``augment`` flag. The model gets ``num_classes`` and ``class_names`` from the
    dataset, and ``in_channels`` from its images when the architecture has that option and ``model_kwargs``
    does not set it; ``pretrained`` starts from the architecture's published weights (fine-tunes them). The model
    is initialised under ``torch.manual_seed(seed)`` (without disturbing the
    caller's RNG state), so the same arguments give the same file on CPU. Returns the :class:`TrainResult`
    (its model stays on the training device).
    """
    from .models import create_model, model_info, save_model
    from .pipeline import run_inputs

    out = check_output_path(out, overwrite=overwrite, inputs=tuple(run_inputs(dataset=dataset_spec)))
    check_writable(out)
    r = get_recipe(recipe)
    resolve_settings(r, None, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay)
    kwargs = dict(model_kwargs or {})
    info = model_info(arch)  # unknown architecture: fails here, before loading data
    bundle = load_dataset(dataset_spec, data_dir=data_dir, download=download, augment=r.augment)
    if "in_channels" in info["options"] and "in_channels" not in kwargs:
        kwargs["in_channels"] = int(bundle.input_shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(arch, bundle.num_classes, class_names=bundle.class_names, pretrained=pretrained, **kwargs)
    result = pretrain(model, bundle, recipe=r, epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, device=device, progress=progress, log=log,
                      max_batches=max_batches, grouping=grouping, num_workers=num_workers)
    home = next(model.parameters()).device
    try:
        save_model(model.to("cpu"), out, overwrite=overwrite)
    finally:
        model.to(home)
    if log:
        log(f"saved {out}")
    return result
