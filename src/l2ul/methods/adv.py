from .base import UnlearningMethod


class Adv(UnlearningMethod):
    """-CE on the forget set plus CE of targeted adversarial examples of the forget instances toward their
    adversarial labels (keeps the decision boundaries around them in place). The paper's "Adv" ablation."""

    name = "adv"
    description = "forget-set ascent + adversarial examples (ablation of l2ul without importance)"
    uses_adversarial = True
