"""Model files: l2ul's own format and foreign checkpoints.

l2ul model files are single safetensors files: the :class:`~l2ul.models.NormalizedClassifier` state dict
plus metadata ``{"format": "l2ul-model", "version": "1", "meta": <JSON of model.l2ul_meta>}``. Reading one
never unpickles anything; the architecture is rebuilt by name from the registry.

Foreign checkpoints (a plain ``state_dict``, optionally inside ``{"state_dict": ...}`` or
``{"model": ...}``, from ``torch.save`` or safetensors) are read with ``torch.load(weights_only=True)``,
which refuses pickled code, and loaded strictly into a freshly built architecture.
"""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from ..errors import L2ULError, ModelFileError
from ..safety import PathLike, atomic_path, check_output_path, sha256_file
from . import NormalizedClassifier, create_model

__all__ = ["save_model", "load_model", "import_state_dict", "model_sha256", "FORMAT", "FORMAT_VERSION"]

FORMAT = "l2ul-model"
FORMAT_VERSION = 1
IMPORT_HINT = "import foreign weights with --arch NAME --weights PATH (l2ul.models.import_state_dict)"

#: sha256 hex digest of a model file (recorded in reports to identify the model a run started from)
model_sha256 = sha256_file


def save_model(model: NormalizedClassifier, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` as an l2ul model file (atomic; refuses to overwrite unless ``overwrite``)."""
    if not isinstance(model, NormalizedClassifier) or not model.l2ul_meta.get("arch"):
        raise L2ULError("save_model needs a model built by l2ul (create_model / load_model / import_state_dict); "
                        "register a custom architecture with l2ul.models.register_model and build it by name")
    path = check_output_path(path, overwrite=overwrite)
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "meta": json.dumps(model.l2ul_meta)}
    with atomic_path(path) as tmp:
        safetensors.torch.save_model(model, str(tmp), metadata=metadata, force_contiguous=True)
        _canonical_header(tmp)
    return path


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys.

    safetensors writes its metadata map in an order that changes from process to process, so the same model
    saved twice would give files with different bytes and sha256 (which reports record to identify a
    model). The tensor data is untouched; the header keeps safetensors' 8-byte alignment.
    """
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)
        if len(text) == n:
            f.seek(8)
            f.write(text)
            return
        data = f.read()
        f.seek(0)
        f.write(len(text).to_bytes(8, "little") + text + data)
        f.truncate()


def load_model(path: PathLike, *, device: str = "cpu") -> NormalizedClassifier:
    """Read an l2ul model file written by :func:`save_model`; returns the model in eval mode on ``device``.

    Raises :class:`~l2ul.errors.ModelFileError` for a missing, truncated or corrupt file, a file that is not
    an l2ul model (e.g. a PyTorch pickle) or metadata that does not describe a known architecture.
    """
    path = _existing_file(path)
    kind = _sniff(path)
    if kind == "pickle":
        raise ModelFileError(f"{path} is not an l2ul model file: this looks like a PyTorch pickle; {IMPORT_HINT}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is truncated or corrupt (not a readable safetensors file: {_first_line(e)}); "
                             "restore it from a backup or re-create it") from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an l2ul model (no l2ul metadata); {IMPORT_HINT}")
    meta = _parse_meta(path, metadata)
    try:
        model = create_model(meta["arch"], meta["num_classes"], class_names=meta.get("class_names"),
                             mean=meta["mean"], std=meta["std"], **meta.get("arch_kwargs", {}))
    except L2ULError as e:
        raise ModelFileError(f"{path}: cannot rebuild its architecture: {e}") from None
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ModelFileError(f"{path}: stored tensors do not load ({_first_line(e)}); the file is damaged, "
                             "restore it from a backup or re-create it") from None
    if missing or unexpected:
        raise ModelFileError(f"{path}: stored tensors do not match its architecture {meta['arch']} "
                             f"(missing {_few(missing)}; unexpected {_few(unexpected)}); re-create the file")
    return model.to(device).eval()


def import_state_dict(arch: str, path: PathLike, *, num_classes: Optional[int] = None,
                      class_names: Optional[Sequence[str]] = None, mean: Optional[Sequence[float]] = None,
                      std: Optional[Sequence[float]] = None, **arch_kwargs: Any) -> NormalizedClassifier:
    """Build architecture ``arch`` and load a foreign checkpoint into it strictly; returns it in eval mode.

    ``path``: ``.safetensors`` or a ``torch.save`` file read with ``weights_only=True`` (pickled code is
    refused). The state dict may be wrapped in ``{"state_dict": ...}`` / ``{"model": ...}``, carry a
    ``module.`` (DataParallel) prefix, and have keys with or without the ``net.`` prefix of
    :class:`~l2ul.models.NormalizedClassifier`. ``num_classes=None`` infers it from the final layer.
    Mismatching keys or shapes raise :class:`~l2ul.errors.ModelFileError` naming them.
    """
    return create_model(arch, num_classes, weights=path, class_names=class_names, mean=mean, std=std,
                        **arch_kwargs).eval()


# ------------------------------------------------------------------------------- foreign checkpoints
# (used by create_model(weights=PATH))

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


def _parse_meta(path: Path, metadata: Mapping[str, str]) -> Dict[str, Any]:
    try:
        version = int(metadata.get("version", ""))
    except ValueError:
        raise ModelFileError(f"{path} has a damaged l2ul format version {metadata.get('version')!r}; "
                             "re-create the file") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer l2ul (format version {version}, this l2ul reads "
                             f"up to {FORMAT_VERSION}); upgrade l2ul")
    try:
        meta = json.loads(metadata["meta"])
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        for key in ("arch", "num_classes", "mean", "std"):
            if key not in meta:
                raise ValueError(f"no {key!r}")
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path} has damaged l2ul metadata ({e}); re-create the file") from None
    return meta


def _few(items: List[str], n: int = 5) -> str:
    shown = ", ".join(items[:n]) if items else "none"
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
