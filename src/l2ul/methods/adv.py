from ._registry import register_method
from .base import MethodContext, UnlearningMethod, cycle_batches


@register_method
class Adv(UnlearningMethod):
    """-CE on the forget set plus CE of targeted adversarial examples of the forget instances toward their
    adversarial labels (keeps the decision boundaries around them in place). The paper's "Adv" ablation."""

    name = "adv"
    description = "forget-set ascent + adversarial examples (ablation of l2ul without importance)"
    source = "Cha et al., AAAI 2024 (ablation)"
    ingredients = ("adversarial",)

    def aux_batches(self, ctx: MethodContext):
        adv = ctx.ingredients["adversarial"]
        for i in cycle_batches(len(adv), ctx.config.adv_batch_size, ctx.generator):
            yield adv.images[i], adv.labels[i]
