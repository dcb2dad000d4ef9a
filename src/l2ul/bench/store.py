"""The results folder of a benchmark: its settings and their hash (:func:`common_settings`,
:func:`settings_hash`, with the legacy hashes of folders written before a config field existed), the
JSON-lines records (read, append with fsync, atomic rewrite), the CSV, opening or resuming a folder
(:func:`open_out_dir`) and the per-method checkpoints of continual runs."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..config import ACCELERATOR_EVAL_BATCH, METHOD_GROUPS, REPAIR_STEPS, UnlearnConfig
from ..data import DatasetBundle
from ..engine import ENGINE_REVISION
from ..errors import L2ULError
from ..methods import get_method
from ..reports import to_jsonable, write_json
from ..safety import atomic_write
from .machine import machine_info, now
from .splits import RETAIN_EVAL_SEED, index_hash

__all__ = ["model_fingerprint", "settings_hash", "common_settings", "open_out_dir", "read_jsonl", "rewrite_jsonl",
           "append_jsonl", "write_text", "write_csv", "checkpoint_path", "save_checkpoint", "checkpoint_request",
           "load_checkpoint"]

#: config fields that do not change results and so are left out of the settings hash
_UNHASHED_CONFIG = ("seed", "device")
#: config fields added after results folders were first written, each with the value that reproduces the
#: behaviour from before it existed. A folder whose settings predate such a field resumes when the run uses
#: that value (its records are the same computation), and keeps its original settings hash.
_LEGACY_CONFIG_DEFAULTS = {"forget_loss": "ascent"}
#: the data-free synthesis's fields (read only when a method synthesises its proxy)
_SYNTH_PREFIX = "synth_"


# ----------------------------------------------------------------------------------------------- settings
def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the names and raw bytes of ``model.state_dict()`` (identifies the original model)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def settings_hash(settings: Mapping[str, Any]) -> str:
    """Short hash (16 hex) of the canonical JSON of ``settings``."""
    text = json.dumps(to_jsonable(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _hashed_config(config: UnlearnConfig, methods: List[str], task: str = "misclassify",
                   proxy: bool = False, ks: Sequence[int] = ()) -> Dict[str, Any]:
    # fields added after 0.2 enter the hash only when set, so folders written by 0.2 keep resuming; the
    # fields of a method-specific group (METHOD_GROUPS) only when one of the folder's methods reads them, and
    # a field that only some tasks read only for those. With a proxy split no method synthesises, so the
    # synth_* fields (whose defaults changed in 0.4) do not enter the hash of such a folder.
    read = {g for m in methods for g in get_method(m).config_groups}
    hashed = config.hashed_dict(exclude=_UNHASHED_CONFIG, drop_groups=[g for g in METHOD_GROUPS if g not in read],
                                task=task)
    if hashed.get("eval_batch_size", 0) is None:
        # chosen by device since 0.4 (64 on the CPU): hashed as the 1024 of before, so folders keep resuming.
        # Like the device, it changes how predictions are batched, not the computation: the logits of 64 and
        # 1024 were bit-identical on the CIFAR ResNets and a 224-px ResNet-18 (BENCHMARKS.md section 6)
        hashed["eval_batch_size"] = ACCELERATOR_EVAL_BATCH
    if "repair_steps" in hashed and hashed["repair_steps"] is None and ks:
        # automatic since 0.4.0 (300, or 600 from LARGE_REQUEST instances on): hashed as the budget it resolves to
        # when that is one number for every k of the folder, so a folder of 300 steps (where the field is left
        # out, its old default) or of --repair-steps 600 at k = 128 resumes: its records are the same computation
        budgets = {config.repair_budget(int(k)) for k in ks}
        if len(budgets) == 1:
            hashed["repair_steps"] = budgets.pop()
            if hashed["repair_steps"] == REPAIR_STEPS:
                del hashed["repair_steps"]
    return {k: v for k, v in hashed.items() if not (proxy and k.startswith(_SYNTH_PREFIX))}


def _legacy_hashed(hashed: Mapping[str, Any]) -> Dict[str, Any]:
    """``hashed`` as a folder written before the :data:`_LEGACY_CONFIG_DEFAULTS` fields existed holds it."""
    cfg = {k: v for k, v in hashed["config"].items()
           if not (k in _LEGACY_CONFIG_DEFAULTS and v == _LEGACY_CONFIG_DEFAULTS[k])}
    return {**hashed, "config": cfg}


def _model_desc(model: nn.Module) -> Dict[str, Any]:
    meta = getattr(model, "l2ul_meta", None) or {}
    return {"class": type(model).__name__, "arch": meta.get("arch"),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def common_settings(model: nn.Module, bundle: DatasetBundle, config: UnlearnConfig, *, mode: str,
                    retain_eval_size, retain_eval: np.ndarray, oracle_pool: np.ndarray, oracle_pool_size,
                    forget_desc: str, extra_hashed: Dict[str, Any], device: torch.device,
                    config_name: Optional[str], methods: List[str], notes: List[str]) -> Dict[str, Any]:
    """The ``settings.json`` of a run: ``hashed`` (everything its numbers depend on), its ``settings_hash``,
    and the descriptions the outputs' headers state (model, data splits, machine, date, notes)."""
    hashed = {
        "mode": mode,
        "engine_revision": ENGINE_REVISION,
        "model_sha256": model_fingerprint(model),
        "model": _model_desc(model),
        "dataset": {"name": bundle.name, "n_train": bundle.n_train, "n_test": bundle.n_test,
                    "num_classes": bundle.num_classes},
        "config": _hashed_config(config, methods, extra_hashed.get("task", "misclassify"),
                                 proxy="proxy_test_split" in extra_hashed,
                                 ks=extra_hashed.get("ks") or ([extra_hashed["k"]] if "k" in extra_hashed else [])),
        "retain_eval_size_requested": retain_eval_size,
        "retain_eval_seed": RETAIN_EVAL_SEED,
        "retain_eval_sha": index_hash(retain_eval),
        "oracle_pool_size_requested": oracle_pool_size,
        **extra_hashed,
    }
    return {
        "settings_hash": settings_hash(hashed),
        "hashed": hashed,
        "mode": mode,
        "methods": methods,
        "config_name": config_name,
        "config": config.to_dict(),
        "model": {**_model_desc(model), "sha256": hashed["model_sha256"]},
        "dataset": {**hashed["dataset"], "description": bundle.description},
        "forget_sets": forget_desc,
        "retain_eval": {
            "size": int(len(retain_eval)), "requested": retain_eval_size, "seed": RETAIN_EVAL_SEED,
            "sha256_16": hashed["retain_eval_sha"],
            "description": (f"D_r accuracy is measured on a fixed random subset of {len(retain_eval)} training "
                            f"instances (numpy default_rng({RETAIN_EVAL_SEED})), drawn from the training data "
                            "outside every forget set of this run; not on the full remaining set"),
        },
        "oracle_pool": {
            "size": int(len(oracle_pool)), "requested": oracle_pool_size,
            "description": ("remaining-data methods (oracle) fine-tune on training data outside the D_r "
                            "evaluation subset and outside every forget set of this run"),
        },
        "test": {"size": bundle.n_test, "description": "D_test is the whole test set"},
        # results are bit-identical only for the same thread count (see README, Guarantees)
        "machine": {**machine_info(device), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "created": now(),
        "notes": notes,
    }


# ------------------------------------------------------------------------------------------------- files
def read_jsonl(path: Path) -> Tuple[List[Dict[str, Any]], bool]:
    """Records of a JSON-lines file and whether it must be rewritten: an unreadable or unterminated trailing
    line (a killed write) is dropped or re-terminated."""
    if not path.exists():
        return [], False
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    records, dropped = [], bool(text) and not text.endswith("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                dropped = True   # interrupted write of the last line
                continue
            raise L2ULError(f"{path} line {i + 1} is not valid JSON; the file is damaged: move it away and "
                            "rerun (finished cells will be recomputed) or use a new --out") from None
        if not isinstance(rec, dict):
            raise L2ULError(f"{path} line {i + 1} is not a record; use a new --out")
        records.append(rec)
    return records, dropped


def rewrite_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` atomically by ``records``, one JSON line each."""
    text = "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in records)
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line, flushed and fsynced."""
    line = json.dumps(to_jsonable(record), allow_nan=False) + "\n"
    with open(path, "ab") as f:
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))


def write_csv(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """``records`` as CSV: the union of their keys in first-seen order, ``None`` as an empty cell."""
    keys: List[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    write_text(path, buf.getvalue())


def read_settings(spath: Path, fix: str = "") -> Dict[str, Any]:
    """A folder's ``settings.json`` as a dict; a one-line :class:`L2ULError` (ending in ``fix``) if it is not
    valid JSON or not a JSON object."""
    try:
        settings = json.loads(spath.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise L2ULError(f"{spath} is not valid JSON{fix}") from None
    if not isinstance(settings, dict):
        raise L2ULError(f"{spath} is not an l2ul bench settings file (not a JSON object){fix}")
    return settings


def _adopt_old_settings(out: Path, spath: Path, settings: Dict[str, Any]) -> None:
    """Check ``settings`` against the folder's ``settings.json``: adopt a legacy folder's hash, keep its
    creation date and methods; raise :class:`L2ULError` for different settings."""
    h = settings["settings_hash"]
    old = read_settings(spath, "; use a new --out")
    if old.get("settings_hash") != h:
        legacy = _legacy_hashed(settings["hashed"])
        if settings_hash(legacy) == old.get("settings_hash"):
            # written before a _LEGACY_CONFIG_DEFAULTS field existed, by the same computation: keep its hash
            settings["hashed"], settings["settings_hash"] = legacy, old["settings_hash"]
            h = settings["settings_hash"]
    if old.get("settings_hash") != h:
        diff = sorted(k for k in set(old.get("hashed", {})) | set(settings["hashed"])
                      if old.get("hashed", {}).get(k) != settings["hashed"].get(k))
        raise L2ULError(f"{out} holds results of different settings (differing: {', '.join(diff) or 'unknown'}; "
                        f"hash {old.get('settings_hash')} vs {h}); use a new --out for these settings, or "
                        "rerun with the original ones to resume")
    settings["created"] = old.get("created", settings["created"])
    settings["methods"] = list(old.get("methods", [])) + [m for m in settings["methods"]
                                                          if m not in old.get("methods", [])]


def open_out_dir(out_dir, settings: Dict[str, Any], jsonl_name: str) -> Tuple[Path, List[Dict[str, Any]]]:
    """Create/check ``out_dir``; refuse different settings; return the finished records of these settings."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise L2ULError(f"--out {out} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    spath = out / "settings.json"
    if spath.exists():
        _adopt_old_settings(out, spath, settings)
    h = settings["settings_hash"]
    path = out / jsonl_name
    records, dropped = read_jsonl(path)
    foreign = [r for r in records if r.get("settings_hash") != h]
    if foreign:
        raise L2ULError(f"{path} holds {len(foreign)} record(s) of other settings (hash "
                        f"{foreign[0].get('settings_hash')}, this run {h}); use a new --out")
    if dropped:
        rewrite_jsonl(path, records)
    write_json(spath, settings)
    return out, records


# ------------------------------------------------------------------------------------------- checkpoints
def checkpoint_path(out: Path, method: str) -> Path:
    """Where a continual run keeps ``method``'s model between requests."""
    return out / "checkpoints" / f"{method}.safetensors"


def save_checkpoint(path: Path, model: nn.Module, request: int, settings_hash: str) -> None:
    """The model's full state (weights and buffers) after ``request``, written atomically."""
    from safetensors.torch import save_file

    from ..safety import atomic_path

    state = {n: t.detach().to("cpu").contiguous().clone() for n, t in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"request": str(int(request)), "settings_hash": settings_hash})


def checkpoint_request(path: Path, settings_hash: str) -> Optional[int]:
    """The request number a checkpoint holds, or ``None`` if it is absent, unreadable or from other settings."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("settings_hash") != settings_hash:
            return None
        return int(meta["request"])
    except Exception:   # a damaged checkpoint only costs a restart of that method
        return None


def load_checkpoint(path: Path, model: nn.Module) -> None:
    """Load a checkpoint's state into ``model`` (on the device of its parameters)."""
    from safetensors.torch import load_file

    device = next(model.parameters()).device
    model.load_state_dict({n: t.to(device) for n, t in load_file(str(path)).items()})
