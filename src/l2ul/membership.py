"""Per-instance membership evidence: does the unlearned model treat each forgotten instance like unseen data?

The split-level figures of :mod:`l2ul.evaluation` (MIA efficacy, loss AUC) say whether D_f *as a set* looks like
training data. They are weak on a model with a small train/test gap: its losses on members and non-members
overlap, so the attack finds little signal and one instance's loss says little on its own. The two scores here
are per instance, need no shadow models and no extra forward passes (only the losses of the original and the
unlearned model on D_f and on unseen data, e.g. D_test), and share one scale and direction:

- **0..100, a percentile among unseen data.** About **50** = the instance looks like data the model never
  saw (an instance exchangeable with the unseen data scores 50 on average; its score is uniform on 0..100).
  Near **0** = the model still knows it (its loss is lower than almost all unseen losses). Near **100** = it
  is over-forgotten: its loss is higher than almost all unseen losses, which is itself a membership signal
  (nothing the model never saw stands out like that).

:func:`loss_percentiles` ranks the raw loss. :func:`lira_offline_scores` first removes what the original model
says about the instance's difficulty (an easy image has a low loss whether or not it was trained on), using
the unseen data to learn how the unlearned model's scores relate to the original's on data neither saw, and
the original's other training data to remove, on average, what it memorised of the instance itself.
:func:`membership_evidence` computes both from :class:`l2ul.evaluation.Predictions` for a report.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .errors import DataError

__all__ = ["loss_percentiles", "logit_confidence", "lira_offline_scores", "membership_evidence",
           "add_membership_evidence", "PERCENTILE_NOTE"]

#: the plain-language reading of both scores (the audit page prints it)
PERCENTILE_NOTE = ("about 50 = looks like data the model never saw; near 0 = the model still knows it; "
                   "near 100 = over-forgotten, itself a membership signal")

# losses are float32 cross-entropies: below ~1e-7 they are rounding noise, and 0 would make the log-odds infinite
_MIN_LOSS = 1e-7
_MAX_LOSS = 1e4


def _vector(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of per-sample losses, got shape {a.shape}")
    if np.isnan(a).any():
        raise DataError(f"{name} contains NaN losses; a diverged model has no membership evidence")
    return a


def _percentiles(values: np.ndarray, reference: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """100 * (share of ``reference`` below each value + half the share equal to it, within ``tol``)."""
    if reference.size == 0:
        raise DataError("membership percentiles need at least one unseen-data loss as reference")
    ref = np.sort(reference)
    below = np.searchsorted(ref, values - tol, side="left")
    not_above = np.searchsorted(ref, values + tol, side="right")
    return 100.0 * (below + 0.5 * (not_above - below)) / ref.size


def loss_percentiles(forget_losses, unseen_losses) -> np.ndarray:
    """Each forget instance's loss percentile among ``unseen_losses`` (0..100; ties count one half).

    ``100 * (#{unseen < loss} + 0.5 * #{unseen == loss}) / len(unseen)``, float64 ``[k]``. Direction: lower =
    more member-like (the model still knows the instance); an instance the model never trained on, drawn
    like the unseen data, gets 50 on average (the median unseen loss gets exactly 50); near 100 =
    over-forgotten (higher loss than almost all unseen data, itself a membership signal). Computed on the
    unlearned model, 50 is the target; on the original, it measures how strongly the instance was learnt.
    """
    f = _vector(forget_losses, "forget_losses")
    u = _vector(unseen_losses, "unseen_losses")
    return _percentiles(f, u)


def logit_confidence(losses) -> np.ndarray:
    """The log-odds of the true class, ``log(p / (1 - p))`` with ``p = exp(-loss)``, computed stably.

    LiRA's (Carlini et al. 2022) "logit-scaled confidence": on this scale the confidences of one example over
    models are close to Gaussian. Decreasing in the loss; losses are clipped to [1e-7, 1e4] (float32
    cross-entropies below 1e-7 are rounding noise), so the result lies in about [-1e4, 16.1].
    """
    loss = np.clip(_vector(losses, "losses"), _MIN_LOSS, _MAX_LOSS)
    return -loss - np.log(-np.expm1(-loss))


def lira_offline_scores(losses_after, losses_before, unseen_losses_after, unseen_losses_before,
                        member_losses_before) -> np.ndarray:
    """Difficulty-calibrated membership percentile of each forget instance, with the original as reference.

    An offline (OUT-only) likelihood test in the spirit of LiRA (Carlini et al. 2022), without shadow models:
    how the unlearned model would score the instance *had it never seen it* is predicted from the original
    model's score on the same image, and the instance is ranked within that prediction's spread.

    ``losses_after`` / ``losses_before``: per forget instance, the unlearned / original model's loss;
    ``unseen_losses_after`` / ``unseen_losses_before``: both models' losses on the same unseen data (D_test);
    ``member_losses_before``: the original's losses on (a sample of) its other training data (D_r).

    1. ``s = logit_confidence(loss)`` for every loss.
    2. *Difficulty without membership.* The original was trained on the instance, so its score overstates
       how easy the image is. It is mapped to the score of equal rank among unseen data: the instance's
       percentile among the original's member scores, read off the original's unseen scores (Hazen
       quantiles; the identity when members and unseen data score alike, i.e. with no train/test gap).
    3. *The unlearned model on unseen data.* On the unseen data (members of neither model) fit
       ``s_after ≈ a + b * s_before`` (least squares): how the unlearned model scores an image it never saw,
       given the original's score (the image's difficulty, plus whatever the unlearning did to all data).
    4. The residual ``(a + b * mapped) - s_after`` of each forget instance (positive = less confident, i.e.
       a higher loss, than predicted for data never seen) is ranked among the unseen residuals
       ``(a + b * s_before) - s_after`` with :func:`loss_percentiles`' rule (0..100, ties one half).

    Same scale and direction as :func:`loss_percentiles`: about **50** = scored like an image the model
    never saw (an instance exchangeable with the unseen data gets 50 on average, and so does, on average
    over instances, a model retrained without them); near **0** = more confident than a never-seen image of
    its difficulty (it is still known: a model left unchanged scores about 0 wherever the original
    memorised); near **100** = over-forgotten. Unlike the raw percentile it compares each instance with
    unseen images *of its own difficulty* (an easy image has a low loss whether or not it was trained on),
    which is what makes it informative where training and test losses overlap (a small train/test gap).
    The empirical ranking replaces LiRA's Gaussian tail, so no distribution is assumed. The mapping of
    step 2 removes the original's memorisation on average over its members, not per image, so a single
    score is noisy; read it next to the raw percentile. Measured on digits (small CNN, quick recipe, 150
    random training instances, D_test as unseen data): after 3 epochs (mean loss 0.10 on training data, 0.17
    on test) the raw percentile is 46 on the original and 48 on a model retrained without the instances (no
    evidence either way), while the calibrated one is 37 on a second model trained with them, 42 on the
    retrained one and 1 on the original left unchanged; after 30 epochs 33 vs 44. So a model that forgot
    scores somewhat below 50, not exactly 50; compare instances and runs, not one score with 50 exactly.
    ``b = 0`` when the unseen data has fewer than 3
    samples or no spread in the original's scores. Returns float64 ``[k]``.
    """
    fa = logit_confidence(losses_after)
    fb = logit_confidence(losses_before)
    ua = logit_confidence(unseen_losses_after)
    ub = logit_confidence(unseen_losses_before)
    mb = logit_confidence(member_losses_before)
    if fa.shape != fb.shape:
        raise DataError(f"losses_after and losses_before cover {fa.size} and {fb.size} instances; give both "
                        "models' losses on the same forget set")
    if ua.shape != ub.shape:
        raise DataError(f"unseen_losses_after and unseen_losses_before cover {ua.size} and {ub.size} samples; "
                        "give both models' losses on the same unseen data")
    if ua.size == 0 or mb.size == 0:
        raise DataError("the calibrated percentile needs unseen-data losses and the original's losses on "
                        "other training data (members) as references")
    mapped = np.quantile(ub, _percentiles(fb, mb) / 100.0, method="hazen")
    a, b = _fit_line(ub, ua)
    ref = a + b * ub - ua
    # residuals equal up to rounding (e.g. an image scored exactly like its unseen counterpart) are ties
    tol = 1e-9 * max(1.0, float(np.abs(ref).max()), float(np.abs(ua).max()))
    return _percentiles(a + b * mapped - fa, ref, tol)


def _fit_line(x: np.ndarray, y: np.ndarray):
    """Least-squares ``y ≈ a + b x``; ``b = 0`` when ``x`` has (almost) no spread or fewer than 3 points."""
    mx, my = float(x.mean()), float(y.mean())
    dx = x - mx
    sxx = float(dx @ dx)
    if x.size < 3 or sxx <= 1e-12 * max(1.0, mx * mx) * x.size:
        return my, 0.0
    b = float(dx @ (y - my)) / sxx
    return my - b * mx, b


def membership_evidence(before: Mapping[str, Any], after: Optional[Mapping[str, Any]] = None,
                        *, unseen: str = "test", members: str = "retain") -> List[Dict[str, Optional[float]]]:
    """Per forget instance: ``loss_percentile`` (unlearned model), ``loss_percentile_before`` (original) and
    ``calibrated_percentile`` (:func:`lira_offline_scores`), all 0..100 with 50 = like unseen data.

    ``before`` / ``after``: ``{"forget", unseen, members: Predictions}`` of the original and the unlearned
    model (e.g. ``ModelEvaluation.predictions``, or :func:`l2ul.evaluation.predict_splits`); ``unseen``
    (default D_test, which neither model trained on) is the reference, ``members`` (default D_r; only the
    original's predictions are read) calibrates the original's memorisation. Without a ``members`` split in
    ``before``, ``calibrated_percentile`` is ``None``; with ``after=None`` (a diverged run) only
    ``loss_percentile_before`` is set. One dict per row of the forget split, in its order.
    """
    fb, ub = before["forget"].losses, before[unseen].losses
    if len(ub) == 0:
        raise DataError(f"the {unseen!r} split is empty; membership percentiles need unseen data")
    pb = loss_percentiles(fb, ub)
    pa = cal = [None] * len(pb)
    if after is not None:
        fa, ua = after["forget"].losses, after[unseen].losses
        pa = [float(v) for v in loss_percentiles(fa, ua)]
        if members in before and len(before[members]):
            cal = [float(v) for v in lira_offline_scores(fa, fb, ua, ub, before[members].losses)]
    return [{"loss_percentile": x, "loss_percentile_before": float(y), "calibrated_percentile": z}
            for x, y, z in zip(pa, pb, cal)]


def add_membership_evidence(rows: List[Dict[str, Any]], before: Mapping[str, Any],
                            after: Optional[Mapping[str, Any]] = None, *, unseen: str = "test",
                            members: str = "retain") -> List[Dict[str, Any]]:
    """Add :func:`membership_evidence`'s keys to each per-instance row (``rows`` in forget-split order, e.g.
    :func:`l2ul.evaluation.per_instance`'s); returns ``rows``."""
    ev = membership_evidence(before, after, unseen=unseen, members=members)
    if len(ev) != len(rows):
        raise DataError(f"{len(rows)} per-instance rows for {len(ev)} forget predictions; use the same forget set")
    for row, e in zip(rows, ev):
        row.update(e)
    return rows
