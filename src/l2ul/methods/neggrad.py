from .base import UnlearningMethod


class NegGrad(UnlearningMethod):
    """Gradient ascent on the forget set (minimise -CE); the paper's naive baseline. For ``relabel``:
    plain fine-tuning of the forget instances toward their targets."""

    name = "neggrad"
    description = "gradient ascent on the forget set (baseline)"
