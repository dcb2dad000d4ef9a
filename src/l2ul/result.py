"""The outcome of one deletion request: :class:`UnlearnResult` (returned by :func:`l2ul.unlearn`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .attacks import AdversarialSet
from .config import UnlearnConfig


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
    #: the prepared ingredients by name (pass them as ``ingredients=`` to reuse them on the same request)
    ingredients: Dict[str, Any] = field(default_factory=dict, repr=False)
    #: one entry per phase that ran: name, kind, steps, seconds, status, message
    phases: List[Dict[str, Any]] = field(default_factory=list)
    adversarial_success: Optional[float] = None
    #: ``bn="train"`` only (else ``None``): the task score (forget accuracy for ``misclassify``, target
    #: accuracy for ``relabel``) of the unlearned weights evaluated with the *original* model's batch-norm
    #: running statistics. If the request no longer holds with them, the forgetting lives in the running
    #: statistics that the training-mode passes drifted, not in the weights (see README, Known limitations).
    score_with_original_bn_stats: Optional[float] = None
    #: task ``unseen`` only: the reference and each instance's loss band and loss after
    #: (:meth:`l2ul.unseen.ReferenceBands.describe`, with ``instances``)
    unseen: Optional[Dict[str, Any]] = None
    #: with ``keep_forgotten`` data (instances of earlier requests, misclassify): ``{"n": N, "back_on_label": j}``,
    #: how many of them the final model predicts as their label again (``None`` without such data)
    kept_forgotten: Optional[Dict[str, int]] = None

    @property
    def adversarial(self) -> Optional[AdversarialSet]:
        return self.ingredients.get("adversarial")

    @property
    def importance(self) -> Optional[Dict[str, torch.Tensor]]:
        return self.ingredients.get("importance")

    @property
    def holds_with_original_bn_stats(self) -> Optional[bool]:
        """Whether the request also holds with the original running statistics (``None`` when not measured)."""
        s = self.score_with_original_bn_stats
        if s is None:
            return None
        return s == 0.0 if self.task == "misclassify" else s == 1.0

    @property
    def earlier_stay_forgotten(self) -> Optional[bool]:
        """Whether every instance of an earlier request (``keep_forgotten``) is still off its label
        (``None`` without such instances)."""
        return None if self.kept_forgotten is None else self.kept_forgotten["back_on_label"] == 0

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
            "forget_history": self.forget_history, "phases": self.phases,
            **({"unseen": self.unseen} if self.unseen is not None else {}),
            **({"kept_forgotten": self.kept_forgotten} if self.kept_forgotten is not None else {}),
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
            what = {"misclassify": "be predicted as their label again", "relabel": "miss their target"}.get(
                self.task, "leave their band of unseen-data losses")
            warn = (f"\nWARNING: with the original batch-norm running statistics, {bad} of {n} forget instances "
                    f"would {what}: this forgetting lives in the drifted running statistics, and recalibrating "
                    "batch norm on clean data would undo it (README, Known limitations)")
        return (f"{self.method}/{self.task}: {head} after {self.steps} steps; forget accuracy "
                f"{100 * self.forget_accuracy:.1f}%"
                + (f", on target {100 * self.target_accuracy:.1f}%" if self.targets is not None else "")
                + (f" (reference accuracy {100 * self.unseen['reference_accuracy']:.1f}%), "
                   f"{sum(i['in_band'] for i in self.unseen['instances'])} of {len(self.labels)} inside their band "
                   f"of unseen-data losses under the final model, "
                   f"{sum(i.get('near_band', False) for i in self.unseen['instances'])} within one band width"
                   if self.unseen is not None else "")
                + f"; time adversarial {t.get('adversarial', 0):.1f}s, importance {t.get('importance', 0):.1f}s, "
                  f"optimisation {t.get('optimization', 0):.1f}s"
                + "".join(f", {name} {sec:.1f}s" for name, sec in t.items()
                          if name not in ("adversarial", "importance", "optimization"))
                + warn)
