"""Per-instance membership percentiles (l2ul.membership) on hand-made losses."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2ul.errors import DataError
from l2ul.evaluation import Predictions
from l2ul.membership import (
    add_membership_evidence,
    lira_offline_scores,
    logit_confidence,
    loss_percentiles,
    membership_evidence,
)

UNSEEN = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def test_loss_percentiles_exact_on_small_arrays():
    # below every unseen loss, the median, above every one; between two values
    assert loss_percentiles([0.5, 3.0, 9.0, 2.5], UNSEEN).tolist() == [0.0, 50.0, 100.0, 40.0]
    # ties count one half: 1 below, 2 equal of 4 -> (1 + 1) / 4
    assert loss_percentiles([2.0], [2.0, 2.0, 1.0, 3.0]).tolist() == [50.0]
    # an equal value at the bottom / top
    assert loss_percentiles([1.0, 5.0], UNSEEN).tolist() == [10.0, 90.0]


def test_the_median_unseen_loss_gives_50():
    assert loss_percentiles([3.0], UNSEEN)[0] == 50.0              # odd: the middle value
    assert loss_percentiles([2.5], [1.0, 2.0, 3.0, 4.0])[0] == 50.0  # even: between the middle two
    rng = np.random.default_rng(0)
    u = rng.exponential(size=1001)
    assert loss_percentiles([np.median(u)], u)[0] == 50.0


def test_an_instance_like_unseen_data_averages_50():
    rng = np.random.default_rng(1)
    u = rng.exponential(size=500)
    # the unseen data ranked among itself: exactly 50 on average (ties or not)
    assert loss_percentiles(u, u).mean() == pytest.approx(50.0, abs=1e-9)
    assert loss_percentiles(np.round(u, 1), np.round(u, 1)).mean() == pytest.approx(50.0, abs=1e-9)
    # fresh draws from the same distribution: about 50
    assert abs(loss_percentiles(rng.exponential(size=4000), u).mean() - 50.0) < 2.0


def test_loss_percentiles_are_monotone_and_bounded():
    rng = np.random.default_rng(2)
    u = rng.gamma(2.0, size=200)
    f = np.sort(rng.gamma(2.0, size=300) * 1.5)
    p = loss_percentiles(f, u)
    assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 100
    assert loss_percentiles(f, u).dtype == np.float64


def test_loss_percentiles_accept_tensors_and_refuse_bad_input():
    assert loss_percentiles(torch.tensor([3.0]), torch.tensor(UNSEEN)).tolist() == [50.0]
    assert loss_percentiles([math.inf], UNSEEN).tolist() == [100.0]   # an infinite loss is just the highest
    with pytest.raises(DataError, match="NaN"):
        loss_percentiles([float("nan")], UNSEEN)
    with pytest.raises(DataError, match="at least one"):
        loss_percentiles([1.0], [])
    with pytest.raises(DataError, match="1-D"):
        loss_percentiles(np.zeros((2, 2)), UNSEEN)


def test_logit_confidence():
    s = logit_confidence([0.0, 1e-3, math.log(2.0), 1.0, 50.0, math.inf])
    assert s[2] == pytest.approx(0.0, abs=1e-12)                           # p = 1/2
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) < 0)               # decreasing in the loss, finite
    p = math.exp(-1.0)
    assert s[3] == pytest.approx(math.log(p / (1 - p)))


def _pairs(seed=0, n=400):
    rng = np.random.default_rng(seed)
    before = rng.exponential(0.5, size=n)                 # the original's losses on unseen data
    after = before * 1.3 + rng.exponential(0.1, size=n)   # the unlearned model: a bit worse on everything
    return after, before


def test_calibrated_percentile_of_unseen_like_instances_averages_50():
    ua, ub = _pairs()
    # instances exchangeable with the unseen data, members scored like unseen data (no train/test gap)
    p = lira_offline_scores(ua, ub, ua, ub, ub)
    assert p.mean() == pytest.approx(50.0, abs=1e-9) and p.min() >= 0 and p.max() <= 100


def test_calibrated_percentile_hand_cases():
    ub = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    ua = ub.copy()                       # unlearning left unseen data unchanged: residuals all 0
    members = ub / 4                     # the original was 4x more confident (in loss) on its training data
    fb = members[[1, 4]]                 # two training instances, as the original scored them
    # left unchanged: more confident than a never-seen image of their difficulty -> 0 ("still known")
    assert lira_offline_scores(fb, fb, ua, ub, members).tolist() == [0.0, 0.0]
    # scored exactly like the unseen image of the same rank: tie with every unseen residual -> 50
    assert lira_offline_scores(ub[[1, 4]], fb, ua, ub, members).tolist() == [50.0, 50.0]
    # a much higher loss than predicted -> 100 ("over-forgotten")
    assert lira_offline_scores([20.0, 30.0], fb, ua, ub, members).tolist() == [100.0, 100.0]


def test_calibrated_percentile_removes_difficulty():
    """An easy image with a low loss is not evidence of membership when easy unseen images score as low."""
    rng = np.random.default_rng(3)
    difficulty = rng.exponential(1.0, size=600)
    ub = difficulty * np.exp(rng.normal(0, 0.1, size=600))
    ua = difficulty * np.exp(rng.normal(0, 0.1, size=600))
    easy = np.array([0.02, 0.03])                    # very easy, never seen by either model
    fb, fa = easy * 1.05, easy * 0.95
    assert loss_percentiles(fa, ua).max() < 5        # the raw percentile calls them "still known"
    assert 10 < lira_offline_scores(fa, fb, ua, ub, ub).min()   # the calibrated one does not


def test_calibrated_percentile_is_monotone_in_the_loss_after():
    ua, ub = _pairs(4)
    members = ub * 0.7
    fb = np.full(50, 0.3)
    fa = np.linspace(0.01, 5.0, 50)
    p = lira_offline_scores(fa, fb, ua, ub, members)
    assert np.all(np.diff(p) >= 0) and p[0] < 10 and p[-1] > 90


def test_calibrated_percentile_degenerate_and_mismatched_input():
    # no spread in the original's unseen losses: b = 0, the raw percentile among the unseen after-losses
    p = lira_offline_scores([1.0, 3.0], [0.5, 0.5], [1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [0.2])
    assert p.tolist() == loss_percentiles([1.0, 3.0], [1.0, 2.0, 3.0]).tolist()
    with pytest.raises(DataError, match="same forget set"):
        lira_offline_scores([1.0], [1.0, 2.0], UNSEEN, UNSEEN, UNSEEN)
    with pytest.raises(DataError, match="same unseen data"):
        lira_offline_scores([1.0], [1.0], UNSEEN, UNSEEN[:3], UNSEEN)
    with pytest.raises(DataError, match="members"):
        lira_offline_scores([1.0], [1.0], UNSEEN, UNSEEN, [])


def _preds(losses_like_logits):
    """Predictions whose true class (0) gets the given logit against a 0 logit for class 1."""
    z = torch.tensor(losses_like_logits, dtype=torch.float32)
    return Predictions(torch.stack([z, torch.zeros_like(z)], 1), torch.zeros(len(z), dtype=torch.int64))


def test_membership_evidence_from_predictions():
    before = {"forget": _preds([5.0, 0.0]), "test": _preds([4.0, 2.0, 0.0, -2.0]), "retain": _preds([5.0, 3.0, 1.0])}
    after = {"forget": _preds([-1.0, 0.0]), "test": _preds([3.0, 1.0, -1.0, -3.0])}
    ev = membership_evidence(before, after)
    assert [e["loss_percentile_before"] for e in ev] == [0.0, 62.5]    # 0.693 ties with one of 4 test losses
    assert [e["loss_percentile"] for e in ev] == [62.5, 50.0]
    assert all(0 <= e["calibrated_percentile"] <= 100 for e in ev)
    rows = [{"id": 3}, {"id": 17}]
    assert add_membership_evidence(rows, before, after) is rows and rows[0]["loss_percentile"] == 62.5
    # a diverged run: only the original's percentile
    ev = membership_evidence(before, None)
    assert ev[0] == {"loss_percentile": None, "loss_percentile_before": 0.0, "calibrated_percentile": None}
    # no member split: no calibrated percentile
    ev = membership_evidence({k: v for k, v in before.items() if k != "retain"}, after)
    assert ev[1]["calibrated_percentile"] is None and ev[1]["loss_percentile"] == 50.0
    with pytest.raises(DataError, match="same forget set"):
        add_membership_evidence([{"id": 1}], before, after)
