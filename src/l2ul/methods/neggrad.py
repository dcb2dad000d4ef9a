from ._registry import register_method
from .base import UnlearningMethod


@register_method
class NegGrad(UnlearningMethod):
    """Gradient ascent on the forget set (minimise -CE); the paper's naive baseline. For ``relabel``:
    plain fine-tuning of the forget instances toward their targets."""

    name = "neggrad"
    description = "gradient ascent on the forget set (baseline)"
    source = "the naive baseline of Cha et al., AAAI 2024"
