from .base import UnlearningMethod


class Oracle(UnlearningMethod):
    """-CE on the forget set plus CE on remaining training data. An upper reference, not an instance-wise
    method: it needs the remaining training data (``retain=`` in :func:`l2ul.unlearn`), which the other
    methods never see. The retain data must not contain the forget instances."""

    name = "oracle"
    description = "forget-set ascent + fine-tuning on remaining training data (needs retain data)"
    uses_retain = True
