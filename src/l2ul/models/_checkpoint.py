"""Reading foreign checkpoints (used by ``create_model(weights=PATH)``), shared file helpers, and
:func:`check_finite_model`, the check that a model's tensors are usable.

A foreign checkpoint is a plain ``state_dict``, optionally inside ``{"state_dict": ...}`` or
``{"model": ...}``, from ``torch.save`` (read with ``torch.load(weights_only=True)``, which refuses pickled
code) or safetensors; it is loaded strictly into a freshly built architecture.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import ModelFileError
from ..safety import PathLike
from .classifier import NormalizedClassifier


def _read_checkpoint(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Tensors of the network (keys normalised to ``net``'s names) and any stored ``mean``/``std``."""
    path = _existing_file(path)
    kind = _sniff(path)
    if kind == "safetensors" or path.suffix == ".safetensors":
        try:
            obj: Any = safetensors.torch.load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelFileError(f"{path} is truncated or corrupt (not a readable safetensors file: "
                                 f"{_first_line(e)}); restore it or export the weights again") from None
    else:
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if kind == "pickle":
                raise ModelFileError(
                    f"{path} holds pickled Python objects, not just tensors (e.g. a whole model or code), and "
                    "l2ul refuses to execute pickled code; in a trusted environment re-save only the weights "
                    "with torch.save(model.state_dict(), PATH) or safetensors") from None
            raise ModelFileError(f"{path} is not a PyTorch checkpoint or safetensors file ({_first_line(e)}); "
                                 "give a state_dict saved with torch.save or safetensors") from None
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise ModelFileError(f"cannot read {path} as a PyTorch checkpoint ({_first_line(e)}); the file is "
                                 "truncated or corrupt, or not a checkpoint") from None
    return _normalise_keys(_unwrap(obj, path))


def _unwrap(obj: Any, path: Path) -> Dict[str, torch.Tensor]:
    for _ in range(4):
        inner = next((obj[k] for k in ("state_dict", "model_state_dict", "model")
                      if isinstance(obj, Mapping) and isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ModelFileError(f"{path} holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(f"{path} holds no tensors (top-level keys: {_few([str(k) for k in obj])}); "
                             "expected a state_dict or {'state_dict': ...}")
    return tensors


def _normalise_keys(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    out = {}
    for key, value in state.items():
        while key.startswith(("module.", "_orig_mod.")):  # DataParallel, torch.compile
            key = key.split(".", 1)[1]
        out[key] = value
    if not any(k.startswith("net.") for k in out):
        return out, {}
    norm = {k: out.pop(k) for k in ("mean", "std") if k in out}
    return {(k[4:] if k.startswith("net.") else k): v for k, v in out.items()}, norm


def _infer_num_classes(state: Dict[str, torch.Tensor], path: PathLike, model_keys: Sequence[str] = ()) -> int:
    """Output count of the classifier: the last weight matrix of the architecture (``model_keys``, in
    registration order) that the checkpoint holds, else the last one in the file's own order."""
    for key in [*reversed(model_keys), *reversed(list(state))]:
        if key in state and key.endswith("weight") and state[key].dim() >= 2:
            return int(state[key].shape[0])
    raise ModelFileError(f"cannot infer the number of classes from {path}; pass num_classes (--num-classes)")


def _load_net_state(model: NormalizedClassifier, state: Dict[str, torch.Tensor], source: PathLike) -> None:
    """Strictly load ``state`` into ``model.net`` (BatchNorm ``num_batches_tracked`` may be absent)."""
    expected = model.net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}"
                  for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        problems = [f"{label} {_few(keys)}" for label, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches (file vs model)", mismatched)) if keys]
        meta = model.l2ul_meta
        raise ModelFileError(f"{source} does not fit {meta['arch']} with {meta['num_classes']} classes: "
                             f"{'; '.join(problems)}; check --arch, --num-classes and the architecture options")
    model.net.load_state_dict({**expected, **state}, strict=True)


# --------------------------------------------------------------------------------------------- helpers

def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; check the path")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file; give the path of a model file")
    return path


def _sniff(path: Path) -> str:
    """'pickle' (torch.save zip or legacy pickle), 'safetensors', or 'unknown', from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"
    return "unknown"


def _few(items: List[str], n: int = 5) -> str:
    shown = ", ".join(items[:n]) if items else "none"
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ------------------------------------------------------------------------------------------ tensor checks

def check_finite_model(model: nn.Module, *, source: Optional[PathLike] = None) -> None:
    """Refuse a model whose tensors cannot be right: raises :class:`~l2ul.errors.ModelFileError` naming the
    first parameter or buffer (in state-dict order) that holds NaN or inf, a BatchNorm ``running_var``
    below 0, or a :class:`NormalizedClassifier` normalisation ``std`` that is not positive.

    ``source`` (a path) prefixes the message. Tensors on the meta device are skipped. Works on any device;
    meant for models read from files and for in-memory models before they are used or saved.
    """
    where = f"{source}: " if source is not None else ""
    stds = {f"{name}.std" if name else "std" for name, m in model.named_modules()
            if isinstance(m, NormalizedClassifier)}
    for name, t in model.state_dict(keep_vars=True).items():
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        t = t.detach()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelFileError(f"{where}tensor {name} holds {bad} non-finite value(s) (NaN or inf) of "
                                 f"{t.numel()}: the weights are damaged (e.g. by a diverged run); restore the "
                                 "model from a backup or re-create it")
        if name.endswith("running_var") and t.is_floating_point() and bool((t < 0).any()):
            raise ModelFileError(f"{where}tensor {name} (a BatchNorm running variance) holds negative values "
                                 f"(min {float(t.min()):.4g}); variances cannot be negative: the file is damaged, "
                                 "restore it from a backup or re-create it")
        if name in stds and not bool((t > 0).all()):
            raise ModelFileError(f"{where}tensor {name} (the input normalisation std) must be positive on every "
                                 f"channel, got {[round(v, 6) for v in t.flatten().tolist()[:8]]}; the images are "
                                 "divided by it: restore the file from a backup or re-create it")
