from ..importance import anchor_penalty
from ._registry import register_method
from .adv import Adv
from .base import MethodContext


@register_method
class L2UL(Adv):
    """The paper's full method ("Adv+Imp"): ``adv`` plus ``reg_lambda * sum Omega * (theta - theta0)^2 / 2``
    with Omega = 1 - minmax(MAS importance on the forget set), per parameter tensor.

    Cha, Cho, Hwang, Lee, Moon, Kim: *Learning to Unlearn: Instance-wise Unlearning for Pre-trained
    Classifiers*, AAAI 2024; official code github.com/csm9493/L2UL (see
    ``shared/reference/l2ul-original-code-notes.md`` for what it does)."""

    name = "l2ul"
    description = "L2UL: forget-set ascent + adversarial examples + MAS weight-importance anchor"
    source = "Cha et al., AAAI 2024 (github.com/csm9493/L2UL)"
    ingredients = ("adversarial", "importance")

    def setup(self, ctx: MethodContext) -> None:
        weights = ctx.ingredients["importance"]
        ctx.extras["anchor"] = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if n in weights}

    def loss(self, model, batch, ctx: MethodContext, forward):
        total = super().loss(model, batch, ctx, forward)
        if ctx.config.reg_lambda > 0:
            total = total + ctx.config.reg_lambda * anchor_penalty(model, ctx.importance, ctx.anchor)
        return total
