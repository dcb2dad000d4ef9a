"""Successive deletion requests on one model, per method (:func:`run_continual`), resumable request by
request through per-method checkpoints."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..config import UnlearnConfig
from ..data import DatasetBundle
from ..engine import prepare_ingredients, resolve_device
from ..errors import ConfigError
from ..evaluation import Predictions, accuracy_from_predictions, agreement, evaluate_model, predict
from ..loading import check_fit
from ..methods import get_method
from ..pipeline import PreparedRequest, run_request
from ..requests import DeletionRequest
from .common import (
    DEFAULT_METHODS,
    RECORD_CONFIG_FIELDS,
    Log,
    model_on,
    phase_times,
    resolve_methods,
)
from .machine import peak
from .proxy import describe as proxy_describe
from .proxy import hashed as proxy_hashed
from .proxy import method_data as proxy_method_data
from .proxy import proxy_images, split_test
from .render import fmt_pct, write_continual_outputs
from .splits import continual_forget_sets, eval_data, eval_splits, remaining_data
from .store import (
    append_jsonl,
    checkpoint_path,
    checkpoint_request,
    common_settings,
    load_checkpoint,
    open_out_dir,
    rewrite_jsonl,
    save_checkpoint,
)

__all__ = ["run_continual", "REPAIR_TOWARD"]

#: what a continual run's repair distils toward: the model before each request (the default) or the original
REPAIR_TOWARD = ("previous", "original")

#: MIA samples per class of the requests' reports (logistic attack; the continual records do not use MIA)
_MIA_SAMPLES = 1000


@dataclass
class _Continual:
    """One :func:`run_continual` call: what it runs, where it writes, and the records so far."""

    bundle: DatasetBundle
    config: UnlearnConfig
    methods: List[str]
    requests: int
    k: int
    seed: int
    device: torch.device
    method_objs: Dict[str, Any]
    sets: List[List[int]]
    retain_eval: np.ndarray
    oracle_pool: np.ndarray
    settings: Dict[str, Any]
    progress: bool
    log: Log
    config_name: Optional[str]
    num_workers: int
    test_eval: Optional[np.ndarray] = None       # D_test indices (None: the whole test split)
    proxy: Optional[torch.Tensor] = None          # proxy images split from the test set (proxy_test_split)
    repair_toward: str = "previous"               # the repair's teacher: "previous" model or the "original"
    out: Path = Path()
    records: List[Dict[str, Any]] = field(default_factory=list)
    shared: Dict[str, Any] = field(default_factory=dict)

    @property
    def jsonl(self) -> Path:
        return self.out / "continual.jsonl"


@dataclass
class _Evaluation:
    """The original model on the device, the evaluation data (all requests' instances stacked: positions
    ``r*k .. (r+1)*k-1`` are request ``r+1``), the original's predictions and its figures."""

    model: nn.Module
    retain_data: Any
    test_data: Any
    forget_data: Tuple[torch.Tensor, torch.Tensor]
    test0: Predictions
    base: Dict[str, Any]
    retain0: Optional[Predictions] = None
    forget0: Optional[Predictions] = None


def _acc(p: Predictions, idx: Optional[Sequence[int]]) -> Optional[float]:
    if idx is None or len(idx) == 0:
        return None
    return accuracy_from_predictions(p.subset(idx))


def _plan(model: nn.Module, bundle: DatasetBundle, cfg0: UnlearnConfig, device: torch.device, *,
          methods: List[str], requests: int, k: int, seed: int, retain_eval_size: Optional[int],
          oracle_pool_size: Optional[int], progress: bool, log: Log, config_name: Optional[str],
          num_workers: int, proxy_test_split: Optional[int] = None, repair_toward: str = "previous") -> _Continual:
    """The requests' forget sets, the D_r subset and oracle pool, and the settings of a continual run."""
    if repair_toward not in REPAIR_TOWARD:
        raise ConfigError(f"repair_toward must be one of {', '.join(REPAIR_TOWARD)}, got {repair_toward!r}")
    sets = continual_forget_sets(bundle.n_train, requests, k, seed)
    retain_eval, oracle_pool = eval_splits(bundle.n_train, sets, retain_eval_size, oracle_pool_size=oracle_pool_size)
    method_objs = {m: get_method(m) for m in methods}
    proxy_idx, test_eval = split_test(bundle, proxy_test_split)
    if any("retain" in o.data for o in method_objs.values()) and len(oracle_pool) == 0:
        raise ConfigError("no training data is left for the oracle's remaining data; lower --retain-eval-size")
    settings = common_settings(
        model, bundle, cfg0, mode="continual", retain_eval_size=retain_eval_size, retain_eval=retain_eval,
        oracle_pool=oracle_pool, oracle_pool_size=oracle_pool_size,
        forget_desc=(f"{requests} successive disjoint requests of {k} training instances each, drawn once from "
                     f"numpy default_rng({seed}).permutation(n_train) (un-augmented images)"),
        extra_hashed={"requests": requests, "k": k, "seed": seed, "task": "misclassify",
                      **proxy_hashed(proxy_idx),
                      # hashed only when it is not the default, so the folders of earlier runs still resume
                      **({"repair_toward": repair_toward} if repair_toward != "previous" else {})},
        device=device, config_name=config_name, methods=methods,
        notes=["request r runs the engine with seed = seed * 1000 + r; adversarial examples and importance "
               "are computed on the current model of each method, so they are not shared",
               ("methods with a repair phase distil toward the model as it was before each request"
                if repair_toward == "previous" else
                "methods with a repair phase distil toward the original model at every request (teacher "
                "logits computed once from the original, --repair-toward original)") +
               ", on proxy images prepared once from the original model, and keep every earlier request's "
               "instances forgotten (keep_forgotten)"])
    if proxy_idx is not None:
        settings["test"] = proxy_describe(proxy_idx, test_eval)
    return _Continual(bundle=bundle, config=cfg0, methods=methods, requests=requests, k=k, seed=seed,
                      device=device, method_objs=method_objs, sets=sets, retain_eval=retain_eval,
                      oracle_pool=oracle_pool, settings=settings, progress=progress, log=log,
                      config_name=config_name, num_workers=num_workers, test_eval=test_eval,
                      proxy=proxy_images(bundle, proxy_idx), repair_toward=repair_toward)


def _open(run: _Continual, out_dir) -> Tuple[List[str], Dict[str, int]]:
    """Open (or resume) the results folder: keep the records of complete methods and of partial methods up
    to their last checkpointed request. Returns the methods to run and where each resumes."""
    run.out, old = open_out_dir(out_dir, run.settings, "continual.jsonl")
    h = run.settings["settings_hash"]  # after: a legacy folder keeps its own hash
    complete = {m for m in {r["method"] for r in old}
                if {r["request"] for r in old if r["method"] == m} >= set(range(run.requests + 1))}
    resume_at: Dict[str, int] = {}     # method -> last request recorded and checkpointed
    for m in {r["method"] for r in old} - complete:
        got = {r["request"] for r in old if r["method"] == m}
        last = -1
        while last + 1 in got:
            last += 1
        if last >= 1 and checkpoint_request(checkpoint_path(run.out, m), h) == last:
            resume_at[m] = last
    run.records = [r for r in old if r["method"] in complete
                   or (r["method"] in resume_at and r["request"] <= resume_at[r["method"]])]
    if len(run.records) != len(old):
        rewrite_jsonl(run.jsonl, run.records)
    todo = [m for m in run.methods if m not in complete]
    run.log(f"continual: {len(run.methods)} methods x {run.requests} requests of {run.k} on {run.device}; D_r subset "
            f"{len(run.retain_eval)}, D_test {run.bundle.n_test if run.test_eval is None else len(run.test_eval)}; out {run.out}"
            + (f"; resuming: {', '.join(m for m in run.methods if m in complete)} already done"
               if complete & set(run.methods) else "")
            + "".join(f"; resuming {m} after request {r}" for m, r in resume_at.items() if m in todo))
    return todo, resume_at


def _prepare_evaluation(run: _Continual, model: nn.Module) -> _Evaluation:
    """The original model on the device (checked against the data), the evaluation data and its figures."""
    dev_model = model_on(model, run.device)
    check_fit(dev_model, run.bundle, run.device)
    bs = run.config.eval_batch(run.device)
    train_eval = run.bundle.extra.get("train_eval", run.bundle.train)
    retain_data = eval_data(train_eval, run.retain_eval, bs, run.num_workers)
    test_data = eval_data(run.bundle.test, run.test_eval, bs, run.num_workers)
    all_ids = [i for s in run.sets for i in s]
    forget_data = run.bundle.stack_train(all_ids)      # positions r*k .. (r+1)*k-1 are request r+1
    test0 = predict(dev_model, test_data, batch_size=bs)
    retain0 = predict(dev_model, retain_data, batch_size=bs)
    forget0 = predict(dev_model, forget_data, batch_size=bs)
    base = {"acc_retain": accuracy_from_predictions(retain0), "acc_test": accuracy_from_predictions(test0),
            "acc_all_requests": accuracy_from_predictions(forget0)}
    return _Evaluation(dev_model, retain_data, test_data, forget_data, test0, base, retain0, forget0)


def _original_record(run: _Continual, ev: _Evaluation, m: str) -> Dict[str, Any]:
    """Request 0 of method ``m``: the original model."""
    return {"method": m, "request": 0, "k": run.k, "seed": run.seed, "status": "original", **ev.base,
            "acc_forget": None, "acc_previously_forgotten": None, "acc_forgotten_so_far": None,
            "agreement_test": 1.0, "steps": 0, "converged": None, "time_adversarial": 0.0,
            "time_importance": 0.0, "time_optimization": 0.0, "time_total": 0.0,
            "settings_hash": run.settings["settings_hash"]}


def _request_record(run: _Continual, ev: _Evaluation, m: str, r: int, cfg: UnlearnConfig, result,
                    pos: List[int], after) -> Tuple[Dict[str, Any], Optional[Tuple[Predictions, ...]]]:
    """The record of request ``r`` of method ``m``, evaluated on ``result.model`` (its D_r and D_test
    predictions ``after`` come from the request pipeline), and the model's predictions (test, retain, all
    requests' instances) that the next request starts from."""
    k = run.k
    rec = {"method": m, "request": r, "k": k, "seed": run.seed, "status": result.status,
           "converged": result.converged, "steps": result.steps, **phase_times(result.timings, result.phases)}
    preds = None
    if result.status == "diverged":
        rec.update(acc_retain=None, acc_test=None, acc_forget=None, acc_previously_forgotten=None,
                   acc_forgotten_so_far=None, acc_all_requests=None, agreement_test=None)
    else:
        tp, rp = after["test"], after["retain"]
        fp = predict(result.model, ev.forget_data, batch_size=run.config.eval_batch(run.device))
        rec.update(acc_retain=accuracy_from_predictions(rp), acc_test=accuracy_from_predictions(tp),
                   acc_forget=_acc(fp, pos), acc_previously_forgotten=_acc(fp, list(range((r - 1) * k))),
                   acc_forgotten_so_far=_acc(fp, list(range(r * k))),
                   acc_all_requests=accuracy_from_predictions(fp), agreement_test=agreement(ev.test0, tp))
        preds = (tp, rp, fp)
    rec.update(peak(run.device))
    rec.update({f: getattr(cfg, f) for f in RECORD_CONFIG_FIELDS})
    rec.update(config_name=run.config_name, device=str(run.device), engine_seed=cfg.seed,
               forget_indices=run.sets[r - 1], message=result.message, settings_hash=run.settings["settings_hash"])
    return rec, preds


def _before(run: _Continual, ev: _Evaluation, cfg: UnlearnConfig, pos: List[int], current_preds):
    """The model before request ``r`` evaluated on (its instances, D_r, D_test), from its predictions (the
    original's, or the previous request's): what the pipeline measures the request against. Its MIA figures
    use the cheap logistic attack on 1,000 samples per class (the continual records do not use them)."""
    tp, rp, fp = current_preds if current_preds is not None else (ev.test0, ev.retain0, ev.forget0)
    return evaluate_model({"forget": fp.subset(pos), "retain": rp, "test": tp}, seed=cfg.seed,
                          mia_max_samples=_MIA_SAMPLES, mia_attack="logistic")


def _unlearn_request(run: _Continual, ev: _Evaluation, m: str, current: nn.Module, r: int, current_preds=None):
    """Apply request ``r`` to ``current`` with method ``m`` through the request pipeline
    (:func:`l2ul.run_request`: its report and audit page go to ``requests/``); returns the engine result, the
    record and the unlearned model's predictions."""
    k = run.k
    pos = list(range((r - 1) * k, r * k))
    xf, yf = ev.forget_data[0][pos], ev.forget_data[1][pos]
    cfg = run.config.replace(seed=run.seed * 1000 + r)
    mo = run.method_objs[m]
    data = ({"retain": remaining_data(run.bundle.train, run.oracle_pool, cfg.retain_batch_size, cfg.seed,
                                      run.num_workers)} if "retain" in mo.data else {})
    data.update(proxy_method_data(mo, run.proxy))
    if "keep_forgotten" in mo.optional_data and r > 1:
        earlier = list(range((r - 1) * k))
        data["keep_forgotten"] = (ev.forget_data[0][earlier], ev.forget_data[1][earlier])
    given = {}
    if "proxy" in mo.ingredients:
        # the proxy images are prepared once, from the original model (data-free: one synthesis per model);
        # the teacher outputs are the current model's, i.e. the model as it was before this request, or
        # (repair_toward "original") the original model's, computed once with the proxy
        names = ["proxy", "teacher"] if run.repair_toward == "original" and "teacher" in mo.ingredients else ["proxy"]
        if any(n not in run.shared for n in names):
            run.shared.update(prepare_ingredients(ev.model, xf, yf, names, config=cfg, data=data,
                                                  progress=run.progress))
        given.update({n: run.shared[n] for n in names})
    request = DeletionRequest(ids=run.sets[r - 1], source=f"l2ul bench --requests: request {r} of {run.requests}")
    # the first request copies the original; later ones update this method's own model in place
    prepared = PreparedRequest(bundle=run.bundle, request=request, data=data, ingredients=given,
                               retain=ev.retain_data, test=ev.test_data, original=_before(run, ev, cfg, pos, current_preds),
                               mia_max_samples=_MIA_SAMPLES, mia_attack="logistic", write_model=False,
                               inplace=current is not ev.model)
    folder = run.out / "requests"
    outcome = run_request(out=folder / f"{m}_r{r}.safetensors", report=folder / f"{m}_r{r}.report.json",
                          model=current, method=m, config=cfg, seed=cfg.seed, prepared=prepared, overwrite=True,
                          progress=run.progress)
    result = outcome.result
    rec, preds = _request_record(run, ev, m, r, cfg, result, pos, outcome.predictions)
    return result, rec, preds


def _predict_current(run: _Continual, ev: _Evaluation, model: nn.Module):
    """``(test, retain, all requests' instances)`` predictions of a model resumed from a checkpoint."""
    bs = run.config.eval_batch(run.device)
    return (predict(model, ev.test_data, batch_size=bs), predict(model, ev.retain_data, batch_size=bs),
            predict(model, ev.forget_data, batch_size=bs))


def _record(run: _Continual, rec: Dict[str, Any]) -> None:
    append_jsonl(run.jsonl, rec)
    run.records.append(rec)


def _skip_after(run: _Continual, m: str, r: int) -> None:
    """Record method ``m``'s requests after the diverged request ``r`` as skipped."""
    run.log(f"{m}: diverged at request {r}; its later requests are skipped")
    for r2 in range(r + 1, run.requests + 1):
        _record(run, {"method": m, "request": r2, "k": run.k, "seed": run.seed, "status": "skipped",
                      "converged": False, "steps": 0, "time_adversarial": None,
                      "time_importance": None, "time_optimization": None, "time_total": None,
                      "acc_retain": None, "acc_test": None, "acc_forget": None,
                      "acc_previously_forgotten": None, "acc_forgotten_so_far": None,
                      "acc_all_requests": None, "agreement_test": None,
                      "forget_indices": run.sets[r2 - 1], "settings_hash": run.settings["settings_hash"]})


def _run_method(run: _Continual, ev: _Evaluation, m: str, start: int) -> None:
    """Method ``m``'s requests after ``start`` (its checkpoint), or all of them from the original model."""
    h = run.settings["settings_hash"]
    ckpt = checkpoint_path(run.out, m)
    if start:
        current = copy.deepcopy(ev.model)
        load_checkpoint(ckpt, current)
    else:
        _record(run, _original_record(run, ev, m))
        current = ev.model
    preds = None   # the current model's predictions (None: the original's, or unknown after a resume)
    for r in range(start + 1, run.requests + 1):
        if preds is None and current is not ev.model:       # resumed from a checkpoint: predict it once
            preds = _predict_current(run, ev, current)
        result, rec, preds = _unlearn_request(run, ev, m, current, r, preds)
        current = result.model
        if result.status != "diverged" and r < run.requests:
            save_checkpoint(ckpt, current, r, h)      # before the record: a record implies its model
        _record(run, rec)
        run.log(f"{m} request {r}/{run.requests}: {result.status} after {result.steps} steps | D_f "
                f"{fmt_pct(rec['acc_forget'])}, earlier D_f {fmt_pct(rec['acc_previously_forgotten'])}, "
                f"D_r {fmt_pct(rec['acc_retain'])}, D_test {fmt_pct(rec['acc_test'])} | "
                f"t_adv {rec['time_adversarial']:.2f}s, t_imp {rec['time_importance']:.2f}s, "
                f"t_opt {rec['time_optimization']:.2f}s")
        write_continual_outputs(run.out, run.settings, run.records, plots=False)
        if result.status == "diverged":
            _skip_after(run, m, r)
            break
    if ckpt.exists():
        ckpt.unlink()
    del current


def run_continual(model: nn.Module, bundle: DatasetBundle, *, methods: Sequence[str] = DEFAULT_METHODS,
                  requests: int = 8, k: int = 16, seed: int = 0, config: Optional[UnlearnConfig] = None,
                  out_dir, retain_eval_size: Optional[int] = 10000, oracle_pool_size: Optional[int] = None,
                  progress: bool = True, log: Optional[Log] = print, config_name: Optional[str] = None,
                  num_workers: int = 0, proxy_test_split: Optional[int] = None,
                  repair_toward: str = "previous") -> List[Dict[str, Any]]:
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

    ``repair_toward``: what methods with a repair phase (``repair``) distil toward at each request:
    ``"previous"`` (default), the model as it was before that request, so the repairs' losses add up; or
    ``"original"``, the original model's outputs on the proxy at every request (computed once), so the
    repair cannot drift from request to request. The earlier requests' instances are kept forgotten either
    way (``keep_forgotten``). Methods without a repair phase ignore it.
    """
    cfg0 = (config or UnlearnConfig()).validate()
    methods = resolve_methods(methods)
    requests, k = int(requests), int(k)
    log = log or (lambda s: None)
    device = resolve_device(cfg0.device)
    run = _plan(model, bundle, cfg0, device, methods=methods, requests=requests, k=k, seed=seed,
                retain_eval_size=retain_eval_size, oracle_pool_size=oracle_pool_size, progress=progress, log=log,
                config_name=config_name, num_workers=num_workers, proxy_test_split=proxy_test_split,
                repair_toward=repair_toward)
    todo, resume_at = _open(run, out_dir)
    if todo:
        ev = _prepare_evaluation(run, model)
        for m in todo:
            _run_method(run, ev, m, resume_at.get(m, 0))
    records = run.records
    order = {m: i for i, m in enumerate(methods)}
    records.sort(key=lambda r: (order.get(r["method"], len(order)), r["request"]))
    write_continual_outputs(run.out, run.settings, records, plots=True)
    log(f"continual: wrote {run.out / 'continual.md'}, continual.json, continual.jsonl, plot_continual.png")
    return records
