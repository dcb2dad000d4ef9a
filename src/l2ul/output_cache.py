"""A file cache of a model's outputs on a dataset: the original model's figures are computed once per model
and data, not on every request.

Every deletion request evaluates the *original* model on D_r and D_test beside the unlearned one (the
"before" figures), and the ``repair`` method distils from the original's logits on its proxy images. Both
are the same for every request on the same model and data, and cost most of a request on a CPU (tens of
thousands of forward passes; BENCHMARKS.md, speed). :func:`cached_predict` is
:func:`l2ul.evaluation.predict` with a file cache keyed by content, so a stale entry cannot be returned:

- the model's state dict (:func:`l2ul.synthesis.state_dict_hash`: any change of a weight or a running
  statistic is a new key);
- the exact input tensors and labels the loader yields (read once to hash them: the cheap part of a
  prediction, compared with the forward passes);
- everything that may change the last bits of the logits: the batch size, the device, the torch version
  and its intra-op thread count. A cache hit therefore returns exactly what the computation would, so
  results are bit-identical with the cache on and off (``tests/test_output_cache.py``).

Files go to ``<$L2UL_CACHE_DIR or ~/.cache/l2ul>/outputs/<key>.safetensors`` (written atomically; a
damaged or foreign file is recomputed and rewritten; an unwritable folder only costs the recomputation).
The folder is safe to delete at any time. ``L2UL_CACHE=0`` in the environment turns the cache off.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .evaluation import DataLike, Predictions, as_loader, predict
from .safety import atomic_path

__all__ = ["cached_predict", "cached_head_features", "cache_enabled", "outputs_cache_dir"]

#: Part of every key: bumped if what is stored for a key changes.
FORMAT = "1"


def cache_enabled(enabled: Optional[bool] = None) -> bool:
    """``enabled`` if given, else whether ``$L2UL_CACHE`` is unset or not ``0``/``false``/``off``."""
    if enabled is not None:
        return bool(enabled)
    return os.environ.get("L2UL_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


def outputs_cache_dir(cache_dir: Union[str, Path, None] = None) -> Path:
    from .data import default_cache_dir

    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "outputs"


def _key(model: nn.Module, data: DataLike, batch_size: int, device: torch.device) -> str:
    from .synthesis import state_dict_hash

    h = hashlib.sha256(f"l2ul-outputs:{FORMAT}:{torch.__version__}:{torch.get_num_threads()}:{device}:"
                       f"{int(batch_size)}:{state_dict_hash(model)}".encode())
    n = 0
    for batch in as_loader(data, batch_size):
        x, y = batch[0], batch[1]
        x = torch.as_tensor(x).detach().cpu().contiguous()
        y = torch.as_tensor(y).detach().cpu().long().contiguous()
        h.update(f"\0{x.dtype}\0{tuple(x.shape)}\0".encode())
        h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b"")
        h.update(y.numpy().tobytes())
        n += int(x.shape[0])
    return f"{h.hexdigest()[:40]}-{n}"


def _read_tensors(path: Path, key: str, names) -> Optional[dict]:
    """The tensors ``names`` of the cache file at ``path`` if it holds ``key``, else ``None``."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            return {n: f.get_tensor(n) for n in names}
    except Exception:  # a damaged or foreign cache file is ignored and rewritten
        return None


def _write_tensors(path: Path, key: str, tensors: dict) -> None:
    from safetensors.torch import save_file

    try:
        with atomic_path(path) as tmp:
            save_file({n: t.contiguous() for n, t in tensors.items()}, str(tmp), metadata={"key": key, "format": FORMAT})
    except OSError:
        pass  # an unwritable cache folder only costs the recomputation next time


def _read(path: Path, key: str) -> Optional[Predictions]:
    got = _read_tensors(path, key, ("logits", "labels"))
    if got is None:
        return None
    logits, labels = got["logits"], got["labels"]
    if logits.shape[0] != labels.shape[0] or logits.shape[0] != int(key.rsplit("-", 1)[1]):
        return None
    return Predictions(logits, labels)


def cached_predict(model: nn.Module, data: DataLike, *, batch_size: Optional[int] = None,
                   device: Union[str, torch.device, None] = None, enabled: Optional[bool] = None,
                   cache_dir: Union[str, Path, None] = None, progress: Optional[str] = None) -> Predictions:
    """:func:`l2ul.evaluation.predict`, read from the outputs cache when this model already ran on exactly
    these inputs with these settings (see the module docstring), else computed and stored.
    ``predictions.from_cache`` tells which."""
    if not cache_enabled(enabled):
        return _marked(predict(model, data, batch_size=batch_size, device=device, progress=progress), False)
    from .config import default_eval_batch

    dev = torch.device(device) if device is not None else next(
        (t.device for t in model.parameters()), torch.device("cpu"))
    if batch_size is None:
        batch_size = default_eval_batch(dev)
    key = _key(model, data, batch_size, dev)
    path = outputs_cache_dir(cache_dir) / f"{key}.safetensors"
    hit = _read(path, key)
    if hit is not None:
        return _marked(hit, True)
    out = predict(model, data, batch_size=batch_size, device=device, progress=progress)
    _write_tensors(path, key, {"logits": out.logits, "labels": out.labels})
    return _marked(out, False)


def _marked(p: Predictions, from_cache: bool) -> Predictions:
    object.__setattr__(p, "from_cache", from_cache)   # Predictions is a frozen dataclass
    return p


def cached_head_features(model: nn.Module, head: nn.Module, images, *, batch_size: int,
                         device: Union[str, torch.device], enabled: Optional[bool] = None,
                         cache_dir: Union[str, Path, None] = None) -> torch.Tensor:
    """The inputs of ``head`` (a layer of ``model``) on ``images`` (a tensor, or data as for
    :func:`cached_predict`), float64 on the CPU (:func:`l2ul.head_edit.head_features`), from the same cache as
    :func:`cached_predict` under a key that also names the layer: ``repair --forget-phase head_edit`` reads the
    original model's features of its proxy images once per model and proxy, as the repair reads the teacher
    logits, and a request whose result differs from the original only in that layer is evaluated from the
    original's features of D_r and D_test (:mod:`l2ul.request_figures`)."""
    from .head_edit import head_features

    dev = torch.device(device)
    data = (images, torch.zeros(images.shape[0], dtype=torch.long)) if isinstance(images, torch.Tensor) else images
    if not cache_enabled(enabled):
        return head_features(model, head, data, batch_size, dev)
    name = next((n for n, m in model.named_modules() if m is head), "?")
    base = _key(model, data, batch_size, dev)                   # "<hash>-<number of images>"
    key = "features-" + hashlib.sha256(f"{name}:{base}".encode()).hexdigest()[:40]
    path = outputs_cache_dir(cache_dir) / f"{key}.safetensors"
    hit = _read_tensors(path, key, ("features",))
    if hit is not None and hit["features"].shape[0] == int(base.rsplit("-", 1)[1]):
        return hit["features"]
    feats = head_features(model, head, data, batch_size, dev)
    _write_tensors(path, key, {"features": feats})
    return feats
