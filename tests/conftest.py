"""Shared pytest fixtures.

``shared_dir``: the project's ``shared`` folder (real datasets and weights, see shared/datasets/README.md),
taken from ``$L2UL_SHARED_DIR`` or ``<repo>/../shared``; tests that use it are marked ``shared`` and skip
cleanly when it is absent.
"""
import os
from pathlib import Path

import pytest


def _find_shared_dir():
    env = os.environ.get("L2UL_SHARED_DIR")
    candidates = [Path(env).expanduser()] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = _find_shared_dir()
    if d is None:
        pytest.skip("shared data folder absent (set L2UL_SHARED_DIR or place it at ../shared)")
    return d


def pytest_configure(config):
    """One torch thread for the test session: the tests' models are tiny, where intra-op threading costs more
    than it gains (measured on 2 cores: a small-CNN training step 2 ms with 1 thread, 370 ms with 2 while
    another process competes), and results do not depend on the thread count of a busy CI machine."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _l2ul_cache_dir(tmp_path_factory):
    """l2ul's cache (decoded datasets, synthesised proxy images) goes to a session folder, never ~/.cache."""
    if "L2UL_CACHE_DIR" not in os.environ:
        os.environ["L2UL_CACHE_DIR"] = str(tmp_path_factory.mktemp("l2ul-cache"))
    yield
