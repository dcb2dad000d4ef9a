"""The interface every unlearning method implements.

A method says which ingredients it needs (adversarial examples of the forget set, MAS importance,
remaining training data) and how one optimisation step's loss is built from a batch. The engine
(:mod:`l2ul.engine`) owns everything else: copying the model, generating the ingredients, batching,
the stopping check, divergence detection and timing. A new method is one file with a subclass plus a
``register_method`` entry in :mod:`l2ul.methods`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UnlearnConfig
from ..importance import anchor_penalty


@dataclass
class StepBatch:
    """One optimisation step's data.

    ``x_forget``/``y_forget``: forget instances and the label the forget term works on (their own label for
    ``misclassify``, pushed away from; their target for ``relabel``, pulled toward).
    ``x_aux``/``y_aux``: the auxiliary batch kept fitted (adversarial examples with their adversarial labels,
    or remaining training data with its labels); ``None`` for methods without one.
    """

    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_aux: Optional[torch.Tensor] = None
    y_aux: Optional[torch.Tensor] = None


@dataclass
class MethodContext:
    """What the engine prepared for the method: the task, the original weights and importance weights."""

    task: str
    config: UnlearnConfig
    anchor: Optional[Dict[str, torch.Tensor]] = None
    importance: Optional[Dict[str, torch.Tensor]] = None


class UnlearningMethod:
    """Base class. Subclasses set the ``uses_*`` flags and may override :meth:`loss`."""

    name: str = "base"
    description: str = ""
    uses_adversarial: bool = False   # aux batches are targeted adversarial examples of the forget set
    uses_importance: bool = False    # add reg_lambda * MAS-weighted anchor to the original weights
    uses_retain: bool = False        # aux batches are remaining training data (needs data others do not)

    def forget_term(self, logits_f: torch.Tensor, batch: StepBatch, ctx: MethodContext) -> torch.Tensor:
        """The forget batch's term. ``relabel``: cross-entropy toward the targets, descended.
        ``misclassify``: with ``forget_loss="ascent"`` (the paper) the label's cross-entropy, ascended; with
        ``"nearest"`` the cross-entropy toward each instance's highest-scoring other class, descended."""
        if ctx.task == "relabel":
            return F.cross_entropy(logits_f, batch.y_forget)
        if ctx.config.forget_loss == "nearest":
            others = logits_f.detach().clone()
            others.scatter_(1, batch.y_forget[:, None], float("-inf"))
            return F.cross_entropy(logits_f, others.argmax(1))
        return -F.cross_entropy(logits_f, batch.y_forget)

    def loss(self, model: nn.Module, batch: StepBatch, ctx: MethodContext, forward) -> torch.Tensor:
        """The step's loss. ``forward(model, x_forget, x_aux)`` returns ``(logits_forget, logits_aux)``
        honouring the run's batch-norm mode.

        With an auxiliary batch, the two terms are weighted by their share of the combined batch, as in the
        authors' code: ``B_f/(B_f+B_a) * forget_term + B_a/(B_f+B_a) * CE(aux)``.
        """
        logits_f, logits_a = forward(model, batch.x_forget, batch.x_aux)
        forget = self.forget_term(logits_f, batch, ctx)
        if logits_a is None:
            total = forget
        else:
            bf, ba = batch.x_forget.shape[0], batch.x_aux.shape[0]
            total = (bf * forget + ba * F.cross_entropy(logits_a, batch.y_aux)) / (bf + ba)
        if self.uses_importance and ctx.importance is not None and ctx.config.reg_lambda > 0:
            total = total + ctx.config.reg_lambda * anchor_penalty(model, ctx.importance, ctx.anchor)
        return total
