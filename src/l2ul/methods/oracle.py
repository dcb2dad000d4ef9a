import torch

from ..errors import RequestError
from ._registry import register_method
from .base import MethodContext, UnlearningMethod


@register_method
class Oracle(UnlearningMethod):
    """-CE on the forget set plus CE on remaining training data. An upper reference, not an instance-wise
    method: it needs the remaining training data (``retain=`` in :func:`l2ul.unlearn`), which the other
    methods never see. The retain data must not contain the forget instances."""

    name = "oracle"
    description = "forget-set ascent + fine-tuning on remaining training data (needs retain data)"
    data = ("retain",)
    data_needs = "remaining training data"
    source = "reference (fine-tuning on the remaining data)"

    def aux_batches(self, ctx: MethodContext):
        for xb, yb in _retain_iter(ctx.data["retain"], ctx.config.retain_batch_size, ctx.generator):
            yield xb.to(ctx.device), torch.as_tensor(yb).long().to(ctx.device)


def _retain_iter(retain, batch_size: int, generator: torch.Generator):
    """Batches of ``retain`` (a Dataset, a DataLoader or ``(images, labels)``), reshuffled every pass, forever."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(retain, (tuple, list)) and len(retain) == 2 and isinstance(retain[0], torch.Tensor):
        retain = TensorDataset(retain[0], torch.as_tensor(retain[1]))
    if isinstance(retain, Dataset):
        if len(retain) == 0:
            raise RequestError("the retain data is empty")
        retain = DataLoader(retain, batch_size=batch_size, shuffle=True, generator=generator, drop_last=False)
    if not isinstance(retain, DataLoader):
        raise RequestError("retain must be a Dataset, a DataLoader or a tuple (images, labels)")
    while True:
        empty = True
        for batch in retain:
            empty = False
            yield batch
        if empty:
            raise RequestError("the retain data is empty")
