"""Benchmarks: the method x k x seed grid on one original model (:func:`run_bench`) and successive deletion
requests on one model (:func:`run_continual`); both resumable. CLI glue for ``l2ul bench`` at the bottom.

What is measured, and on what
    D_f: ``k`` training instances per request, ``random_forget_ids(k, n_train, seed)``, un-augmented
    (``bundle.stack_train``). D_test: the whole test set. D_r: a *fixed random subset* (``retain_eval_size``
    instances, drawn with ``numpy.random.default_rng(12345)``, independent of the grid seeds) of the training
    data outside *every* forget set of the run, so each cell is measured on the same D_r instances and none
    of them is ever forgotten. The oracle (and any method that needs remaining data) fine-tunes on the
    training data outside that D_r subset and outside every forget set (optionally a random subset of
    ``oracle_pool_size``), so it is never evaluated on its own training batches. The outputs state this.

Shared adversarial examples
    For each (k, seed) the bench generates one adversarial set on the original model, exactly as the engine
    would (:func:`l2ul.engine.make_adversarial_set`, seeded with the cell's seed) and passes it
    as ``adversarial=`` to every method that uses adversarial examples (``adv``, ``l2ul``). Both therefore
    train on identical examples, take the same code path in the engine (so a method's result does not depend
    on which other methods are in the grid or on a resume), and both report the *generation time of that one
    set* as ``time_adversarial`` (the same number). MAS importance is likewise computed once per (k, seed) by
    the first method that needs it and passed to the others.

Seeds
    The grid seed of a cell seeds its forget set, the engine (``config.seed`` is replaced by it: target
    labels, PGD starts, batch order) and the MIA attack's subsampling.

Files (all written atomically; ``results.jsonl`` is appended line by line with fsync)
    ``settings.json`` (what the numbers depend on and its hash), ``results.jsonl`` (one record per finished
    cell), ``cells/<method>_k<k>_s<seed>.json`` (per-instance outcome, forget ids, engine summary),
    ``results.csv``, ``results.json`` (settings + records), ``table.md`` (header + paper table),
    ``plot_vs_k.png``, ``plot_phase_times.png``. Continual mode: ``continual.jsonl``, ``continual.json``,
    ``continual.md``, ``plot_continual.png``.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Subset

from .attacks import AdversarialSet
from .config import BN_MODES, FORGET_LOSSES, PRESETS, UnlearnConfig
from .data import ArrayImageDataset, DatasetBundle, stack
from .engine import ENGINE_REVISION, make_adversarial_set, resolve_device, unlearn
from .errors import ConfigError, DataError, L2ULError
from .evaluation import (
    Predictions,
    accuracy_from_predictions,
    agreement,
    evaluate_model,
    evaluate_unlearning,
    peak_memory,
    predict,
)
from .methods import get_method, list_methods
from .reports import (
    markdown_table,
    paper_table,
    plot_continual,
    plot_phase_times,
    plot_vs_k,
    to_jsonable,
    write_json,
)
from .requests import random_forget_ids
from .safety import atomic_write

__all__ = [
    "run_bench",
    "run_continual",
    "render_results",
    "eval_splits",
    "continual_forget_sets",
    "settings_hash",
    "model_fingerprint",
    "machine_info",
    "check_model_matches",
    "add_arguments",
    "main",
    "DEFAULT_METHODS",
    "DEFAULT_KS",
    "RETAIN_EVAL_SEED",
]

DEFAULT_METHODS = ("neggrad", "adv", "l2ul", "oracle")
DEFAULT_KS = (1, 8, 16, 32, 64, 128)
#: seed of the D_r evaluation subset (and of the oracle-pool cap); independent of the grid seeds
RETAIN_EVAL_SEED = 12345
#: config fields copied into every record
RECORD_CONFIG_FIELDS = ("lr", "pgd_eps", "pgd_steps", "adv_per_instance", "bn", "forget_loss", "reg_lambda",
                        "max_steps")
#: config fields that do not change results and so are left out of the settings hash
_UNHASHED_CONFIG = ("seed", "device")
#: config fields added after results folders were first written, each with the value that reproduces the
#: behaviour from before it existed. A folder whose settings predate such a field resumes when the run uses
#: that value (its records are the same computation), and keeps its original settings hash.
_LEGACY_CONFIG_DEFAULTS = {"forget_loss": "ascent"}
#: images held in memory for evaluation at most (bytes); larger splits are read through a DataLoader
_STACK_LIMIT = 2 << 30

Log = Callable[[str], Any]


# ------------------------------------------------------------------------------------------------ helpers
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


def _index_hash(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_info(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """Where the numbers were measured: processor, CPU count, torch threads, device (and GPU name)."""
    info: Dict[str, Any] = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _machine_line(m: Mapping[str, Any]) -> str:
    cpu = m.get("cpu_model") or m.get("processor") or "unknown CPU"
    s = (f"{cpu} ({m.get('cpu_count')} CPUs), torch {m.get('torch')} with {m.get('torch_threads')} threads, "
         f"device {m.get('device')}")
    if m.get("gpu"):
        s += f" ({m['gpu']})"
    return s


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _num_outputs(model: nn.Module, bundle: DatasetBundle, device: torch.device) -> int:
    x, _ = bundle.stack_train([0])
    out = predict(model, (x, torch.zeros(1, dtype=torch.int64)), device=device, batch_size=1)
    return out.num_classes


def check_model_matches(model: nn.Module, bundle: DatasetBundle, device=None) -> int:
    """Run one training image through ``model``; raise :class:`DataError` if its number of outputs differs
    from the dataset's class count. Returns the number of classes."""
    dev = torch.device(device) if device is not None else None
    n = _num_outputs(model, bundle, dev)
    if n != bundle.num_classes:
        raise DataError(f"the model has {n} outputs but dataset {bundle.name!r} has {bundle.num_classes} classes; "
                        "use the model trained on this dataset (or --num-classes matching it)")
    return n


def _model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself if all its tensors are on ``device``, else an eval-mode copy there."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device for t in tensors):
        return model
    return copy.deepcopy(model).to(device).eval()


def _base_dataset(ds: Dataset) -> Tuple[Dataset, Optional[list]]:
    base, idx = ds, None
    while isinstance(base, Subset):
        idx = [int(base.indices[i]) for i in idx] if idx is not None else [int(i) for i in base.indices]
        base = base.dataset
    return base, idx


def _eval_data(ds: Dataset, indices: Optional[np.ndarray], batch_size: int, num_workers: int):
    """Evaluation data for :func:`predict`: stacked tensors for in-memory arrays (fast), else a DataLoader."""
    n = len(ds) if indices is None else len(indices)
    base, _ = _base_dataset(ds)
    if isinstance(base, ArrayImageDataset):
        per_image = int(np.prod(base.images.shape[1:])) * 4
        if n * per_image <= _STACK_LIMIT:
            return stack(ds, range(n) if indices is None else indices)
    sub = ds if indices is None else Subset(ds, [int(i) for i in indices])
    return DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=num_workers)


class _ArrayBatches(Dataset):
    """Training instances ``indices`` of an in-memory array dataset, read a whole batch per ``__getitem__``
    (one indexing op instead of one call per image; the dataset's transform still applies per image)."""

    def __init__(self, base: ArrayImageDataset, indices: Sequence[int]):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions):
        return self.base.get_batch(self.indices[np.asarray(positions, dtype=np.int64)])


def _remaining_data(train: Dataset, indices: np.ndarray, batch_size: int, seed: int, num_workers: int):
    """The remaining data a method like ``oracle`` trains on: a shuffling loader (seeded with ``seed``) over
    ``train`` restricted to ``indices``; batched reads for in-memory arrays."""
    if len(indices) == 0:
        return None
    base, mapped = _base_dataset(train)
    gen = torch.Generator().manual_seed(seed)
    if isinstance(base, ArrayImageDataset):
        idx = np.asarray(mapped, dtype=np.int64)[indices] if mapped is not None else indices
        ds = _ArrayBatches(base, idx)
        sampler = BatchSampler(RandomSampler(ds, generator=gen), batch_size, drop_last=False)
        return DataLoader(ds, sampler=sampler, batch_size=None)
    return DataLoader(Subset(train, [int(i) for i in indices]), batch_size=batch_size, shuffle=True,
                      generator=gen, num_workers=num_workers)


def _methods(methods: Sequence[str]) -> List[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    out: List[str] = []
    for m in methods:
        name = get_method(m).name   # raises ConfigError for unknown names
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no methods given; choose from {', '.join(list_methods())}")
    return out


def _int_list(values: Iterable[Any], what: str, *, minimum: int) -> List[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
            raise ConfigError(f"{what} must be integers >= {minimum}, got {v!r}")
        if int(v) not in out:
            out.append(int(v))
    if not out:
        raise ConfigError(f"give at least one {what[:-1] if what.endswith('s') else what}")
    return out


def _hashed_config(config: UnlearnConfig) -> Dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in _UNHASHED_CONFIG}


def _legacy_hashed(hashed: Mapping[str, Any]) -> Dict[str, Any]:
    """``hashed`` as a folder written before the :data:`_LEGACY_CONFIG_DEFAULTS` fields existed holds it."""
    cfg = {k: v for k, v in hashed["config"].items()
           if not (k in _LEGACY_CONFIG_DEFAULTS and v == _LEGACY_CONFIG_DEFAULTS[k])}
    return {**hashed, "config": cfg}


def _model_desc(model: nn.Module) -> Dict[str, Any]:
    meta = getattr(model, "l2ul_meta", None) or {}
    return {"class": type(model).__name__, "arch": meta.get("arch"),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def _read_jsonl(path: Path) -> Tuple[List[Dict[str, Any]], bool]:
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


def _rewrite_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in records)
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))


def _append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    line = json.dumps(to_jsonable(record), allow_nan=False) + "\n"
    with open(path, "ab") as f:
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))


def _write_csv(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    keys: List[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    _write_text(path, buf.getvalue())


def _open_out_dir(out_dir, settings: Dict[str, Any], jsonl_name: str) -> Tuple[Path, List[Dict[str, Any]]]:
    """Create/check ``out_dir``; refuse different settings; return the finished records of these settings."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise L2ULError(f"--out {out} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    h = settings["settings_hash"]
    spath = out / "settings.json"
    if spath.exists():
        try:
            old = json.loads(spath.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise L2ULError(f"{spath} is not valid JSON; use a new --out") from None
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
    path = out / jsonl_name
    records, dropped = _read_jsonl(path)
    foreign = [r for r in records if r.get("settings_hash") != h]
    if foreign:
        raise L2ULError(f"{path} holds {len(foreign)} record(s) of other settings (hash "
                        f"{foreign[0].get('settings_hash')}, this run {h}); use a new --out")
    if dropped:
        _rewrite_jsonl(path, records)
    write_json(spath, settings)
    return out, records


def _common_settings(model: nn.Module, bundle: DatasetBundle, config: UnlearnConfig, *, mode: str,
                     retain_eval_size, retain_eval: np.ndarray, oracle_pool: np.ndarray, oracle_pool_size,
                     forget_desc: str, extra_hashed: Dict[str, Any], device: torch.device,
                     config_name: Optional[str], methods: List[str], notes: List[str]) -> Dict[str, Any]:
    hashed = {
        "mode": mode,
        "engine_revision": ENGINE_REVISION,
        "model_sha256": model_fingerprint(model),
        "model": _model_desc(model),
        "dataset": {"name": bundle.name, "n_train": bundle.n_train, "n_test": bundle.n_test,
                    "num_classes": bundle.num_classes},
        "config": _hashed_config(config),
        "retain_eval_size_requested": retain_eval_size,
        "retain_eval_seed": RETAIN_EVAL_SEED,
        "retain_eval_sha": _index_hash(retain_eval),
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
        "machine": machine_info(device),
        "created": _now(),
        "notes": notes,
    }


# -------------------------------------------------------------------------------------------------- bench
def _cell_name(method: str, k: int, seed: int) -> str:
    return f"{method}_k{k}_s{seed}"


def _bench_header(settings: Mapping[str, Any], title: str) -> str:
    m, d, c = settings["model"], settings["dataset"], settings["config"]
    cfg = ", ".join(f"{k} {c[k]}" for k in ("lr", "momentum", "weight_decay", "max_steps", "pgd_eps", "pgd_alpha",
                                            "pgd_steps", "adv_per_instance", "reg_lambda", "adv_batch_size",
                                            "forget_batch_size", "bn"))
    hashed = settings["hashed"]
    mia = (f"{hashed.get('mia_attack')} attack on the true-class confidence, fitted on the D_r subset "
           f"(members) vs D_test (non-members), at most {hashed.get('mia_max_samples')} samples per class, "
           "subsampling seed = grid seed" if "mia_attack" in hashed else None)
    seeding = ("engine seed = grid seed" if settings["mode"] == "bench"
               else "engine seed of request r = seed * 1000 + r")
    lines = [
        f"# {title}",
        "",
        f"- Model: {m.get('arch') or m['class']} ({m['parameters']:,} parameters, state sha256 {m['sha256'][:12]})",
        f"- Dataset: {d['name']} ({d['n_train']} train / {d['n_test']} test, {d['num_classes']} classes)",
        f"- D_f: {settings['forget_sets']}",
        f"- D_r: {settings['retain_eval']['description']}",
        f"- D_test: the whole test set ({settings['test']['size']} instances)",
        f"- Remaining data for oracle: {settings['oracle_pool']['size']} instances; "
        f"{settings['oracle_pool']['description']}",
    ]
    if mia:
        lines.append(f"- MIA efficacy: {mia}")
    lines += [
        f"- Config ({settings.get('config_name') or 'custom'}): {cfg}; {seeding}",
        f"- Machine: {_machine_line(settings['machine'])}",
        f"- Date: {_now()} (started {settings['created']}); settings hash {settings['settings_hash']}",
    ]
    lines += [f"- Note: {n}" for n in settings.get("notes", [])]
    return "\n".join(lines) + "\n"


def _write_bench_outputs(out: Path, settings: Mapping[str, Any], records: List[Dict[str, Any]], *,
                         plots: bool) -> None:
    if not records:
        return
    _write_csv(out / "results.csv", records)
    write_json(out / "results.json", {"settings": settings, "records": records})
    text = _bench_header(settings, "l2ul benchmark") + "\n" + paper_table(records)
    failed = [r for r in records if r.get("status") == "diverged"]
    if failed:
        text += ("\nDiverged runs (non-finite model: no metrics after unlearning, left out of the means; the "
                 "'converged' column counts them as not converged): "
                 + ", ".join(f"{r['method']} k={r['k']} seed={r['seed']}" for r in failed) + "\n")
    _write_text(out / "table.md", text)
    if plots:
        plot_vs_k(records, out / "plot_vs_k.png")
        plot_phase_times(records, out / "plot_phase_times.png")


def _sort_records(records: List[Dict[str, Any]], methods: List[str], ks: List[int],
                  seeds: List[int]) -> List[Dict[str, Any]]:
    def pos(seq, v):
        return seq.index(v) if v in seq else len(seq)

    def key(r):
        return pos(ks, r["k"]), pos(seeds, r["seed"]), pos(methods, r["method"]), str(r["method"])
    return sorted(records, key=key)


def _fmt_pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _cell_line(r: Mapping[str, Any], i: int, n: int) -> str:
    return (f"[{i}/{n}] {r['method']} k={r['k']} seed={r['seed']}: {r['status']} after {r['steps']} steps | "
            f"D_f {_fmt_pct(r.get('acc_forget_before'))} -> {_fmt_pct(r.get('acc_forget'))}, "
            f"D_r {_fmt_pct(r.get('acc_retain_before'))} -> {_fmt_pct(r.get('acc_retain'))}, "
            f"D_test {_fmt_pct(r.get('acc_test_before'))} -> {_fmt_pct(r.get('acc_test'))} | "
            f"t_adv {r['time_adversarial']:.2f}s{' (shared)' if r.get('adversarial_shared') else ''}, "
            f"t_imp {r['time_importance']:.2f}s, t_opt {r['time_optimization']:.2f}s, "
            f"total {r['time_total']:.2f}s, eval {r['time_evaluation']:.2f}s")


def _generate_shared_adversarial(model: nn.Module, xf: torch.Tensor, yf: torch.Tensor, cfg: UnlearnConfig,
                                 num_classes: int, device: torch.device, progress: bool) -> AdversarialSet:
    """The adversarial set the engine would generate for ``cfg`` (:func:`l2ul.engine.make_adversarial_set`)."""
    return make_adversarial_set(model, xf.to(device), yf.to(device), num_classes, cfg, progress=progress)


def _peak(device: torch.device) -> Dict[str, Any]:
    mem = peak_memory(device if device.type == "cuda" else None)
    out = {"peak_rss_mib": mem.get("max_rss_mib")}
    if "cuda_max_allocated_mib" in mem and device.type == "cuda":
        out["peak_cuda_mib"] = mem["cuda_max_allocated_mib"]
    return out


def run_bench(model: nn.Module, bundle: DatasetBundle, *, methods: Sequence[str] = DEFAULT_METHODS,
              ks: Sequence[int] = DEFAULT_KS, seeds: Sequence[int] = (0,), config: Optional[UnlearnConfig] = None,
              out_dir, retain_eval_size: Optional[int] = 10000, oracle_pool_size: Optional[int] = None,
              mia_max_samples: Optional[int] = 5000, mia_attack: str = "svc", progress: bool = True,
              log: Optional[Log] = print, config_name: Optional[str] = None, num_workers: int = 0
              ) -> List[Dict[str, Any]]:
    """Run every (method, k, seed) cell of the grid on ``model`` (the original, left untouched) and return
    one flat record per cell (see the module docstring for what is measured and written).

    Resumable: cells already in ``out_dir/results.jsonl`` with the same settings are not recomputed; a
    different setting (model weights, dataset, config other than seed/device, ks, seeds, D_r subset size,
    oracle pool size, MIA settings) raises :class:`L2ULError` asking for a new ``out_dir``. ``methods`` may
    change between runs. ``config.seed`` is replaced by each cell's grid seed.
    """
    cfg0 = (config or UnlearnConfig()).validate()
    methods = _methods(methods)
    ks = _int_list(ks, "ks", minimum=1)
    seeds = _int_list(seeds, "seeds", minimum=0)
    log = log or (lambda s: None)
    if mia_attack not in ("svc", "logistic"):
        raise ConfigError(f"mia_attack must be 'svc' or 'logistic', got {mia_attack!r}")
    device = resolve_device(cfg0.device)
    n_train = bundle.n_train
    forget = {(k, s): random_forget_ids(k, n_train=n_train, seed=s) for k in ks for s in seeds}
    retain_eval, oracle_pool = eval_splits(n_train, forget.values(), retain_eval_size,
                                           oracle_pool_size=oracle_pool_size)
    method_objs = {m: get_method(m) for m in methods}
    if any(o.uses_retain for o in method_objs.values()) and len(oracle_pool) == 0:
        raise ConfigError(f"no training data is left for the oracle's remaining data: the D_r subset "
                          f"({len(retain_eval)}) and the forget sets cover the training set; lower --retain-eval-size")
    notes = ["adv and l2ul (every method using adversarial examples) share one adversarial set per (k, seed), "
             "generated once on the original model; t_adv is that set's generation time, reported in full "
             "for each of them",
             "peak_rss_mib is the process's peak resident memory so far (monotonic over the run)"
             + ("; peak_cuda_mib is per cell" if device.type == "cuda" else "")]
    settings = _common_settings(
        model, bundle, cfg0, mode="bench", retain_eval_size=retain_eval_size, retain_eval=retain_eval,
        oracle_pool=oracle_pool, oracle_pool_size=oracle_pool_size,
        forget_desc=(f"k training instances per request, random_forget_ids(k, seed) for k in {ks}, seeds {seeds} "
                     "(un-augmented images)"),
        extra_hashed={"ks": sorted(ks), "seeds": sorted(seeds), "mia_max_samples": mia_max_samples,
                      "mia_attack": mia_attack, "task": "misclassify"},
        device=device, config_name=config_name, methods=methods, notes=notes)
    out, done_records = _open_out_dir(out_dir, settings, "results.jsonl")
    h = settings["settings_hash"]  # after: a legacy folder keeps its own hash
    (out / "cells").mkdir(exist_ok=True)
    jsonl = out / "results.jsonl"
    done = {(r["method"], r["k"], r["seed"]) for r in done_records}
    records = list(done_records)
    cells = [(k, s, m) for k in ks for s in seeds for m in methods]
    todo = [c for c in cells if (c[2], c[0], c[1]) not in done]
    log(f"bench: {len(methods)} methods x {len(ks)} k x {len(seeds)} seeds = {len(cells)} cells on {device}; "
        f"D_r subset {len(retain_eval)}, D_test {bundle.n_test}; out {out}"
        + (f"; resuming: {len(cells) - len(todo)} cell(s) already done" if len(todo) < len(cells) else ""))

    if todo:
        dev_model = _model_on(model, device)
        num_classes = check_model_matches(dev_model, bundle, device)
        train_eval = bundle.extra.get("train_eval", bundle.train)
        retain_data = _eval_data(train_eval, retain_eval, cfg0.eval_batch_size, num_workers)
        test_data = _eval_data(bundle.test, None, cfg0.eval_batch_size, num_workers)
        t0 = time.perf_counter()
        retain_pred = predict(dev_model, retain_data, batch_size=cfg0.eval_batch_size)
        test_pred = predict(dev_model, test_data, batch_size=cfg0.eval_batch_size)
        log(f"original model: D_r subset {_fmt_pct(accuracy_from_predictions(retain_pred))}, "
            f"D_test {_fmt_pct(accuracy_from_predictions(test_pred))} ({time.perf_counter() - t0:.1f}s)")
        n_done = len(cells) - len(todo)
        try:
            for k in ks:
                for seed in seeds:
                    pending = [m for m in methods if (m, k, seed) not in done]
                    if not pending:
                        continue
                    ids = forget[(k, seed)]
                    xf, yf = bundle.stack_train(ids)
                    cfg = cfg0.replace(seed=seed)
                    f_pred = predict(dev_model, (xf, yf), batch_size=cfg.eval_batch_size)
                    original = evaluate_model({"forget": f_pred, "retain": retain_pred, "test": test_pred},
                                              seed=seed, mia_max_samples=mia_max_samples, mia_attack=mia_attack)
                    shared_adv: Optional[AdversarialSet] = None
                    shared_imp = None
                    if any(method_objs[m].uses_adversarial for m in pending):
                        shared_adv = _generate_shared_adversarial(dev_model, xf, yf, cfg, num_classes, device,
                                                                  progress)
                    n_adv_methods = sum(method_objs[m].uses_adversarial for m in methods)
                    for m in pending:
                        mo = method_objs[m]
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        t_cell = time.perf_counter()
                        retain = (_remaining_data(bundle.train, oracle_pool, cfg.retain_batch_size, seed, num_workers)
                                  if mo.uses_retain else None)
                        result = unlearn(dev_model, xf, yf, method=m, config=cfg, retain=retain, progress=progress,
                                         adversarial=shared_adv if mo.uses_adversarial else None,
                                         importance=shared_imp if mo.uses_importance else None)
                        t_unlearn = time.perf_counter() - t_cell
                        if mo.uses_importance and shared_imp is None:
                            shared_imp = result.importance
                        mem = _peak(device)
                        t_eval0 = time.perf_counter()
                        per_instance = None
                        if result.status != "diverged":
                            ev = evaluate_unlearning(original, result.model, forget=(xf, yf), retain=retain_data,
                                                     test=test_data, ids=[bundle.train_ids[i] for i in ids],
                                                     seed=seed, batch_size=cfg.eval_batch_size,
                                                     mia_max_samples=mia_max_samples, mia_attack=mia_attack)
                            per_instance = ev.pop("per_instance")
                        else:   # non-finite model: only the original's figures are meaningful
                            ev = {}
                            for key, v in original.metrics.items():
                                ev[key], ev[f"{key}_before"] = None, v
                            ev.update(agreement_test=None, forget_success=None, n_forget=len(ids),
                                      n_retain=len(retain_pred), n_test=len(test_pred))
                        t_eval = time.perf_counter() - t_eval0
                        tm = result.timings
                        rec: Dict[str, Any] = {
                            "method": m, "k": k, "seed": seed, "status": result.status,
                            "converged": result.converged, "steps": result.steps,
                            "time_adversarial": float(tm.get("adversarial", 0.0)),
                            "time_importance": float(tm.get("importance", 0.0)),
                            "time_optimization": float(tm.get("optimization", 0.0)),
                        }
                        rec["time_total"] = rec["time_adversarial"] + rec["time_importance"] + rec["time_optimization"]
                        rec["time_unlearn_call"] = t_unlearn
                        rec["time_evaluation"] = t_eval
                        rec["adversarial_shared"] = bool(mo.uses_adversarial and n_adv_methods > 1)
                        rec["adversarial_success"] = result.adversarial_success
                        rec["forget_score_original_bn_stats"] = result.score_with_original_bn_stats
                        rec.update(mem)
                        rec.update(ev)
                        rec["config_name"] = config_name
                        rec.update({f: getattr(cfg, f) for f in RECORD_CONFIG_FIELDS})
                        rec["device"] = str(device)
                        rec["message"] = result.message
                        rec["settings_hash"] = h
                        summary = result.to_dict()
                        write_json(out / "cells" / f"{_cell_name(m, k, seed)}.json", {
                            "record": rec, "forget_indices": ids,
                            "forget_ids": [bundle.train_ids[i] for i in ids],
                            "per_instance": per_instance,
                            "result": {key: v for key, v in summary.items()
                                       if key not in ("labels", "preds_before", "preds_after")},
                        })
                        _append_jsonl(jsonl, rec)
                        records.append(rec)
                        done.add((m, k, seed))
                        n_done += 1
                        log(_cell_line(rec, n_done, len(cells)))
                        del result
                        _write_bench_outputs(out, settings, _sort_records(records, methods, ks, seeds), plots=False)
                    del shared_adv, shared_imp
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    records = _sort_records(records, methods, ks, seeds)
    _write_bench_outputs(out, settings, records, plots=True)
    log(f"bench: wrote {out / 'table.md'}, results.csv, results.json, plot_vs_k.png, plot_phase_times.png")
    return records


# ---------------------------------------------------------------------------------------------- continual
_CONTINUAL_COLUMNS = [("method", "Method"), ("request", "request"), ("acc_retain", "D_r (%)"),
                      ("acc_test", "D_test (%)"), ("acc_forget", "D_f current (%)"),
                      ("acc_previously_forgotten", "earlier D_f (%)"),
                      ("acc_forgotten_so_far", "all forgotten so far (%)"),
                      ("acc_all_requests", "all R requests (%)"), ("agreement_test", "agree test (%)"),
                      ("steps", "steps"), ("converged", "converged"), ("time_adversarial", "t_adv (s)"),
                      ("time_importance", "t_imp (s)"), ("time_optimization", "t_opt (s)")]
_PCT_KEYS = {"acc_retain", "acc_test", "acc_forget", "acc_previously_forgotten", "acc_forgotten_so_far",
             "acc_all_requests", "agreement_test"}


def _continual_table(records: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for r in records:
        row = {}
        for key, _ in _CONTINUAL_COLUMNS:
            v = r.get(key)
            row[key] = 100 * v if key in _PCT_KEYS and v is not None else v
        rows.append(row)
    return markdown_table(rows, _CONTINUAL_COLUMNS, floatfmt=".2f") + "\n"


def _write_continual_outputs(out: Path, settings: Mapping[str, Any], records: List[Dict[str, Any]], *,
                             plots: bool) -> None:
    if not records:
        return
    write_json(out / "continual.json", {"settings": settings, "records": records})
    legend = ("Accuracy after each request (request 0 = the original model): D_r subset, D_test, the current "
              "request's forget set, the forget sets of earlier requests (do they stay forgotten?), everything "
              "forgotten so far, and the union of all R requests' instances (including future ones).")
    _write_text(out / "continual.md", _bench_header(settings, "l2ul continual unlearning") + "\n" + legend
                + "\n\n" + _continual_table(records))
    if plots:
        plot_continual(records, out / "plot_continual.png")


def _acc(p: Predictions, idx: Optional[Sequence[int]]) -> Optional[float]:
    if idx is None or len(idx) == 0:
        return None
    return accuracy_from_predictions(p.subset(idx))


def _checkpoint_path(out: Path, method: str) -> Path:
    return out / "checkpoints" / f"{method}.safetensors"


def _save_checkpoint(path: Path, model: nn.Module, request: int, settings_hash: str) -> None:
    """The model's full state (weights and buffers) after ``request``, written atomically."""
    from safetensors.torch import save_file

    from .safety import atomic_path

    state = {n: t.detach().to("cpu").contiguous().clone() for n, t in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"request": str(int(request)), "settings_hash": settings_hash})


def _checkpoint_request(path: Path, settings_hash: str) -> Optional[int]:
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


def _load_checkpoint(path: Path, model: nn.Module) -> None:
    from safetensors.torch import load_file

    device = next(model.parameters()).device
    model.load_state_dict({n: t.to(device) for n, t in load_file(str(path)).items()})


def run_continual(model: nn.Module, bundle: DatasetBundle, *, methods: Sequence[str] = DEFAULT_METHODS,
                  requests: int = 8, k: int = 16, seed: int = 0, config: Optional[UnlearnConfig] = None,
                  out_dir, retain_eval_size: Optional[int] = 10000, oracle_pool_size: Optional[int] = None,
                  progress: bool = True, log: Optional[Log] = print, config_name: Optional[str] = None,
                  num_workers: int = 0) -> List[Dict[str, Any]]:
    """``requests`` successive deletion requests of ``k`` instances each (disjoint, drawn once from ``seed``,
    see :func:`continual_forget_sets`) applied one after another to the same model, per method.

    After each request: accuracy on the D_r subset (outside all requests' instances), D_test, the current
    request's forget set (``acc_forget``), the earlier requests' instances (``acc_previously_forgotten``),
    everything forgotten so far (``acc_forgotten_so_far``) and all R requests (``acc_all_requests``), plus
    agreement with the original on D_test, steps, status and phase times. Request 0 is the original model
    (one record per method). Request ``r`` runs the engine with seed ``seed * 1000 + r``; adversarial
    examples and importance are computed on the current (already unlearned) model, so they are not shared
    between methods. Resumable per request: after each request the method's model is checkpointed to
    ``out_dir/checkpoints/<method>.safetensors`` (weights and BN buffers, tagged with the request number
    and the settings hash); a killed run continues each method after its last recorded request whose
    checkpoint is there, and a method with all its records is skipped. The checkpoint is removed once the
    method's last request is recorded. Without a matching checkpoint a partial method restarts from the
    original model.
    """
    cfg0 = (config or UnlearnConfig()).validate()
    methods = _methods(methods)
    requests, k = int(requests), int(k)
    log = log or (lambda s: None)
    device = resolve_device(cfg0.device)
    sets = continual_forget_sets(bundle.n_train, requests, k, seed)
    retain_eval, oracle_pool = eval_splits(bundle.n_train, sets, retain_eval_size, oracle_pool_size=oracle_pool_size)
    method_objs = {m: get_method(m) for m in methods}
    if any(o.uses_retain for o in method_objs.values()) and len(oracle_pool) == 0:
        raise ConfigError("no training data is left for the oracle's remaining data; lower --retain-eval-size")
    settings = _common_settings(
        model, bundle, cfg0, mode="continual", retain_eval_size=retain_eval_size, retain_eval=retain_eval,
        oracle_pool=oracle_pool, oracle_pool_size=oracle_pool_size,
        forget_desc=(f"{requests} successive disjoint requests of {k} training instances each, drawn once from "
                     f"numpy default_rng({seed}).permutation(n_train) (un-augmented images)"),
        extra_hashed={"requests": requests, "k": k, "seed": seed, "task": "misclassify"},
        device=device, config_name=config_name, methods=methods,
        notes=["request r runs the engine with seed = seed * 1000 + r; adversarial examples and importance "
               "are computed on the current model of each method, so they are not shared"])
    out, old = _open_out_dir(out_dir, settings, "continual.jsonl")
    h = settings["settings_hash"]  # after: a legacy folder keeps its own hash
    jsonl = out / "continual.jsonl"
    complete = {m for m in {r["method"] for r in old}
                if {r["request"] for r in old if r["method"] == m} >= set(range(requests + 1))}
    resume_at: Dict[str, int] = {}     # method -> last request recorded and checkpointed
    for m in {r["method"] for r in old} - complete:
        got = {r["request"] for r in old if r["method"] == m}
        last = -1
        while last + 1 in got:
            last += 1
        if last >= 1 and _checkpoint_request(_checkpoint_path(out, m), h) == last:
            resume_at[m] = last
    records = [r for r in old if r["method"] in complete
               or (r["method"] in resume_at and r["request"] <= resume_at[r["method"]])]
    if len(records) != len(old):
        _rewrite_jsonl(jsonl, records)
    todo = [m for m in methods if m not in complete]
    log(f"continual: {len(methods)} methods x {requests} requests of {k} on {device}; D_r subset "
        f"{len(retain_eval)}, D_test {bundle.n_test}; out {out}"
        + (f"; resuming: {', '.join(m for m in methods if m in complete)} already done"
           if complete & set(methods) else "")
        + "".join(f"; resuming {m} after request {r}" for m, r in resume_at.items() if m in todo))

    if todo:
        dev_model = _model_on(model, device)
        check_model_matches(dev_model, bundle, device)
        train_eval = bundle.extra.get("train_eval", bundle.train)
        retain_data = _eval_data(train_eval, retain_eval, cfg0.eval_batch_size, num_workers)
        test_data = _eval_data(bundle.test, None, cfg0.eval_batch_size, num_workers)
        all_ids = [i for s in sets for i in s]
        forget_data = bundle.stack_train(all_ids)      # positions r*k .. (r+1)*k-1 are request r+1
        bs = cfg0.eval_batch_size
        test0 = predict(dev_model, test_data, batch_size=bs)
        retain0 = predict(dev_model, retain_data, batch_size=bs)
        forget0 = predict(dev_model, forget_data, batch_size=bs)
        base = {"acc_retain": accuracy_from_predictions(retain0), "acc_test": accuracy_from_predictions(test0),
                "acc_all_requests": accuracy_from_predictions(forget0)}
        for m in todo:
            mo = method_objs[m]
            start = resume_at.get(m, 0)
            ckpt = _checkpoint_path(out, m)
            if start:
                current = copy.deepcopy(dev_model)
                _load_checkpoint(ckpt, current)
            else:
                rec0 = {"method": m, "request": 0, "k": k, "seed": seed, "status": "original", **base,
                        "acc_forget": None, "acc_previously_forgotten": None, "acc_forgotten_so_far": None,
                        "agreement_test": 1.0, "steps": 0, "converged": None, "time_adversarial": 0.0,
                        "time_importance": 0.0, "time_optimization": 0.0, "time_total": 0.0,
                        "settings_hash": h}
                _append_jsonl(jsonl, rec0)
                records.append(rec0)
                current = dev_model
            for r in range(start + 1, requests + 1):
                pos = list(range((r - 1) * k, r * k))
                xf, yf = forget_data[0][pos], forget_data[1][pos]
                cfg = cfg0.replace(seed=seed * 1000 + r)
                retain = (_remaining_data(bundle.train, oracle_pool, cfg.retain_batch_size, cfg.seed, num_workers)
                          if mo.uses_retain else None)
                # the first request copies the original; later ones update this method's own model in place
                result = unlearn(current, xf, yf, method=m, config=cfg, retain=retain, progress=progress,
                                 inplace=current is not dev_model)
                current = result.model
                tm = result.timings
                rec = {"method": m, "request": r, "k": k, "seed": seed, "status": result.status,
                       "converged": result.converged, "steps": result.steps,
                       "time_adversarial": float(tm.get("adversarial", 0.0)),
                       "time_importance": float(tm.get("importance", 0.0)),
                       "time_optimization": float(tm.get("optimization", 0.0))}
                rec["time_total"] = rec["time_adversarial"] + rec["time_importance"] + rec["time_optimization"]
                if result.status == "diverged":
                    rec.update(acc_retain=None, acc_test=None, acc_forget=None, acc_previously_forgotten=None,
                               acc_forgotten_so_far=None, acc_all_requests=None, agreement_test=None)
                else:
                    tp = predict(current, test_data, batch_size=bs)
                    rp = predict(current, retain_data, batch_size=bs)
                    fp = predict(current, forget_data, batch_size=bs)
                    rec.update(acc_retain=accuracy_from_predictions(rp), acc_test=accuracy_from_predictions(tp),
                               acc_forget=_acc(fp, pos), acc_previously_forgotten=_acc(fp, list(range((r - 1) * k))),
                               acc_forgotten_so_far=_acc(fp, list(range(r * k))),
                               acc_all_requests=accuracy_from_predictions(fp), agreement_test=agreement(test0, tp))
                rec.update(_peak(device))
                rec.update({f: getattr(cfg, f) for f in RECORD_CONFIG_FIELDS})
                rec.update(config_name=config_name, device=str(device), engine_seed=cfg.seed,
                           forget_indices=sets[r - 1], message=result.message, settings_hash=h)
                if result.status != "diverged" and r < requests:
                    _save_checkpoint(ckpt, current, r, h)      # before the record: a record implies its model
                _append_jsonl(jsonl, rec)
                records.append(rec)
                log(f"{m} request {r}/{requests}: {result.status} after {result.steps} steps | D_f "
                    f"{_fmt_pct(rec['acc_forget'])}, earlier D_f {_fmt_pct(rec['acc_previously_forgotten'])}, "
                    f"D_r {_fmt_pct(rec['acc_retain'])}, D_test {_fmt_pct(rec['acc_test'])} | "
                    f"t_adv {rec['time_adversarial']:.2f}s, t_imp {rec['time_importance']:.2f}s, "
                    f"t_opt {rec['time_optimization']:.2f}s")
                _write_continual_outputs(out, settings, records, plots=False)
                if result.status == "diverged":
                    log(f"{m}: diverged at request {r}; its later requests are skipped")
                    for r2 in range(r + 1, requests + 1):
                        skip = {"method": m, "request": r2, "k": k, "seed": seed, "status": "skipped",
                                "converged": False, "steps": 0, "time_adversarial": None,
                                "time_importance": None, "time_optimization": None, "time_total": None,
                                "acc_retain": None, "acc_test": None, "acc_forget": None,
                                "acc_previously_forgotten": None, "acc_forgotten_so_far": None,
                                "acc_all_requests": None, "agreement_test": None,
                                "forget_indices": sets[r2 - 1], "settings_hash": h}
                        _append_jsonl(jsonl, skip)
                        records.append(skip)
                    break
            if ckpt.exists():
                ckpt.unlink()
            del current
    order = {m: i for i, m in enumerate(methods)}
    records.sort(key=lambda r: (order.get(r["method"], len(order)), r["request"]))
    _write_continual_outputs(out, settings, records, plots=True)
    log(f"continual: wrote {out / 'continual.md'}, continual.json, continual.jsonl, plot_continual.png")
    return records


# ------------------------------------------------------------------------------------------- re-rendering
def render_results(out_dir, *, plots: bool = True) -> List[Path]:
    """Write again the tables, CSV/JSON and plots of a finished or interrupted ``l2ul bench`` folder from its
    records alone (no model, no data): after upgrading l2ul's reports, or to look at a run still in progress.

    Reads ``settings.json`` and ``results.jsonl`` (grid) and/or ``continual.jsonl`` (continual). Records of
    other settings are refused, as on resume. Returns the paths written.
    """
    out = Path(out_dir)
    spath = out / "settings.json"
    if not spath.is_file():
        raise L2ULError(f"{out} holds no l2ul bench results (no settings.json); give the --out of a bench run")
    try:
        settings = json.loads(spath.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise L2ULError(f"{spath} is not valid JSON") from None
    h = settings.get("settings_hash")
    written: List[Path] = []
    for name, kind in (("results.jsonl", "grid"), ("continual.jsonl", "continual")):
        path = out / name
        if not path.exists():
            continue
        records, _ = _read_jsonl(path)
        foreign = [r for r in records if r.get("settings_hash") != h]
        if foreign:
            raise L2ULError(f"{path} holds {len(foreign)} record(s) of other settings than {spath}; "
                            "it cannot be rendered as one run")
        if not records:
            continue
        methods = list(settings.get("methods") or [])
        methods += [m for m in dict.fromkeys(r["method"] for r in records) if m not in methods]
        if kind == "grid":
            records = _sort_records(records, methods, sorted({r["k"] for r in records}),
                                    sorted({r["seed"] for r in records}))
            _write_bench_outputs(out, settings, records, plots=plots)
            written += [out / "table.md", out / "results.csv", out / "results.json"]
            if plots:
                written += [out / "plot_vs_k.png", out / "plot_phase_times.png"]
        else:
            order = {m: i for i, m in enumerate(methods)}
            records.sort(key=lambda r: (order[r["method"]], r["request"]))
            _write_continual_outputs(out, settings, records, plots=plots)
            written += [out / "continual.md", out / "continual.json"] + ([out / "plot_continual.png"] if plots
                                                                        else [])
    if not written:
        raise L2ULError(f"{out} holds no finished records yet (results.jsonl / continual.jsonl are missing or "
                        "empty)")
    return written


# ------------------------------------------------------------------------------------------------------ CLI
def _csv_ints(text: str, what: str) -> List[int]:
    try:
        return [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be a comma list of integers, got {text!r}") from None


def add_arguments(parser) -> None:
    """Options of ``l2ul bench`` (an ``argparse`` parser or sub-parser)."""
    src = parser.add_argument_group("model (one of --model, or --arch with --weights)")
    src.add_argument("--model", metavar="FILE", help="l2ul model file (safetensors, from pretrain/unlearn)")
    src.add_argument("--arch", metavar="NAME", help="architecture name for foreign weights (see l2ul models)")
    src.add_argument("--weights", metavar="PATH", help="foreign checkpoint (state_dict) for --arch")
    src.add_argument("--num-classes", type=int, default=None, help="classes of --arch (default: inferred)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, metavar="SPEC", help="dataset spec, e.g. digits, cifar10, npz:PATH")
    data.add_argument("--data-dir", default=None, metavar="DIR", help="where torchvision datasets / caches live")
    data.add_argument("--download", action="store_true", help="download torchvision datasets if missing")
    data.add_argument("--workers", type=int, default=0, help="DataLoader workers for file-based datasets (default 0)")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma list (default %(default)s)")
    grid.add_argument("--k", default=None, help="comma list of forget-set sizes (default "
                      f"{','.join(map(str, DEFAULT_KS))}; continual mode: one value, default 16)")
    grid.add_argument("--seeds", default="0", help="comma list of seeds (default %(default)s; continual: first one)")
    grid.add_argument("--requests", type=int, default=None, metavar="R",
                      help="continual mode: R successive requests of --k instances on the same model")
    cfg = parser.add_argument_group("unlearning config (defaults: the paper's CIFAR-10 recipe)")
    cfg.add_argument("--preset", default=None, choices=sorted(PRESETS), help="paper recipe to start from")
    cfg.add_argument("--max-steps", type=int, default=None)
    cfg.add_argument("--pgd-steps", type=int, default=None)
    cfg.add_argument("--adv-per-instance", type=int, default=None)
    cfg.add_argument("--pgd-eps", type=float, default=None)
    cfg.add_argument("--lr", type=float, default=None)
    cfg.add_argument("--bn", choices=BN_MODES, default=None)
    cfg.add_argument("--forget-loss", choices=FORGET_LOSSES, default=None)
    cfg.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: automatic)")
    ev = parser.add_argument_group("evaluation")
    ev.add_argument("--retain-eval-size", type=int, default=10000,
                    help="size of the fixed random D_r subset accuracy is measured on (default %(default)s)")
    ev.add_argument("--oracle-pool-size", type=int, default=None,
                    help="cap on the remaining data the oracle fine-tunes on (default: all outside D_r subset)")
    ev.add_argument("--mia-max-samples", type=int, default=5000,
                    help="MIA attack samples per class (default %(default)s)")
    ev.add_argument("--mia-attack", choices=("svc", "logistic"), default="svc",
                    help="MIA attack classifier (default svc, as in the literature)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (resumes if it holds a run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config_from_args(args) -> Tuple[UnlearnConfig, str]:
    preset = getattr(args, "preset", None)
    cfg = UnlearnConfig.from_preset(preset) if preset else UnlearnConfig()
    overrides = {name: getattr(args, name, None) for name in
                 ("max_steps", "pgd_steps", "adv_per_instance", "pgd_eps", "lr", "bn", "forget_loss", "device")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = cfg.replace(**overrides).validate()
    name = preset or "default"
    if any(k != "device" for k in overrides):
        name += " + overrides"
    return cfg, name


def _load_model_from_args(args) -> nn.Module:
    from .cli import _load_model

    return _load_model(args)


def main(args) -> int:
    """Run ``l2ul bench`` from parsed arguments (see :func:`add_arguments`)."""
    from .data import load_dataset

    config, config_name = _config_from_args(args)
    methods = _methods(args.methods)
    seeds = _csv_ints(args.seeds, "--seeds")
    continual = args.requests is not None
    if args.k is None:
        ks = [16] if continual else list(DEFAULT_KS)
    else:
        ks = _csv_ints(args.k, "--k")
    if continual and len(ks) != 1:
        raise ConfigError("continual mode (--requests) takes a single --k (instances per request)")
    if continual and args.requests < 1:
        raise ConfigError(f"--requests must be at least 1, got {args.requests}")
    model = _load_model_from_args(args)
    bundle = load_dataset(args.dataset, data_dir=args.data_dir, download=getattr(args, "download", False))
    check_model_matches(model, bundle)
    common = dict(methods=methods, config=config, out_dir=args.out, retain_eval_size=args.retain_eval_size,
                  oracle_pool_size=args.oracle_pool_size, progress=not getattr(args, "no_progress", False),
                  log=print, config_name=config_name, num_workers=getattr(args, "workers", 0))
    if continual:
        if len(seeds) > 1:
            print(f"continual mode uses one seed; using {seeds[0]}")
        run_continual(model, bundle, requests=args.requests, k=ks[0], seed=seeds[0], **common)
    else:
        run_bench(model, bundle, ks=ks, seeds=seeds, mia_max_samples=args.mia_max_samples,
                  mia_attack=args.mia_attack, **common)
    return 0
