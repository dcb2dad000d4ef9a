"""The figures of one deletion request: the dataset's fixed D_r sample, the original model's outputs (from the
outputs cache), the unlearned model's figures against them, the per-instance outcome with its membership
evidence and the per-class D_test accuracy. :func:`l2ul.run_request` (``l2ul unlearn``, the demo, every cell
of ``l2ul bench``) measures every request with these functions."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
from torch import nn

__all__ = ["retain_eval_sample", "retain_eval_subset", "evaluate_request", "measure_request"]


def _check_retain_eval_size(size) -> None:
    from .errors import ConfigError

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ConfigError(f"retain_eval_size must be a whole number >= 0 (0 = all remaining instances), got "
                          f"{size!r}", field="retain_eval_size")


def retain_eval_sample(bundle, size: int, seed: Optional[int] = None) -> np.ndarray:
    """The dataset's fixed D_r evaluation sample: ``size`` training indices (0, or at least the training set:
    all of them) drawn with ``numpy.random.default_rng(seed)`` (default
    :data:`l2ul.evaluation.RETAIN_EVAL_SEED`), ascending. It is the same for every request on the dataset,
    so the original model's figures on it are computed once (:mod:`l2ul.output_cache`) and every request's
    "before" D_r is measured on the same images."""
    from .evaluation import RETAIN_EVAL_SEED

    _check_retain_eval_size(size)
    if not size or size >= bundle.n_train:
        return np.arange(bundle.n_train)
    rng = np.random.default_rng(RETAIN_EVAL_SEED if seed is None else seed)
    return np.sort(rng.choice(bundle.n_train, size, replace=False))


def retain_eval_subset(bundle, exclude: Sequence[int], size: int, seed: Optional[int] = None) -> np.ndarray:
    """A request's D_r evaluation subset: the fixed sample (:func:`retain_eval_sample`) less ``exclude``
    (the request's instances)."""
    sample = retain_eval_sample(bundle, size, seed)
    return sample[~np.isin(sample, np.asarray(list(exclude), dtype=np.int64))]


def evaluate_request(original: nn.Module, result, bundle, request, eval_ids: np.ndarray, *, seed: int,
                     mia_max_samples: Optional[int] = 5000, eval_sample: Optional[np.ndarray] = None,
                     cache: Optional[bool] = None, batch_size: Optional[int] = None, progress: bool = False):
    """Metrics before and after on D_f, the D_r subset ``eval_ids`` and D_test; the per-instance outcome, with
    its membership percentiles (:func:`l2ul.membership.add_membership_evidence`); the per-class D_test
    accuracy (:func:`l2ul.audit.per_class_accuracy`). The original's outputs come from
    :mod:`l2ul.output_cache`. A diverged result is measured only on the original (its figures are ``None``)."""
    from .evaluation import SPLITS, evaluate_model
    from .output_cache import cached_predict

    sets = dict(forget=bundle.stack_train(request.ids), retain=bundle.train_subset(eval_ids), test=bundle.test)
    # the original's outputs are the same for every request on this model and data: from the outputs cache,
    # on the whole fixed D_r sample (``eval_sample``, of which ``eval_ids`` is the request's part)
    whole = {"retain": bundle.train_subset(eval_sample)} if eval_sample is not None else {}
    names = {"forget": "D_f", "retain": "D_r", "test": "D_test"}
    preds = {s: cached_predict(original, whole.get(s, sets[s]), batch_size=batch_size, device=result.device,
                               enabled=cache, progress=f"the original on {names[s]}" if progress else None)
             for s in SPLITS}
    if eval_sample is not None:
        preds["retain"] = preds["retain"].subset(np.searchsorted(eval_sample, eval_ids))
    before = evaluate_model(preds, seed=seed, mia_max_samples=mia_max_samples)
    after = _head_only_after(original, result, sets, preds, whole.get("retain"), eval_sample, eval_ids,
                             batch_size=batch_size, cache=cache)
    return measure_request(before, result, bundle, request, sets, seed=seed, mia_max_samples=mia_max_samples,
                           batch_size=batch_size, progress=progress, after=after)


def _head_only_after(original: nn.Module, result, sets, preds, whole_retain, eval_sample, eval_ids, *,
                     batch_size: Optional[int], cache: Optional[bool]):
    """The unlearned model's predictions on ``sets`` without a forward pass over D_r and D_test, when only its
    final linear layer differs from the original's (``repair --forget-phase head_edit``,
    :func:`l2ul.head_edit.head_only_change`): that layer applied to the original's features, read with the
    original's outputs (:func:`l2ul.output_cache.cached_head_features`, once per model and data; computed
    afresh with the cache off, so the figures do not depend on the cache). ``None`` otherwise."""
    from .evaluation import Predictions, predict
    from .head_edit import head_logits, head_only_change
    from .output_cache import cached_head_features

    if result.status == "diverged":
        return None
    x_forget = sets["forget"][0]
    name = head_only_change(original, result.model, x_forget[:2].to(result.device))
    if name is None:
        return None
    from .config import default_eval_batch

    bs = batch_size or default_eval_batch(result.device)
    orig_head, new_head = (dict(m.named_modules())[name] for m in (original, result.model))
    feats = {s: cached_head_features(original, orig_head, data, batch_size=bs, device=result.device, enabled=cache)
             for s, data in (("retain", whole_retain if whole_retain is not None else sets["retain"]),
                             ("test", sets["test"]))}
    if whole_retain is not None:
        feats["retain"] = feats["retain"][np.searchsorted(eval_sample, eval_ids)]
    after = {s: Predictions(head_logits(new_head, feats[s], bs), preds[s].labels) for s in feats}
    after["forget"] = predict(result.model, sets["forget"], batch_size=bs, device=result.device)
    return after


def measure_request(before, result, bundle, request, sets: Dict[str, Any], *, seed: int,
                    mia_max_samples: Optional[int], mia_attack: str = "svc", batch_size: Optional[int] = None,
                    progress: bool = False, after: Optional[Dict[str, Any]] = None):
    """The unlearned model's figures against the original's ``before`` (a
    :class:`~l2ul.evaluation.ModelEvaluation` on ``sets``: ``forget``, ``retain``, ``test``), the per-instance
    outcome with its membership evidence, the per-class D_test accuracy, and the unlearned model's
    predictions on ``sets`` (``None`` for a diverged result; ``after``: those predictions, when the caller
    already has them)."""
    from .audit import per_class_accuracy
    from .evaluation import evaluate_unlearning, predict_splits
    from .membership import add_membership_evidence

    ids = [bundle.train_ids[i] for i in request.ids]
    if result.status != "diverged":
        if after is None:
            after = predict_splits(result.model, **sets, batch_size=batch_size, device=result.device,
                                   progress=progress)
        metrics = evaluate_unlearning(before, after, ids=ids, targets=request.targets, **sets, seed=seed,
                                      batch_size=batch_size, mia_max_samples=mia_max_samples, mia_attack=mia_attack)
        per_inst = metrics.pop("per_instance")
        if result.unseen is not None:
            _unseen_outcome(metrics, per_inst, result.unseen)
    else:
        metrics, per_inst = _diverged_figures(before, ids, request)
    add_membership_evidence(per_inst, before.predictions, after)
    _name_classes(per_inst, bundle.class_names)
    per_class = per_class_accuracy(before.predictions["test"], None if after is None else after["test"],
                                   class_names=bundle.class_names)
    return metrics, per_inst, per_class, after


def _unseen_outcome(metrics, per_inst, unseen) -> None:
    """Task ``unseen``: an instance's request is met when, under the released model, its loss lies within one
    band width of its band of the reference's losses (``forgotten``; ``in_band``: inside it), whatever it is
    predicted as; each row gets its loss, band and percentile among the reference (:mod:`l2ul.unseen`)."""
    for row, inst in zip(per_inst, unseen["instances"]):
        row.update(forgotten=inst.get("near_band", inst["in_band"]), in_band=inst["in_band"],
                   loss_after=inst["loss"], loss_band=inst["loss_band"],
                   reference_percentile=inst.get("percentile"), quantile_band=inst.get("quantile_band"))
    metrics["forget_success"] = sum(r["forgotten"] for r in per_inst) / max(len(per_inst), 1)
    metrics["reference_accuracy"] = unseen["reference_accuracy"]


def _diverged_figures(before, ids, request):
    """The original's figures beside ``None`` for a diverged (non-finite) result."""
    metrics = {}
    for key, value in before.metrics.items():
        metrics[key], metrics[f"{key}_before"] = None, value
    metrics.update(agreement_test=None, forget_success=None, n_forget=len(before.predictions["forget"]),
                   n_retain=len(before.predictions["retain"]), n_test=len(before.predictions["test"]))
    pf = before.predictions["forget"]
    per_inst = [{"id": ids[i], "label": int(pf.labels[i]),
                 "target": None if request.targets is None else int(request.targets[i]),
                 "pred_before": int(pf.preds[i]), "pred_after": None,
                 "confidence_before": float(pf.pred_confidence[i]), "confidence_after": None,
                 "forgotten": None} for i in range(len(ids))]
    return metrics, per_inst


def _name_classes(per_inst, names) -> None:
    """Each instance's label, target and predictions by the dataset's class names too (``*_name``)."""
    if not names:
        return
    for r in per_inst:
        for key in ("label", "target", "pred_before", "pred_after"):
            v = r.get(key)
            if isinstance(v, int) and 0 <= v < len(names):
                r[f"{key}_name"] = str(names[v])
