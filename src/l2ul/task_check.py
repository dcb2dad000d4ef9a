"""The engine's task check: after every optimisation step, on the whole forget set in eval mode, is the
request's task done (and, in a repair, are the earlier requests' instances still off their label)?"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .attacks import frozen_eval
from .methods import MethodContext


class TaskCheck:
    """The task check on the whole forget set, in eval mode: ``(done, score, finite, preds)``; ``score`` is
    the forget accuracy for ``misclassify`` (0 is done), the target accuracy for ``relabel`` (1 is done) and
    the share of instances in their loss band for ``unseen`` (1 is done)."""

    def __init__(self, model: nn.Module, ctx: MethodContext):
        self.model, self.ctx = model, ctx
        # instances of earlier requests a repair keeps forgotten (``keep_forgotten`` data, misclassify only)
        earlier = ctx.data.get("keep_forgotten") if ctx.task == "misclassify" else None
        self.earlier = None if earlier is None else (
            earlier[0].to(ctx.device), torch.as_tensor(earlier[1]).long().to(ctx.device))

    def earlier_back(self) -> int:
        """How many of the earlier requests' instances (``keep_forgotten``) are predicted as their label
        again (eval mode); 0 without any."""
        if self.earlier is None or self.earlier[0].shape[0] == 0:
            return 0
        with frozen_eval(self.model), torch.no_grad():
            return int((self.model(self.earlier[0]).argmax(1) == self.earlier[1]).sum())

    def __call__(self) -> Tuple[bool, float, bool, torch.Tensor]:
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            logits = self.model(self.ctx.x_forget)
            self.model.train(was)
        finite = bool(torch.isfinite(logits).all())
        preds = logits.argmax(1)
        if self.ctx.task == "misclassify":
            score = float((preds == self.ctx.y_forget).float().mean())
            return score == 0.0, score, finite, preds
        if self.ctx.task == "unseen":
            from .unseen import in_band, soft_margin

            score = float(in_band(soft_margin(logits, self.ctx.y_forget), self.ctx.bands).float().mean())
            return score == 1.0, score, finite, preds
        score = float((preds == self.ctx.targets).float().mean())
        return score == 1.0, score, finite, preds

    def left(self, score: float) -> str:
        k = self.ctx.x_forget.shape[0]
        if self.ctx.task == "misclassify":
            return f"{round(score * k)} of {k} forget instances still predicted as their label"
        if self.ctx.task == "unseen":
            return f"{round((1 - score) * k)} of {k} not yet in their band of unseen-data losses"
        return f"{round((1 - score) * k)} of {k} not yet on their target"


#: a forget phase's message when the task holds, by task
DONE = {"misclassify": "no forget instance is predicted as its label",
        "relabel": "every forget instance is predicted as its target",
        "unseen": "every forget instance's loss is in its band of unseen-data losses"}
