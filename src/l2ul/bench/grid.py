"""The method x k x seed grid on one original model (:func:`run_bench`), resumable cell by cell.

Per (k, seed) the forget set is stacked, the original model is evaluated on it and every ingredient a
pending method declares is prepared once (:func:`l2ul.engine.prepare_ingredients`) and shared; then each
pending method of that (k, seed) is one cell: unlearn, evaluate, record (``results.jsonl`` and
``cells/<method>_k<k>_s<seed>.json``), re-render the outputs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from torch import nn

from ..config import TASKS, UnlearnConfig
from ..data import DatasetBundle
from ..engine import prepare_ingredients, resolve_device
from ..errors import ConfigError
from ..evaluation import Predictions, accuracy_from_predictions, evaluate_model, predict
from ..loading import check_fit
from ..methods import get_method
from ..output_cache import cached_predict
from ..pipeline import PreparedRequest, run_request
from ..reports import write_json
from ..requests import DeletionRequest, parse_relabel_targets, random_forget_ids
from .common import (
    DEFAULT_KS,
    DEFAULT_METHODS,
    RECORD_CONFIG_FIELDS,
    Log,
    int_list,
    model_on,
    phase_times,
    resolve_methods,
)
from .machine import peak
from .proxy import describe as proxy_describe
from .proxy import hashed as proxy_hashed
from .proxy import method_data as proxy_method_data
from .proxy import proxy_images, proxy_reference, split_test
from .render import cell_line, cell_name, fmt_pct, sort_records, write_bench_outputs
from .splits import eval_data, eval_splits, remaining_data
from .store import append_jsonl, common_settings, open_out_dir

__all__ = ["run_bench"]


@dataclass
class _Grid:
    """One :func:`run_bench` call: what it runs, where it writes and which cells are done."""

    bundle: DatasetBundle
    config: UnlearnConfig
    methods: List[str]
    ks: List[int]
    seeds: List[int]
    device: torch.device
    method_objs: Dict[str, Any]
    forget: Dict[Tuple[int, int], List[int]]
    retain_eval: np.ndarray
    oracle_pool: np.ndarray
    settings: Dict[str, Any]
    mia_max_samples: Optional[int]
    mia_attack: str
    progress: bool
    log: Log
    config_name: Optional[str]
    num_workers: int
    test_eval: Optional[np.ndarray] = None       # D_test indices (None: the whole test split)
    proxy: Optional[torch.Tensor] = None          # proxy images split from the test set (proxy_test_split)
    task: str = "misclassify"                     # or "relabel": random wrong targets per (k, seed); or "unseen"
    reference: Any = None                          # task unseen: the proxy split's (images, labels)
    out: Path = Path()
    records: List[Dict[str, Any]] = field(default_factory=list)
    done: Set[Tuple[str, int, int]] = field(default_factory=set)
    n_cells: int = 0
    n_done: int = 0


@dataclass
class _Evaluation:
    """The original model on the run's device, the D_r subset and D_test, and its predictions on them."""

    model: nn.Module
    retain_data: Any
    test_data: Any
    retain_pred: Predictions
    test_pred: Predictions


@dataclass
class _Group:
    """One (k, seed): its forget set, engine config, the original's figures and the shared ingredients."""

    k: int
    seed: int
    ids: List[int]
    xf: torch.Tensor
    yf: torch.Tensor
    config: UnlearnConfig
    original: Any
    shared: Dict[str, Any]
    n_adv_methods: int
    targets: Optional[List[int]] = None            # relabel targets (task "relabel")


def _plan(model: nn.Module, bundle: DatasetBundle, cfg0: UnlearnConfig, device: torch.device, *,
          methods: List[str], ks: List[int], seeds: List[int], retain_eval_size: Optional[int],
          oracle_pool_size: Optional[int], mia_max_samples: Optional[int], mia_attack: str, progress: bool,
          log: Log, config_name: Optional[str], num_workers: int, proxy_test_split: Optional[int] = None,
          task: str = "misclassify") -> _Grid:
    """The forget sets, the D_r subset and oracle pool, the proxy split, and the settings of a grid run."""
    n_train = bundle.n_train
    forget = {(k, s): random_forget_ids(k, n_train=n_train, seed=s) for k in ks for s in seeds}
    retain_eval, oracle_pool = eval_splits(n_train, forget.values(), retain_eval_size,
                                           oracle_pool_size=oracle_pool_size)
    method_objs = {m: get_method(m) for m in methods}
    proxy_idx, test_eval = split_test(bundle, proxy_test_split)
    if any("retain" in o.data for o in method_objs.values()) and len(oracle_pool) == 0:
        raise ConfigError(f"no training data is left for the oracle's remaining data: the D_r subset "
                          f"({len(retain_eval)}) and the forget sets cover the training set; lower --retain-eval-size")
    notes = ["adv and l2ul (every method using adversarial examples) share one adversarial set per (k, seed), "
             "generated once on the original model; t_adv is that set's generation time, reported in full "
             "for each of them",
             "peak_rss_mib is the process's peak resident memory so far (monotonic over the run)"
             + ("; peak_cuda_mib is per cell" if device.type == "cuda" else "")]
    settings = common_settings(
        model, bundle, cfg0, mode="bench", retain_eval_size=retain_eval_size, retain_eval=retain_eval,
        oracle_pool=oracle_pool, oracle_pool_size=oracle_pool_size,
        forget_desc=(f"k training instances per request, random_forget_ids(k, seed) for k in {ks}, seeds {seeds} "
                     "(un-augmented images)"),
        extra_hashed={"ks": sorted(ks), "seeds": sorted(seeds), "mia_max_samples": mia_max_samples,
                      "mia_attack": mia_attack, "task": task, **proxy_hashed(proxy_idx)},
        device=device, config_name=config_name, methods=methods, notes=notes)
    if proxy_idx is not None:
        settings["test"] = proxy_describe(proxy_idx, test_eval)
    return _Grid(bundle=bundle, config=cfg0, methods=methods, ks=ks, seeds=seeds, device=device,
                 method_objs=method_objs, forget=forget, retain_eval=retain_eval, oracle_pool=oracle_pool,
                 settings=settings, mia_max_samples=mia_max_samples, mia_attack=mia_attack, progress=progress,
                 log=log, config_name=config_name, num_workers=num_workers, test_eval=test_eval,
                 proxy=proxy_images(bundle, proxy_idx), task=task,
                 reference=proxy_reference(bundle, proxy_idx) if task == "unseen" else None)


def _open(run: _Grid, out_dir) -> int:
    """Open (or resume) the results folder; returns the number of cells still to compute."""
    run.out, done_records = open_out_dir(out_dir, run.settings, "results.jsonl")
    (run.out / "cells").mkdir(exist_ok=True)
    run.done = {(r["method"], r["k"], r["seed"]) for r in done_records}
    run.records = list(done_records)
    cells = [(k, s, m) for k in run.ks for s in run.seeds for m in run.methods]
    todo = [c for c in cells if (c[2], c[0], c[1]) not in run.done]
    run.n_cells, run.n_done = len(cells), len(cells) - len(todo)
    run.log(f"bench: {len(run.methods)} methods x {len(run.ks)} k x {len(run.seeds)} seeds = {len(cells)} cells "
            f"on {run.device}; D_r subset {len(run.retain_eval)}, D_test {run.bundle.n_test if run.test_eval is None else len(run.test_eval)}; out {run.out}"
            + (f"; resuming: {len(cells) - len(todo)} cell(s) already done" if len(todo) < len(cells) else ""))
    return len(todo)


def _prepare_evaluation(run: _Grid, model: nn.Module) -> _Evaluation:
    """The original model on the device (checked against the data), D_r subset and D_test, and its figures."""
    dev_model = model_on(model, run.device)
    check_fit(dev_model, run.bundle, run.device)
    bs = run.config.eval_batch(run.device)
    train_eval = run.bundle.extra.get("train_eval", run.bundle.train)
    retain_data = eval_data(train_eval, run.retain_eval, bs, run.num_workers)
    test_data = eval_data(run.bundle.test, run.test_eval, bs, run.num_workers)
    t0 = time.perf_counter()
    # the same for every run of this model on these subsets: from the outputs cache after the first
    retain_pred = cached_predict(dev_model, retain_data, batch_size=bs)
    test_pred = cached_predict(dev_model, test_data, batch_size=bs)
    run.log(f"original model: D_r subset {fmt_pct(accuracy_from_predictions(retain_pred))}, "
            f"D_test {fmt_pct(accuracy_from_predictions(test_pred))} ({time.perf_counter() - t0:.1f}s)")
    return _Evaluation(dev_model, retain_data, test_data, retain_pred, test_pred)


def _prepare_group(run: _Grid, ev: _Evaluation, k: int, seed: int, pending: List[str]) -> _Group:
    """Stack the forget set of (k, seed), evaluate the original on it and prepare the shared ingredients."""
    ids = run.forget[(k, seed)]
    xf, yf = run.bundle.stack_train(ids)
    cfg = run.config.replace(seed=seed)
    f_pred = predict(ev.model, (xf, yf), batch_size=cfg.eval_batch(run.device))
    original = evaluate_model({"forget": f_pred, "retain": ev.retain_pred, "test": ev.test_pred},
                              seed=seed, mia_max_samples=run.mia_max_samples, mia_attack=run.mia_attack)
    # every ingredient a pending method declares is prepared once per (k, seed), exactly as the
    # engine would prepare it first, and passed to each method that declares it
    targets = None
    if run.task == "relabel":   # what `l2ul unlearn --relabel-to random` draws for these ids and seed
        targets = parse_relabel_targets("random", labels=yf.numpy(), num_classes=run.bundle.num_classes, seed=seed)
    needed = [n for m in pending for n in run.method_objs[m].ingredients]
    shared = prepare_ingredients(ev.model, xf.to(run.device), yf.to(run.device), needed, config=cfg,
                                 task=run.task, targets=targets, progress=run.progress,
                                 data={"proxy": run.proxy} if run.proxy is not None else None,
                                 reference=run.reference)
    n_adv_methods = sum("adversarial" in run.method_objs[m].ingredients for m in run.methods)
    return _Group(k, seed, ids, xf, yf, cfg, original, shared, n_adv_methods, targets)


def _cell_record(run: _Grid, g: _Group, m: str, result, *, t_unlearn: float, t_eval: float,
                 mem: Dict[str, Any], metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The flat record of one cell (the keys in the order of ``results.csv``'s columns)."""
    rec: Dict[str, Any] = {
        "method": m, "k": g.k, "seed": g.seed, "status": result.status,
        "converged": result.converged, "steps": result.steps, **phase_times(result.timings, result.phases),
    }
    rec["time_unlearn_call"] = t_unlearn
    rec["time_evaluation"] = t_eval
    rec["adversarial_shared"] = bool("adversarial" in run.method_objs[m].ingredients and g.n_adv_methods > 1)
    rec["adversarial_success"] = result.adversarial_success
    rec["forget_score_original_bn_stats"] = result.score_with_original_bn_stats
    rec.update(mem)
    rec.update(metrics)
    rec["config_name"] = run.config_name
    rec.update({f: getattr(g.config, f) for f in RECORD_CONFIG_FIELDS})
    rec["device"] = str(run.device)
    rec["message"] = result.message
    if result.ingredients.get("proxy") is not None:
        rec["proxy"] = result.ingredients["proxy"].source
    rec["settings_hash"] = run.settings["settings_hash"]
    return rec


def _write_cell_file(run: _Grid, g: _Group, m: str, rec: Dict[str, Any], result, per_instance) -> None:
    summary = result.to_dict()
    write_json(run.out / "cells" / f"{cell_name(m, g.k, g.seed)}.json", {
        "record": rec, "forget_indices": g.ids,
        "forget_ids": [run.bundle.train_ids[i] for i in g.ids],
        "per_instance": per_instance,
        "result": {key: v for key, v in summary.items() if key not in ("labels", "preds_before", "preds_after")},
    })


def _run_cell(run: _Grid, ev: _Evaluation, g: _Group, m: str) -> None:
    """Method ``m`` on (k, seed) through the request pipeline (:func:`l2ul.run_request`, as ``l2ul unlearn``
    runs it: unlearn, evaluate, report with its audit page), with this grid's loaded data, shared ingredients
    and evaluation sets; record the cell and re-render the outputs."""
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    data = {"retain": remaining_data(run.bundle.train, run.oracle_pool, g.config.retain_batch_size, g.seed,
                                     run.num_workers)} if "retain" in run.method_objs[m].data else {}
    data.update(proxy_method_data(run.method_objs[m], run.proxy))
    request = DeletionRequest(ids=g.ids, targets=g.targets, task=run.task,
                              source=f"l2ul bench: random_forget_ids({g.k}, seed={g.seed})"
                              + (" --relabel-to random" if g.targets is not None else ""),
                              extra={"reference": f"{len(run.reference[1])} labeled test images (the proxy split; "
                                                  "D_test is the rest)"} if run.reference is not None else {})
    prepared = PreparedRequest(bundle=run.bundle, request=request, data=data, ingredients=g.shared,
                               retain=ev.retain_data, test=ev.test_data, original=g.original,
                               mia_max_samples=run.mia_max_samples, mia_attack=run.mia_attack, write_model=False,
                               reference=run.reference)
    name = cell_name(m, g.k, g.seed)
    # the cell's report and audit page beside its record (cells/<cell>.report.json/.html); no model file
    outcome = run_request(out=run.out / "cells" / f"{name}.safetensors", report=run.out / "cells" / f"{name}.report.json",
                          model=ev.model, method=m, config=g.config, seed=g.seed, prepared=prepared, overwrite=True,
                          progress=run.progress)
    result, metrics = outcome.result, dict(outcome.metrics)
    mem = peak(run.device)
    rec = _cell_record(run, g, m, result, t_unlearn=outcome.timings["unlearn"],
                       t_eval=outcome.timings["evaluation"], mem=mem, metrics=metrics)
    _write_cell_file(run, g, m, rec, result, outcome.per_instance if result.status != "diverged" else None)
    append_jsonl(run.out / "results.jsonl", rec)
    run.records.append(rec)
    run.done.add((m, g.k, g.seed))
    run.n_done += 1
    run.log(cell_line(rec, run.n_done, run.n_cells))
    del result, outcome
    write_bench_outputs(run.out, run.settings, sort_records(run.records, run.methods, run.ks, run.seeds),
                        plots=False)


def _run_cells(run: _Grid, model: nn.Module) -> None:
    """Every cell not done yet, (k, seed) by (k, seed)."""
    ev = _prepare_evaluation(run, model)
    try:
        for k in run.ks:
            for seed in run.seeds:
                pending = [m for m in run.methods if (m, k, seed) not in run.done]
                if not pending:
                    continue
                g = _prepare_group(run, ev, k, seed, pending)
                for m in pending:
                    _run_cell(run, ev, g, m)
                del g
    finally:
        if run.device.type == "cuda":
            torch.cuda.empty_cache()


def run_bench(model: nn.Module, bundle: DatasetBundle, *, methods: Sequence[str] = DEFAULT_METHODS,
              ks: Sequence[int] = DEFAULT_KS, seeds: Sequence[int] = (0,), config: Optional[UnlearnConfig] = None,
              out_dir, retain_eval_size: Optional[int] = 10000, oracle_pool_size: Optional[int] = None,
              mia_max_samples: Optional[int] = 5000, mia_attack: str = "svc", progress: bool = True,
              log: Optional[Log] = print, config_name: Optional[str] = None, num_workers: int = 0,
              proxy_test_split: Optional[int] = None, task: str = "misclassify") -> List[Dict[str, Any]]:
    """Run every (method, k, seed) cell of the grid on ``model`` (the original, left untouched) and return
    one flat record per cell (see :mod:`l2ul.bench` for what is measured and written).

    Resumable: cells already in ``out_dir/results.jsonl`` with the same settings are not recomputed; a
    different setting (model weights, dataset, config other than seed/device, ks, seeds, D_r subset size,
    oracle pool size, MIA settings) raises :class:`L2ULError` asking for a new ``out_dir``. ``methods`` may
    change between runs. ``config.seed`` is replaced by each cell's grid seed. ``proxy_test_split=N``: N test
    images become the proxy of methods that use one (:mod:`l2ul.bench.proxy`); D_test is the rest.
    ``task="relabel"``: every request relabels its instances to random wrong classes (drawn as ``l2ul unlearn
    --relabel-to random`` draws them with the cell's seed) instead of misclassifying them. ``task="unseen"``
    (needs ``proxy_test_split``): every request makes its instances look unseen, measured on the proxy split
    with its labels as the reference set (:mod:`l2ul.unseen`); D_test, on which the loss AUC is measured, is
    the rest of the test split.
    """
    cfg0 = (config or UnlearnConfig()).validate()
    methods = resolve_methods(methods)
    ks = int_list(ks, "ks", minimum=1)
    seeds = int_list(seeds, "seeds", minimum=0)
    log = log or (lambda s: None)
    if mia_attack not in ("svc", "logistic"):
        raise ConfigError(f"mia_attack must be 'svc' or 'logistic', got {mia_attack!r}")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)} (relabel: random targets), got {task!r}")
    if task == "unseen":
        if not proxy_test_split:
            raise ConfigError("the unseen task needs a reference split: give --proxy-test-split N (N labeled test "
                              "images become the reference and the proxy; D_test is the rest)",
                              field="proxy_test_split")
        unable = [m for m in methods if "unseen" not in get_method(m).tasks]
        if unable:
            raise ConfigError(f"method(s) {', '.join(unable)} do not do the unseen task", field="methods")
    device = resolve_device(cfg0.device)
    run = _plan(model, bundle, cfg0, device, methods=methods, ks=ks, seeds=seeds, retain_eval_size=retain_eval_size,
                oracle_pool_size=oracle_pool_size, mia_max_samples=mia_max_samples, mia_attack=mia_attack,
                progress=progress, log=log, config_name=config_name, num_workers=num_workers,
                proxy_test_split=proxy_test_split, task=task)
    if _open(run, out_dir):
        _run_cells(run, model)
    records = sort_records(run.records, methods, ks, seeds)
    write_bench_outputs(run.out, run.settings, records, plots=True)
    log(f"bench: wrote {run.out / 'table.md'}, results.csv, results.json, plot_vs_k.png, plot_phase_times.png")
    return records
