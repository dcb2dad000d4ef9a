"""Which training instances a benchmark measures and trains on: the forget sets of continual requests, the
fixed D_r evaluation subset and the oracle's pool (:func:`eval_splits`), and the loaders that read them."""
from __future__ import annotations

import hashlib
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Subset

from ..data import ArrayImageDataset, stack
from ..errors import ConfigError, DataError

__all__ = ["RETAIN_EVAL_SEED", "eval_splits", "continual_forget_sets", "index_hash", "eval_data",
           "remaining_data", "ArrayBatches"]

#: seed of the D_r evaluation subset (and of the oracle-pool cap); independent of the grid seeds
RETAIN_EVAL_SEED = 12345
#: images held in memory for evaluation at most (bytes); larger splits are read through a DataLoader
_STACK_LIMIT = 2 << 30


def eval_splits(n_train: int, forget_sets: Iterable[Sequence[int]], retain_eval_size: Optional[int], *,
                oracle_pool_size: Optional[int] = None, seed: int = RETAIN_EVAL_SEED
                ) -> Tuple[np.ndarray, np.ndarray]:
    """The D_r evaluation subset and the oracle's training pool, as ascending training indices.

    ``retain_eval``: ``retain_eval_size`` indices (all available ones if fewer, or if ``None``) drawn with
    ``numpy.random.default_rng(seed)`` from the training indices outside the union of ``forget_sets``.
    ``oracle_pool``: the remaining indices outside that union and outside ``retain_eval``; if
    ``oracle_pool_size`` is given, a random subset of that size (``default_rng((seed, 1))``).
    The three sets (forget union, ``retain_eval``, ``oracle_pool``) are pairwise disjoint.
    """
    excluded = np.zeros(n_train, dtype=bool)
    for ids in forget_sets:
        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n_train):
            raise DataError(f"forget ids must lie in 0..{n_train - 1}")
        excluded[ids] = True
    available = np.flatnonzero(~excluded)
    if len(available) == 0:
        raise DataError("no training data is left outside the forget sets to measure D_r accuracy; "
                        "forget fewer instances")
    if retain_eval_size is not None:
        if isinstance(retain_eval_size, bool) or int(retain_eval_size) < 1:
            raise ConfigError(f"retain_eval_size must be a positive integer or None (all), got {retain_eval_size!r}")
        size = min(int(retain_eval_size), len(available))
    else:
        size = len(available)
    rng = np.random.default_rng(seed)
    retain_eval = np.sort(rng.choice(available, size=size, replace=False)) if size < len(available) else available
    pool_mask = ~excluded
    pool_mask[retain_eval] = False
    pool = np.flatnonzero(pool_mask)
    if oracle_pool_size is not None:
        if isinstance(oracle_pool_size, bool) or int(oracle_pool_size) < 1:
            raise ConfigError(f"oracle_pool_size must be a positive integer or None, got {oracle_pool_size!r}")
        if int(oracle_pool_size) < len(pool):
            pool = np.sort(np.random.default_rng((seed, 1)).choice(pool, size=int(oracle_pool_size), replace=False))
    return retain_eval.astype(np.int64), pool.astype(np.int64)


def continual_forget_sets(n_train: int, requests: int, k: int, seed: int) -> List[List[int]]:
    """``requests`` disjoint forget sets of ``k`` training indices each (each ascending), drawn at once from
    ``numpy.random.default_rng(seed).permutation(n_train)``; the first equals ``random_forget_ids(k, seed)``."""
    if requests < 1 or k < 1:
        raise ConfigError(f"continual unlearning needs requests >= 1 and k >= 1 (got {requests}, {k})")
    if requests * k > n_train:
        raise ConfigError(f"{requests} requests of {k} instances exceed the {n_train} training instances")
    perm = np.random.default_rng(seed).permutation(n_train)[:requests * k]
    return [sorted(int(i) for i in perm[r * k:(r + 1) * k]) for r in range(requests)]


def index_hash(idx: np.ndarray) -> str:
    """Short hash (16 hex) of a set of training indices (as int64 bytes, in the given order)."""
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def _base_dataset(ds: Dataset) -> Tuple[Dataset, Optional[list]]:
    base, idx = ds, None
    while isinstance(base, Subset):
        idx = [int(base.indices[i]) for i in idx] if idx is not None else [int(i) for i in base.indices]
        base = base.dataset
    return base, idx


def eval_data(ds: Dataset, indices: Optional[np.ndarray], batch_size: int, num_workers: int):
    """Evaluation data for :func:`~l2ul.evaluation.predict`: stacked tensors for in-memory arrays (fast), else
    a DataLoader."""
    n = len(ds) if indices is None else len(indices)
    base, _ = _base_dataset(ds)
    if isinstance(base, ArrayImageDataset):
        per_image = int(np.prod(base.images.shape[1:])) * 4
        if n * per_image <= _STACK_LIMIT:
            return stack(ds, range(n) if indices is None else indices)
    sub = ds if indices is None else Subset(ds, [int(i) for i in indices])
    return DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=num_workers)


class ArrayBatches(Dataset):
    """Training instances ``indices`` of an in-memory array dataset, read a whole batch per ``__getitem__``
    (one indexing op instead of one call per image; the dataset's transform still applies per image)."""

    def __init__(self, base: ArrayImageDataset, indices: Sequence[int]):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions):
        return self.base.get_batch(self.indices[np.asarray(positions, dtype=np.int64)])


def remaining_data(train: Dataset, indices: np.ndarray, batch_size: int, seed: int, num_workers: int):
    """The remaining data a method like ``oracle`` trains on: a shuffling loader (seeded with ``seed``) over
    ``train`` restricted to ``indices``; batched reads for in-memory arrays."""
    if len(indices) == 0:
        return None
    base, mapped = _base_dataset(train)
    gen = torch.Generator().manual_seed(seed)
    if isinstance(base, ArrayImageDataset):
        idx = np.asarray(mapped, dtype=np.int64)[indices] if mapped is not None else indices
        ds = ArrayBatches(base, idx)
        sampler = BatchSampler(RandomSampler(ds, generator=gen), batch_size, drop_last=False)
        return DataLoader(ds, sampler=sampler, batch_size=None)
    return DataLoader(Subset(train, [int(i) for i in indices]), batch_size=batch_size, shuffle=True,
                      generator=gen, num_workers=num_workers)
