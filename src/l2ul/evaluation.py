"""Metrics for instance-wise unlearning: accuracy, predictions, MIA efficacy, loss-AUC MIA, agreement.

Notation: D_f is the forget set (the deletion request), D_r the retain set (training data minus D_f) and
D_test held-out data the model never saw. Every metric documents its *direction* and the value that a
model never trained on D_f (the "retrain oracle") would be expected to give, since that is the reference an
unlearned model is judged against.

The expensive part of evaluation is running models over data; it is done once per model and split by
:func:`predict`, and every metric is a pure function of the resulting :class:`Predictions`. Benchmarks that
evaluate many unlearned models of one original evaluate the original once with :func:`evaluate_model` and
pass the result to :func:`evaluate_unlearning`.

The membership-inference attacks (:func:`mia_efficacy`, :func:`loss_auc`, :class:`MIAResult`) live in
:mod:`l2ul.privacy` and are re-exported here; what each metric key means is in :mod:`l2ul.metrics`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .errors import DataError, L2ULError
from .privacy import MIA_MIN_SIGNAL_Z, MIAResult, _make_attack, loss_auc, mia_efficacy, mia_signal_z  # noqa: F401

__all__ = [
    "Predictions",
    "MIAResult",
    "ModelEvaluation",
    "as_loader",
    "predict",
    "predict_splits",
    "accuracy",
    "accuracy_from_predictions",
    "mia_efficacy",
    "mia_signal_z",
    "MIA_MIN_SIGNAL_Z",
    "loss_auc",
    "agreement",
    "per_instance",
    "split_metrics",
    "evaluate_model",
    "evaluate_unlearning",
    "peak_memory",
]

SPLITS = ("forget", "retain", "test")

#: seed of the fixed random D_r evaluation subset (``l2ul unlearn``, ``evaluate`` and ``bench``); independent of
#: the request's seed, so every method and seed is measured on the same remaining instances
RETAIN_EVAL_SEED = 12345

DataLike = Union[Dataset, DataLoader, Sequence[torch.Tensor]]


# --------------------------------------------------------------------------------------------- predictions
@dataclass(frozen=True, eq=False)
class Predictions:
    """A model's outputs on one split: ``logits`` (float32, CPU, ``[N, C]``) and ``labels`` (int64, CPU, ``[N]``).

    Derived quantities are computed on first access and cached.
    """

    logits: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        logits = torch.as_tensor(self.logits).detach().to("cpu", torch.float32)
        labels = torch.as_tensor(self.labels).detach().to("cpu", torch.int64)
        if logits.dim() != 2:
            raise DataError(f"logits must have shape [N, num_classes], got {tuple(logits.shape)}; "
                            "the model must return one row of class scores per image")
        if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
            raise DataError(f"labels must have shape [{logits.shape[0]}] to match the logits, got "
                            f"{tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
            raise DataError(f"labels must lie in [0, {logits.shape[1] - 1}] for a model with {logits.shape[1]} "
                            f"outputs, got labels in [{int(labels.min())}, {int(labels.max())}]; check that the "
                            "dataset matches the model")
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    @cached_property
    def preds(self) -> torch.Tensor:
        """Predicted class (argmax of the logits), int64 ``[N]``."""
        return self.logits.argmax(dim=1) if len(self) else torch.empty(0, dtype=torch.int64)

    @cached_property
    def probs(self) -> torch.Tensor:
        """Softmax probabilities, float32 ``[N, C]``."""
        return torch.softmax(self.logits, dim=1)

    @cached_property
    def true_class_confidence(self) -> torch.Tensor:
        """Probability the model gives to the true label, float32 ``[N]`` (the MIA feature)."""
        return self.probs.gather(1, self.labels[:, None]).squeeze(1)

    @cached_property
    def pred_confidence(self) -> torch.Tensor:
        """Probability of the predicted class, float32 ``[N]``."""
        return self.probs.max(dim=1).values if len(self) else torch.empty(0)

    @cached_property
    def losses(self) -> torch.Tensor:
        """Per-sample cross-entropy with the true label, float32 ``[N]``."""
        if len(self) == 0:
            return torch.empty(0)
        return F.cross_entropy(self.logits, self.labels, reduction="none")

    def subset(self, index: Union[Sequence[int], torch.Tensor, np.ndarray]) -> "Predictions":
        """The predictions of the samples at ``index`` (positions in this split)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        return Predictions(self.logits[idx], self.labels[idx])


def as_loader(data: DataLike, batch_size: int = 1024) -> DataLoader:
    """Turn ``data`` into a non-shuffling :class:`DataLoader` yielding ``(images, labels)`` batches.

    ``data`` may be a Dataset, a DataLoader (returned unchanged; its own batch size and order are used) or a
    tuple/list ``(x, y)`` of tensors with equal first dimension.
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise DataError("data given as a tuple must be (images, labels): two tensors; "
                            f"got a {type(data).__name__} of {len(data)} element(s)")
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise DataError(f"images and labels differ in length ({x.shape[0]} vs {y.shape[0]}); "
                            "give one label per image")
        data = TensorDataset(x, y.long())
    if not isinstance(data, Dataset):
        raise DataError(f"cannot evaluate on a {type(data).__name__}; give a torch Dataset, a DataLoader "
                        "or a tuple (images, labels) of tensors")
    if batch_size < 1:
        raise L2ULError(f"batch_size must be a positive integer, got {batch_size}")
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)  # e.g. a Hugging Face ModelOutput
    if isinstance(logits, torch.Tensor):
        return logits
    raise DataError(f"the model returned a {type(out).__name__}; models must return a logits tensor")


def predict(model: nn.Module, data: DataLike, *, batch_size: Optional[int] = None,
            device: Union[str, torch.device, None] = None, progress: Optional[str] = None) -> Predictions:
    """Run ``model`` over ``data`` and return its :class:`Predictions`.

    The model runs in eval mode under ``torch.inference_mode``; the train/eval flag of every submodule is
    restored afterwards. It runs on the device of its parameters; if ``device`` names another device the model
    is moved there for the call and moved back afterwards. Images are expected as float NCHW in [0, 1].
    ``progress``: a description to show a progress bar (images done) under, or ``None`` for none.
    ``batch_size``: ``None`` chooses by device (:func:`l2ul.config.default_eval_batch`: 64 on the CPU, 1024
    on an accelerator); a DataLoader keeps its own.
    """
    from ._progress import progress_bar
    from .config import default_eval_batch

    home = _model_device(model)
    dev = torch.device(device) if device is not None else home
    loader = as_loader(data, default_eval_batch(dev) if batch_size is None else batch_size)
    bar = progress_bar(progress is not None, _n_images(loader), progress or "")
    modes = [(m, m.training) for m in model.modules()]
    moved = dev != home
    logits_parts: List[torch.Tensor] = []
    label_parts: List[torch.Tensor] = []
    try:
        if moved:
            model.to(dev)
        model.eval()
        with torch.inference_mode():
            for batch in loader:
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise DataError("each batch must be (images, labels); check the dataset's __getitem__")
                x, y = batch[0], batch[1]
                if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
                    raise DataError("images must be float tensors in [0, 1] (NCHW); got "
                                    f"{getattr(x, 'dtype', type(x).__name__)}")
                out = _logits_of(model(x.to(dev)))
                logits_parts.append(out.detach().float().cpu())
                label_parts.append(torch.as_tensor(y).long().cpu())
                if bar is not None:
                    bar.update(int(x.shape[0]))
    finally:
        if bar is not None:
            bar.close()
        if moved:
            model.to(home)
        for m, training in modes:
            m.training = training
    if not logits_parts:
        return Predictions(torch.empty(0, 0), torch.empty(0, dtype=torch.int64))
    # torch.cat outside inference mode returns ordinary tensors usable anywhere later.
    return Predictions(torch.cat(logits_parts).clone(), torch.cat(label_parts).clone())


def predict_splits(model: nn.Module, *, forget: DataLike, retain: DataLike, test: DataLike,
                   batch_size: Optional[int] = None, device: Union[str, torch.device, None] = None,
                   progress: bool = False) -> Dict[str, Predictions]:
    """:func:`predict` on each split; returns ``{"forget": ..., "retain": ..., "test": ...}``."""
    return {name: predict(model, d, batch_size=batch_size, device=device,
                          progress=f"evaluating on {label}" if progress else None)
            for name, label, d in (("forget", "D_f", forget), ("retain", "D_r", retain), ("test", "D_test", test))}


def _n_images(loader: DataLoader) -> Optional[int]:
    try:
        return len(loader.dataset)
    except TypeError:
        return None


# ------------------------------------------------------------------------------------------------ metrics
def accuracy_from_predictions(p: Predictions) -> float:
    """Share of samples whose predicted class equals the label, in [0, 1].

    Direction: on D_f, lower = more forgotten (misclassify requests); on D_r and D_test higher = better
    preserved. A model never trained on D_f is expected to score about its D_test accuracy on D_f.
    """
    if len(p) == 0:
        raise DataError("cannot compute accuracy on an empty split; give at least one sample")
    return float((p.preds == p.labels).float().mean())


def accuracy(model: nn.Module, data: DataLike, *, batch_size: Optional[int] = None,
             device: Union[str, torch.device, None] = None) -> float:
    """Top-1 accuracy of ``model`` on ``data``, in [0, 1] (see :func:`accuracy_from_predictions`)."""
    return accuracy_from_predictions(predict(model, data, batch_size=batch_size, device=device))


def agreement(a: Predictions, b: Predictions) -> float:
    """Share of samples on which two models predict the same class, in [0, 1].

    Used as agreement of the unlearned model with the original on D_test: higher = less collateral change.
    A model never trained on D_f (retrained from scratch) typically agrees with the original on roughly its
    test accuracy's worth of samples, not on all of them.
    """
    if len(a) != len(b):
        raise DataError(f"cannot compare predictions on {len(a)} and {len(b)} samples; use the same split")
    if len(a) == 0:
        raise DataError("cannot compute agreement on an empty split")
    return float((a.preds == b.preds).float().mean())


def per_instance(before: Predictions, after: Predictions, ids: Optional[Sequence[Any]] = None,
                 targets: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
    """One dict per D_f sample: what the request asked for and what happened.

    Keys: ``id``, ``label``, ``target`` (relabel target or None), ``pred_before``, ``pred_after``,
    ``confidence_before`` / ``confidence_after`` (probability of the predicted class), ``forgotten``.
    ``forgotten`` is ``pred_after != label`` for misclassify requests (``targets`` is None) and
    ``pred_after == target`` for relabel requests.
    """
    n = len(after)
    if len(before) != n:
        raise DataError(f"before/after predictions cover {len(before)} and {n} samples; use the same forget set")
    ids = list(range(n)) if ids is None else list(ids)
    if len(ids) != n:
        raise DataError(f"got {len(ids)} ids for {n} forget samples; give one id per sample")
    tgt: Optional[List[int]] = None
    if targets is not None:
        tgt = [int(t) for t in (targets.tolist() if isinstance(targets, (torch.Tensor, np.ndarray)) else targets)]
        if len(tgt) != n:
            raise DataError(f"got {len(tgt)} relabel targets for {n} forget samples; give one per sample")
    rows = []
    for i in range(n):
        label = int(after.labels[i])
        pa = int(after.preds[i])
        t = None if tgt is None else tgt[i]
        rows.append({
            "id": _plain(ids[i]),
            "label": label,
            "target": t,
            "pred_before": int(before.preds[i]),
            "pred_after": pa,
            "confidence_before": float(before.pred_confidence[i]),
            "confidence_after": float(after.pred_confidence[i]),
            "forgotten": bool(pa != label) if t is None else bool(pa == t),
        })
    return rows


def _plain(v: Any) -> Any:
    if isinstance(v, (torch.Tensor, np.generic)):
        return v.item()
    return v


# ------------------------------------------------------------------------------------------ whole evaluation
def split_metrics(preds: Mapping[str, Predictions], *, seed: int = 0, mia_max_samples: Optional[int] = None,
                  mia_attack: str = "svc") -> Dict[str, Any]:
    """Metrics of one model from its predictions on ``forget``/``retain``/``test``.

    Returns ``acc_forget``, ``acc_retain``, ``acc_test``, ``mia_efficacy``, ``mia_attack_train_acc``,
    ``mia_tnr_test``, ``mia_n_per_class``, ``mia_signal_z`` and ``loss_auc`` (see the individual metrics for
    directions, and :func:`l2ul.metrics.metric_info` for each key's label and meaning).
    """
    _check_splits(preds)
    mia = mia_efficacy(preds["retain"], preds["test"], preds["forget"], seed=seed,
                       max_samples=mia_max_samples, attack=mia_attack)
    return {
        "acc_forget": accuracy_from_predictions(preds["forget"]),
        "acc_retain": accuracy_from_predictions(preds["retain"]),
        "acc_test": accuracy_from_predictions(preds["test"]),
        "mia_efficacy": mia.efficacy,
        "mia_attack_train_acc": mia.attack_train_acc,
        "mia_tnr_test": mia.tnr_test,
        "mia_n_per_class": mia.n_per_class,
        "mia_signal_z": mia.signal_z,
        "loss_auc": loss_auc(preds["forget"], preds["test"]),
    }


def _check_splits(preds: Mapping[str, Predictions]) -> None:
    missing = [s for s in SPLITS if s not in preds]
    if missing:
        raise L2ULError(f"predictions are missing the split(s) {missing}; give forget, retain and test")
    for s in SPLITS:
        if not isinstance(preds[s], Predictions):
            raise L2ULError(f"predictions[{s!r}] is a {type(preds[s]).__name__}, expected Predictions")


@dataclass
class ModelEvaluation:
    """A model's predictions on forget/retain/test and the metrics computed from them.

    Made by :func:`evaluate_model`; pass it as ``original`` to :func:`evaluate_unlearning` to evaluate many
    unlearned models of one original without recomputing the original's predictions or its MIA attack. It
    is only valid for the forget/retain/test splits and MIA settings it was computed with.
    """

    predictions: Dict[str, Predictions]
    metrics: Dict[str, Any]
    seed: int = 0
    mia_max_samples: Optional[int] = None
    mia_attack: str = "svc"


def evaluate_model(model: Union[nn.Module, Mapping[str, Predictions]], *, forget: Optional[DataLike] = None,
                   retain: Optional[DataLike] = None, test: Optional[DataLike] = None, seed: int = 0,
                   device: Union[str, torch.device, None] = None, batch_size: Optional[int] = None,
                   mia_max_samples: Optional[int] = None, mia_attack: str = "svc") -> ModelEvaluation:
    """Predict (unless ``model`` is already a mapping of :class:`Predictions`) and compute :func:`split_metrics`."""
    if isinstance(model, nn.Module):
        if forget is None or retain is None or test is None:
            raise L2ULError("evaluating a model needs forget, retain and test data")
        preds = predict_splits(model, forget=forget, retain=retain, test=test, batch_size=batch_size,
                               device=device)
    elif isinstance(model, Mapping):
        _check_splits(model)
        preds = {s: model[s] for s in SPLITS}
    else:
        raise L2ULError(f"cannot evaluate a {type(model).__name__}; give an nn.Module or a dict of Predictions")
    metrics = split_metrics(preds, seed=seed, mia_max_samples=mia_max_samples, mia_attack=mia_attack)
    return ModelEvaluation(predictions=preds, metrics=metrics, seed=seed, mia_max_samples=mia_max_samples,
                           mia_attack=mia_attack)


def evaluate_unlearning(original: Union[nn.Module, Mapping[str, Predictions], ModelEvaluation],
                        unlearned: Union[nn.Module, Mapping[str, Predictions]], *, forget: DataLike,
                        retain: DataLike, test: DataLike, ids: Optional[Sequence[Any]] = None,
                        targets: Optional[Sequence[int]] = None, seed: int = 0,
                        device: Union[str, torch.device, None] = None, batch_size: Optional[int] = None,
                        mia_max_samples: Optional[int] = None, mia_attack: str = "svc") -> Dict[str, Any]:
    """Evaluate an unlearned model against its original on D_f, D_r and D_test.

    ``original`` may be the model, a dict ``{"forget", "retain", "test"} -> Predictions`` (skips its
    inference) or a :class:`ModelEvaluation` from :func:`evaluate_model` (skips inference and its MIA attack;
    its MIA settings must match). ``unlearned`` may be a model or such a dict. ``targets`` are the relabel
    targets of a relabel request (None for misclassify).

    Returns a flat dict (``x`` = after unlearning, ``x_before`` = original):
    ``acc_forget``, ``acc_retain``, ``acc_test``, ``mia_efficacy``, ``mia_attack_train_acc``, ``mia_tnr_test``,
    ``mia_n_per_class``, ``loss_auc`` and each with ``_before``; ``agreement_test`` (share of D_test
    predictions unchanged); ``forget_success`` (share of D_f whose request is met, see :func:`per_instance`);
    ``n_forget``, ``n_retain``, ``n_test``; ``per_instance`` (list of dicts).
    """
    if isinstance(original, ModelEvaluation):
        if (original.seed, original.mia_max_samples, original.mia_attack) != (seed, mia_max_samples, mia_attack):
            raise L2ULError("the precomputed evaluation of the original model used different MIA settings "
                            f"(seed={original.seed}, mia_max_samples={original.mia_max_samples}, "
                            f"mia_attack={original.mia_attack!r}); recompute it with evaluate_model")
        before = original
    else:
        before = evaluate_model(original, forget=forget, retain=retain, test=test, seed=seed, device=device,
                                batch_size=batch_size, mia_max_samples=mia_max_samples, mia_attack=mia_attack)
    after = evaluate_model(unlearned, forget=forget, retain=retain, test=test, seed=seed, device=device,
                           batch_size=batch_size, mia_max_samples=mia_max_samples, mia_attack=mia_attack)
    bp, ap = before.predictions, after.predictions
    for s in SPLITS:
        if len(bp[s]) != len(ap[s]) or not torch.equal(bp[s].labels, ap[s].labels):
            raise DataError(f"the original and unlearned predictions on {s!r} cover different samples; "
                            "evaluate both on the same splits")
    instances = per_instance(bp["forget"], ap["forget"], ids=ids, targets=targets)
    out: Dict[str, Any] = {}
    for key, value in after.metrics.items():
        out[key] = value
        out[f"{key}_before"] = before.metrics[key]
    out["agreement_test"] = agreement(bp["test"], ap["test"])
    out["forget_success"] = float(np.mean([r["forgotten"] for r in instances]))
    out["n_forget"], out["n_retain"], out["n_test"] = len(ap["forget"]), len(ap["retain"]), len(ap["test"])
    out["per_instance"] = instances
    return out


# -------------------------------------------------------------------------------------------------- memory
def peak_memory(device: Union[str, torch.device, None] = None) -> Dict[str, float]:
    """Peak memory so far, in MiB: ``cuda_max_allocated_mib`` (only when CUDA is available; 0.0 if CUDA was
    never initialised) and ``max_rss_mib`` (the process's peak resident set size; absent where the
    ``resource`` module is unavailable, e.g. Windows)."""
    out: Dict[str, float] = {}
    if torch.cuda.is_available():
        if torch.cuda.is_initialized():
            out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        else:
            out["cuda_max_allocated_mib"] = 0.0
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return out
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    out["max_rss_mib"] = rss / 2 ** 20 if sys.platform == "darwin" else rss / 2 ** 10
    return out
