"""Membership inference: the confidence-based MIA efficacy of Jia et al. 2023 and the loss-AUC attack.

Both judge whether an (unlearned) model still treats the forget set D_f like its training data. They are pure
functions of :class:`~l2ul.evaluation.Predictions` (a model's outputs on one split); every name here is also
importable from :mod:`l2ul.evaluation`, which uses them in :func:`~l2ul.evaluation.split_metrics`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional

import numpy as np

from .errors import DataError, L2ULError

if TYPE_CHECKING:
    from .evaluation import Predictions

__all__ = ["MIAResult", "MIA_MIN_SIGNAL_Z", "mia_signal_z", "mia_efficacy", "loss_auc"]


@dataclass(frozen=True)
class MIAResult:
    """Outcome of the confidence-based membership-inference attack of :func:`mia_efficacy`.

    - ``efficacy``: share of D_f the attack calls non-member. Higher = more forgotten. A model never trained
      on D_f is expected to score about ``tnr_test``.
    - ``attack_train_acc``: balanced accuracy of the attack on its own training set (retain vs test samples);
      0.5 means the model's confidence carries no membership signal at all, so ``efficacy`` is uninformative.
    - ``tnr_test``: share of all D_test samples the attack calls non-member (its true-negative rate on data the
      model never saw) -- the reference level for ``efficacy``. It includes the D_test samples the attack was
      fitted on; with a single feature and a smooth decision function the in-sample/out-of-sample gap is
      negligible.
    - ``n_per_class``: samples of each class the attack was trained on; ``attack``: "svc" or "logistic".
    - ``signal_z`` / ``informative``: see :func:`mia_signal_z`. When the attack finds no membership signal,
      its threshold direction is arbitrary and ``efficacy`` swings between about 0 and 1 on the same model
      state (measured on the CIFAR-10 ResNet-20 runs of BENCHMARKS.md); report it as uninformative.
    """

    efficacy: float
    attack_train_acc: float
    tnr_test: float
    n_per_class: int
    attack: str

    @property
    def signal_z(self) -> float:
        return mia_signal_z(self.attack_train_acc, self.n_per_class)

    @property
    def informative(self) -> bool:
        return self.signal_z >= MIA_MIN_SIGNAL_Z

    def as_dict(self) -> Dict[str, Any]:
        return {"efficacy": self.efficacy, "attack_train_acc": self.attack_train_acc,
                "tnr_test": self.tnr_test, "n_per_class": self.n_per_class, "attack": self.attack}


#: z-score below which the MIA attack is judged to have found no membership signal (one-sided p ~ 0.001)
MIA_MIN_SIGNAL_Z = 3.0


def mia_signal_z(attack_train_acc: Optional[float], n_per_class: Optional[int]) -> float:
    """How far the MIA attack's balanced accuracy lies above chance, in standard errors of a coin flip.

    ``z = (attack_train_acc - 0.5) / sqrt(0.25 / (2 * n_per_class))``. Under "the confidence carries no
    membership signal" an attack's accuracy on its ``2 n`` samples is about ``N(0.5, 0.25 / 2n)``, so
    ``z < 3`` (:data:`MIA_MIN_SIGNAL_Z`) means the attack did no better than chance and its efficacy on D_f
    says nothing. The accuracy is in-sample; for a one-feature smooth classifier (RBF SVC with gamma 1 on
    confidences in [0, 1], or a threshold) the optimism is small, so this is a lenient test. Returns ``nan``
    when either input is missing (records written before this check).
    """
    if attack_train_acc is None or not n_per_class:
        return float("nan")
    return float((attack_train_acc - 0.5) / math.sqrt(0.25 / (2 * n_per_class)))


def _make_attack(attack: str):
    if attack == "svc":
        from sklearn.svm import SVC

        return SVC(C=3, gamma="auto", kernel="rbf")
    if attack == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression())
    raise L2ULError(f"unknown MIA attack {attack!r}; choose 'svc' or 'logistic'")


def mia_efficacy(retain: Predictions, test: Predictions, forget: Predictions, *, seed: int = 0,
                 max_samples: Optional[int] = None, attack: str = "svc") -> MIAResult:
    """MIA efficacy as in Jia et al. 2023 ("Model sparsity can simplify machine unlearning") and SalUn.

    An attack classifier is fitted on the true-class confidence of ``n`` retain samples (members, label 1)
    and ``n`` test samples (non-members, label 0), ``n = min(len(retain), len(test), max_samples)``, drawn
    without replacement with ``numpy.random.default_rng(seed)``; it is then applied to every D_f sample.

    The attack is an RBF ``sklearn.svm.SVC(C=3, gamma="auto")`` on the confidence by default: exactly the
    classifier of the reference implementations, so numbers are comparable with published MIA-efficacy
    values, and a kernel attack can learn a non-threshold member region. Its fit time grows roughly
    quadratically with ``n`` (about 4 s at n = 10,000 per class); pass ``max_samples`` to bound it, or
    ``attack="logistic"`` (logistic regression on the standardised confidence, i.e. a single learned
    confidence threshold; milliseconds) for a fast approximation.

    Returns a :class:`MIAResult`; ``result.efficacy`` is the share of D_f predicted non-member. Higher = more
    forgotten; a model never trained on D_f is expected to score about ``result.tnr_test``.
    """
    if len(retain) == 0 or len(test) == 0:
        raise DataError("MIA efficacy needs non-empty retain and test splits to train the attack")
    if len(forget) == 0:
        raise DataError("MIA efficacy needs a non-empty forget set")
    n = min(len(retain), len(test))
    if max_samples is not None:
        if max_samples < 1:
            raise L2ULError(f"max_samples must be a positive integer or None, got {max_samples}")
        n = min(n, int(max_samples))
    rng = np.random.default_rng(seed)
    r_idx = np.sort(rng.choice(len(retain), size=n, replace=False))
    t_idx = np.sort(rng.choice(len(test), size=n, replace=False))
    r_conf = retain.true_class_confidence.numpy().astype(np.float64)
    t_conf = test.true_class_confidence.numpy().astype(np.float64)
    f_conf = forget.true_class_confidence.numpy().astype(np.float64)
    x = np.concatenate([r_conf[r_idx], t_conf[t_idx]])[:, None]
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    clf = _make_attack(attack)
    clf.fit(x, y)
    train_acc = float((clf.predict(x) == y).mean())
    tnr = float((clf.predict(t_conf[:, None]) == 0).mean())
    efficacy = float((clf.predict(f_conf[:, None]) == 0).mean())
    return MIAResult(efficacy=efficacy, attack_train_acc=train_acc, tnr_test=tnr, n_per_class=n, attack=attack)


def loss_auc(forget: Predictions, test: Predictions) -> float:
    """ROC AUC of telling D_f (positive) from D_test (negative) with score ``-loss`` (low loss = member-like).

    It equals the probability that a random D_f sample has lower loss than a random D_test sample (ties
    count one half). 0.5 = indistinguishable, which is what a model never trained on D_f is expected to
    give; 1.0 = D_f is clearly recognisable as training data (not forgotten). Values well below 0.5 mean D_f
    now has *higher* loss than unseen data (over-forgetting), itself a membership signal; so the target is
    0.5, not 0.
    """
    if len(forget) == 0 or len(test) == 0:
        raise DataError("loss AUC needs non-empty forget and test splits")
    from sklearn.metrics import roc_auc_score

    scores = -np.concatenate([forget.losses.numpy(), test.losses.numpy()]).astype(np.float64)
    members = np.concatenate([np.ones(len(forget)), np.zeros(len(test))])
    return float(roc_auc_score(members, scores))
