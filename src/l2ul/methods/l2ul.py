from .base import UnlearningMethod


class L2UL(UnlearningMethod):
    """The paper's full method ("Adv+Imp"): ``adv`` plus ``reg_lambda * sum Omega * (theta - theta0)^2 / 2``
    with Omega = 1 - minmax(MAS importance on the forget set), per parameter tensor."""

    name = "l2ul"
    description = "L2UL: forget-set ascent + adversarial examples + MAS weight-importance anchor"
    uses_adversarial = True
    uses_importance = True
