"""Proxy data for methods that repair on unlabeled images (``repair``), taken from the test split.

A benchmark has no separate unlabeled pool, so ``proxy_test_split=N`` sets aside a fixed random ``N`` test
images (``numpy.random.default_rng(PROXY_SPLIT_SEED)``) as the proxy; D_test (and the membership figures
that use it) is then measured on the *other* test images only, for every method of the run, so no method is
evaluated on images it distilled on. Labels of the proxy images are never read, except by the ``unseen``
task, which uses the same split with its labels as its reference set (:func:`proxy_reference`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..data import DatasetBundle, stack
from ..errors import ConfigError
from .splits import index_hash

PROXY_SPLIT_SEED = 23456


def split_test(bundle: DatasetBundle, n: Optional[int]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(proxy_indices, eval_indices)`` of the test split (ascending), or ``(None, None)`` without ``n``."""
    if not n:
        return None, None
    if isinstance(n, bool) or int(n) < 1 or int(n) >= bundle.n_test:
        raise ConfigError(f"proxy_test_split must be between 1 and {bundle.n_test - 1} (test images), got {n!r}",
                          field="proxy_test_split")
    perm = np.random.default_rng(PROXY_SPLIT_SEED).permutation(bundle.n_test)
    return np.sort(perm[: int(n)]), np.sort(perm[int(n):])


def proxy_images(bundle: DatasetBundle, proxy_idx: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    """The proxy images (float [N, C, H, W] in [0, 1]), tagged with their source for the records."""
    if proxy_idx is None:
        return None
    images, _ = stack(bundle.test, [int(i) for i in proxy_idx])
    images.l2ul_source = (f"{len(proxy_idx)} test images (default_rng({PROXY_SPLIT_SEED}) split; D_test is the "
                          f"other {bundle.n_test - len(proxy_idx)})")
    return images


def proxy_reference(bundle: DatasetBundle, proxy_idx: Optional[np.ndarray]) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The proxy split *with its labels* ``(images, labels)``: the reference set of the ``unseen`` task, whose
    losses under the original model stand for data it never saw (D_test stays the other test images)."""
    if proxy_idx is None:
        return None
    return stack(bundle.test, [int(i) for i in proxy_idx])


def describe(proxy_idx: np.ndarray, test_eval: np.ndarray) -> Dict[str, Any]:
    """The ``settings.json`` entry for D_test when part of the test split is the proxy."""
    return {"size": int(len(test_eval)), "proxy_size": int(len(proxy_idx)),
            "description": (f"D_test is {len(test_eval)} test images; the other {len(proxy_idx)} (a fixed random "
                            f"split, numpy default_rng({PROXY_SPLIT_SEED})) are the unlabeled proxy of methods "
                            "that use one, and are never evaluated on")}


def hashed(proxy_idx: Optional[np.ndarray]) -> Dict[str, Any]:
    """What the results depend on (empty without a proxy split, so older folders keep their hash)."""
    if proxy_idx is None:
        return {}
    return {"proxy_test_split": int(len(proxy_idx)), "proxy_test_sha": index_hash(proxy_idx)}


def method_data(method_obj, proxy: Optional[torch.Tensor]) -> Dict[str, Any]:
    """``{"proxy": images}`` for a method that uses proxy data, else nothing."""
    if proxy is not None and "proxy" in method_obj.data + method_obj.optional_data:
        return {"proxy": proxy}
    return {}
