"""One deletion request, end to end: :func:`run_request`.

check (settings, inputs: :func:`check_inputs`, outputs: :func:`claim_outputs`) -> load (model, data) ->
check (fit, request) -> unlearn -> evaluate -> report -> publish. ``l2ul unlearn`` is this function plus
printing; a Python user gets the same run, report and guarantees: everything that can be refused is refused
before any work; no output is written over or inside any input (:func:`run_inputs`), nor over a path that
is not a regular file; the outputs are locked from their check to the publish, so a concurrent run with the
same outputs fails at once; and the model and its report are published together (the report last, as the
commit record: :func:`l2ul.publish.publish_together`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from . import request_data as _request_data
from .config import UnlearnConfig
from .errors import L2ULError
from .inputs import (  # noqa: F401  (re-exported: the checks of every input, before any work)
    check_device_available,
    check_inputs,
    input_hashes,
    run_inputs,
)
from .request_data import keep_forgotten_data, method_data  # noqa: F401  (re-exported: a request's method data)
from .request_figures import (  # noqa: F401  (re-exported: how a request is measured)
    _check_retain_eval_size,
    evaluate_request,
    measure_request,
    retain_eval_sample,
    retain_eval_subset,
)

Log = Callable[[str], None]


@dataclass
class RequestOutcome:
    """What :func:`run_request` did: the engine's ``result``, the ``metrics`` (before/after), the ``report``
    (the JSON written), and where the model and report went (``model_path`` is ``None`` when no model was
    written: diverged, or not converged without ``keep_unconverged``)."""

    result: Any
    metrics: Dict[str, Any]
    report: Dict[str, Any]
    report_path: Optional[Path]
    model_path: Optional[Path] = None
    per_instance: List[Dict[str, Any]] = field(default_factory=list)
    #: wall seconds by stage: load, unlearn, evaluation, report, publish
    timings: Dict[str, float] = field(default_factory=dict)
    #: the unlearned model's predictions on the evaluation sets (``forget``, ``retain``, ``test``; ``None``
    #: when it diverged)
    predictions: Optional[Dict[str, Any]] = None

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def verdict(self) -> str:
        """:func:`verdict_of` the result: ``holds``, ``does_not_hold``, ``not_converged`` or ``diverged``."""
        return verdict_of(self.result)


def verdict_of(result) -> str:
    """Whether a request was honoured: ``holds`` (converged, and the forgetting holds with the original
    batch-norm statistics, or the model has none), ``does_not_hold`` (converged only thanks to batch-norm
    statistics that drifted during unlearning: with the original ones the instances would be back; or an
    instance of an earlier request given to keep forgotten is predicted as its label again),
    ``not_converged`` (the step budget ran out) or ``diverged``. Only ``holds`` is a success."""
    if result.status == "diverged":
        return "diverged"
    if not result.converged:
        return "not_converged"
    if result.holds_with_original_bn_stats is False or getattr(result, "earlier_stay_forgotten", None) is False:
        return "does_not_hold"
    return "holds"


@dataclass
class PreparedRequest:
    """A request whose inputs the caller already holds, for :func:`run_request` (``prepared=``): how ``l2ul
    bench`` runs every cell of a grid through the same pipeline as ``l2ul unlearn`` while loading the
    dataset and the model once, sharing ingredients between methods (one adversarial set per forget set)
    and evaluating every cell on the grid's own D_r subset and D_test.

    ``bundle``: the loaded dataset; ``request``: a :class:`l2ul.requests.DeletionRequest`; ``data``: the
    method's data; ``ingredients``: prepared ingredients by name (:func:`l2ul.engine.prepare_ingredients`).
    ``retain``/``test``: the evaluation sets, with ``original`` the original model's
    :class:`~l2ul.evaluation.ModelEvaluation` on (forget set, ``retain``, ``test``) under ``mia_max_samples``
    and ``mia_attack`` (``None``: the fixed D_r sample and the test split, as for any request).
    ``write_model``: publish the model file too (the bench keeps only the report and its audit page)."""

    bundle: Any
    request: Any
    data: Dict[str, Any] = field(default_factory=dict)
    ingredients: Optional[Dict[str, Any]] = None
    retain: Any = None
    test: Any = None
    original: Any = None
    mia_max_samples: Optional[int] = 5000
    mia_attack: str = "svc"
    write_model: bool = True
    inplace: bool = False                  # unlearn the given model itself (l2ul bench's continual requests)
    dataset_spec: Optional[str] = None     # what the report names as the dataset (default: the bundle's name)
    reference: Any = None                  # task unseen: labeled held-out (images, labels), see l2ul.unseen
    teacher: Any = None                    # repair toward this model (nn.Module) instead of the one given: the
                                           # proxy and teacher ingredients are prepared from it when not given


def versions() -> Dict[str, str]:
    import torch

    from . import __version__

    return {"l2ul": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def machine(device=None) -> Dict[str, Any]:
    """Where a run happened, as far as its bit-identical reproduction depends on it: the processor, the
    torch intra-op thread count (``torch.get_num_threads()``) and ``OMP_NUM_THREADS`` (which sets it when
    torch starts), the device. The same command, seed and inputs on the same machine with the same thread
    count give bit-identical weights and figures; another thread count may change the order of floating-
    point reductions, and so the last bits of the results."""
    from .bench.machine import machine_info

    return {**machine_info(device), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def _report(*, result, cfg, bundle, dataset_spec, request, inputs, input_sha, model, metrics, per_inst,
            n_retain_eval, retain_total, argv) -> Dict[str, Any]:
    return {
        "l2ul_report": 1, "command": "unlearn", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "argv": list(argv or []),
        "versions": versions(), "machine": machine(result.device),
        "status": result.status, "converged": result.converged, "verdict": verdict_of(result),
        "message": result.message, "steps": result.steps, "timings_s": result.timings, "phases": result.phases,
        "method": result.method, "task": result.task, "config": cfg.to_dict(), "device": result.device,
        "dataset": {"spec": dataset_spec, "name": bundle.name, "n_train": bundle.n_train, "n_test": bundle.n_test,
                    "retain_eval_size": n_retain_eval, "retain_total": retain_total},
        "request": request.to_dict(),
        "input_model": {"paths": [str(p) for p in inputs], "sha256": input_sha,
                        "arch": getattr(model, "l2ul_meta", {}).get("arch")},
        "output_model": {"path": None, "sha256": None},
        "metrics": metrics, "per_instance": per_inst,
        "adversarial_success": result.adversarial_success,
        "score_with_original_bn_stats": result.score_with_original_bn_stats,
        "holds_with_original_bn_stats": result.holds_with_original_bn_stats,
        "proxy": _proxy_source(result),
        # the earlier requests' instances kept forgotten (their ids are in request.extra.keep_forgotten)
        "kept_forgotten": result.kept_forgotten,
        **({"unseen": {**result.unseen, "reference": request.extra.get("reference")}}
           if result.unseen is not None else {}),
        "note_retain": ("the method trained on the remaining data; D_r is measured on a subset of it"
                        if "retain" in _method_obj(result.method).data else None),
    }


def _proxy_source(result) -> Optional[str]:
    """Which proxy images the method distilled on (the report says so), or ``None``."""
    p = result.ingredients.get("proxy")
    return None if p is None else p.source


def _method_obj(name):
    from .methods import get_method

    return get_method(name)


def _output_paths(out, report, overwrite: bool, inputs: Sequence[str]):
    """The model and report paths, checked (:func:`l2ul.safety.check_output_path`, ``check_writable``)."""
    from .safety import check_output_path, check_writable

    out = check_output_path(out, overwrite=overwrite, inputs=tuple(inputs))
    report_path = Path(report) if report else out.with_name(out.name + ".report.json")
    if os.path.realpath(report_path) == os.path.realpath(out):
        raise L2ULError(f"the report and the model output are the same file ({out}); give the report another path")
    check_output_path(report_path, overwrite=overwrite, inputs=tuple(inputs))
    check_output_path(_page_path(report_path), overwrite=overwrite, inputs=tuple(inputs))
    check_writable(out)
    check_writable(report_path)
    return out, report_path


def _page_path(report_path: Path) -> Path:
    """The audit page written beside the report (``OUT.report.json`` -> ``OUT.report.html``)."""
    from .audit import default_page_path

    return default_page_path(report_path)


@contextlib.contextmanager
def claim_outputs(out, report, *, overwrite: bool, inputs: Sequence[str], log: Optional[Log] = None):
    """Check the outputs of a run and hold them until it has published: yields ``(out, report_path)``.

    First every check that needs no lock (an input, a path that is not a regular file, an unwritable
    folder); then, under :func:`l2ul.publish.output_lock` (so a concurrent run with the same outputs fails at
    once), the removal of an output an interrupted publish left incomplete
    (:func:`l2ul.publish.recover_incomplete`) and the existence checks (``overwrite``; the report and audit page
    of an earlier run that wrote no model at ``out`` never block its retry)."""
    from .publish import output_lock, recover_incomplete

    out, report_path = _output_paths(out, report, True, inputs)
    with output_lock(out, report_path):
        note = recover_incomplete(out)
        if note and log:
            log(note)
        retry = not overwrite and _report_of_a_run_without_model(out, report_path)
        if retry and log:
            log(f"l2ul: replacing {report_path}, the report of an earlier run that wrote no model")
        # a retry of a run that wrote no model replaces that run's report and audit page (``out`` is absent)
        yield _output_paths(out, report_path, overwrite or retry, inputs)


def _report_of_a_run_without_model(out: Path, report_path: Path) -> bool:
    """Whether ``out`` is absent and ``report_path`` is an l2ul report of a run that wrote no model at ``out``
    (it failed, or did not converge without ``--keep-unconverged``): such a report does not block a retry."""
    import json

    if out.exists() or not report_path.is_file():
        return False
    try:
        rep = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(rep, dict) and rep.get("l2ul_report") is not None and rep.get("command") == "unlearn"
            and isinstance(rep.get("output_model"), dict) and rep["output_model"].get("path") is None)


def run_request(*, out: Union[str, Path], model: Union[str, Path, nn.Module, None] = None,
                arch: Optional[str] = None, weights: Optional[str] = None, num_classes: Optional[int] = None,
                dataset: str = "digits", data_dir=None, download: bool = False, forget_ids: Optional[str] = None,
                forget_random: Optional[int] = None, relabel_to: Optional[str] = None, seed: int = 0,
                method: str = "repair", config: Optional[UnlearnConfig] = None, report: Optional[str] = None,
                proxy: Optional[str] = None, allow_training_proxy: bool = False, reference: Optional[str] = None,
                overwrite: bool = False, keep_unconverged: bool = False, retain_eval_size: int = 10000,
                progress: Optional[bool] = None, log: Optional[Log] = None, argv: Optional[Sequence[str]] = None,
                cache: Optional[bool] = None, prepared: Optional[PreparedRequest] = None,
                keep_forgotten: Optional[str] = None,
                repair_toward: Union[str, Path, nn.Module, None] = None) -> RequestOutcome:
    """Honour one deletion request end to end and publish the unlearned model with its audit report.

    ``model``: an l2ul model file (or an ``nn.Module`` already loaded), or ``arch`` + ``weights`` for a foreign
    checkpoint. ``dataset``: a dataset spec (:func:`l2ul.load_dataset`). The request: ``forget_ids`` (a comma
    list, or ``@FILE``) or ``forget_random`` (K random instances with ``seed``), ``relabel_to`` for the relabel
    task. ``method``: default ``repair`` (forget, then repair); ``proxy``: a proxy-image spec for it
    (``npz:PATH``, ``imagefolder:PATH``; data-free without one), refused if it overlaps the training split
    unless ``allow_training_proxy``. ``reference``: a labeled held-out set (:mod:`l2ul.reference`), which makes
    the task ``unseen`` (:mod:`l2ul.unseen`). ``config``'s seed is replaced by ``seed``. ``out``: the model file; ``report``: its JSON report
    (default ``OUT.report.json``). The model is written only if the request holds (:func:`verdict_of`), or
    with ``keep_unconverged`` if it did not diverge; the report always. ``log``: called with progress lines. ``progress``: progress
    bars on stderr (default: when stderr is a terminal). ``cache``: whether the
    original model's figures may come from (and go to) the outputs cache (:mod:`l2ul.output_cache`;
    default: unless ``$L2UL_CACHE=0``). ``prepared``: a :class:`PreparedRequest` (the dataset, request and
    method data already loaded, with ``model`` an ``nn.Module``), in place of ``dataset``, ``forget_ids``,
    ``forget_random``, ``relabel_to`` and ``proxy``. ``keep_forgotten``: the training instances of earlier
    requests on this model (ids as for ``forget_ids``), which a method that takes them (``repair``) keeps off
    their label; the engine checks them, the report counts those back on their label (the verdict is then
    ``does_not_hold``), and D_r is measured without them. ``repair_toward``: an l2ul model file (or an
    ``nn.Module``; :func:`~l2ul.request_data.repair_toward_model`) whose outputs the repair distils toward.

    Before any work it raises a one-line :class:`~l2ul.errors.L2ULError` for a bad setting (seed, device,
    ``retain_eval_size``), a damaged or unusable input (:func:`check_inputs`), an output that is an input,
    inside an input folder, not a regular file, already there without ``overwrite``, or being written by
    another run (:func:`claim_outputs`). An incomplete output that a killed run left at ``out`` is removed
    first (:func:`l2ul.publish.recover_incomplete`).
    """
    from ._progress import auto_progress

    log = log or (lambda s: None)
    progress = auto_progress(progress)
    # everything that can be refused is refused here, before any work: the settings, the inputs, the outputs
    config = (config or UnlearnConfig()).replace(seed=seed)
    check_device_available(config.device)
    _check_retain_eval_size(retain_eval_size)
    inputs = [str(p) for p in (model, weights, repair_toward) if isinstance(p, (str, os.PathLike))]
    if prepared is not None and not isinstance(model, nn.Module):
        from .errors import ConfigError

        raise ConfigError("a prepared request needs the model as an nn.Module", field="model")
    if keep_forgotten is not None and prepared is not None:
        from .errors import ConfigError

        raise ConfigError("give keep_forgotten in the prepared request's data, not beside it", field="keep_forgotten")
    _request_data.check_repair_toward(method, repair_toward, prepared)
    original = repair_toward if isinstance(repair_toward, (str, os.PathLike)) else None
    every_input = run_inputs(model=model, weights=weights, original=original, dataset=dataset, forget_ids=forget_ids,
                             relabel_to=relabel_to, proxy=proxy, reference=reference, keep_forgotten=keep_forgotten)
    check_inputs(model=model, weights=weights, original=original, dataset=dataset, forget_ids=forget_ids,
                 relabel_to=relabel_to, proxy=proxy, reference=reference, keep_forgotten=keep_forgotten)
    if reference is not None and "unseen" not in _method_obj(method).tasks:
        from .errors import ConfigError

        raise ConfigError(f"method {method!r} does not do the unseen task (--reference-data); use method 'repair'",
                          field="method")
    load = dict(model=model, arch=arch, weights=weights, num_classes=num_classes, dataset=dataset, data_dir=data_dir,
                download=download, forget_ids=forget_ids, forget_random=forget_random, relabel_to=relabel_to,
                seed=seed, method=method, proxy=proxy, allow_training_proxy=allow_training_proxy, reference=reference,
                keep_forgotten=keep_forgotten, repair_toward=repair_toward)
    with claim_outputs(out, report, overwrite=overwrite, inputs=every_input, log=log) as (out, report_path):
        return _run_claimed(
            out=out, report_path=report_path, inputs=inputs, seed=seed, method=method,
            config=config, keep_unconverged=keep_unconverged, retain_eval_size=retain_eval_size, progress=progress,
            log=log, argv=argv, cache=cache, prepared=prepared, load=load)


def _load(*, model, arch, weights, num_classes, dataset, data_dir, download, forget_ids, forget_random,
          relabel_to, seed, method, proxy, allow_training_proxy, reference,
          keep_forgotten=None, repair_toward=None) -> Tuple[PreparedRequest, nn.Module]:
    """Load and check what :func:`run_request` names: the dataset, the model, the request, the method's data."""
    from .data import load_dataset
    from .loading import adopt_class_names, check_fit, load_model_from
    from .requests import build_request

    bundle = load_dataset(dataset, data_dir=data_dir, download=download)
    if isinstance(model, nn.Module):  # (a model file is checked when it is read)
        from .models import check_finite_model

        check_finite_model(model)
        net = model
    else:
        net = load_model_from(model=model, arch=arch, weights=weights, num_classes=num_classes)
    check_fit(net, bundle)
    adopt_class_names(net, bundle)          # a foreign checkpoint's model gets the dataset's class names
    request = build_request(n_train=bundle.n_train, train_labels=bundle.train_labels, num_classes=bundle.num_classes,
                            forget_ids=forget_ids, forget_random=forget_random, relabel_to=relabel_to, seed=seed,
                            train_ids=bundle.train_ids, class_names=bundle.class_names, unseen=reference is not None)
    data = method_data(method, bundle, request.ids, proxy=proxy, allow_training_proxy=allow_training_proxy)
    if keep_forgotten is not None:
        kept = keep_forgotten_data(method, bundle, request, keep_forgotten)
        if kept is not None:
            data["keep_forgotten"] = kept
    ref = None
    if reference is not None:
        from .reference import check_reference_not_training, describe_reference, load_reference

        xf, _ = bundle.stack_train(request.ids[:1])
        ref = load_reference(reference, image_shape=tuple(xf.shape[1:]), num_classes=bundle.num_classes,
                             class_names=bundle.class_names)
        check_reference_not_training(ref, bundle)
        request.extra["reference"] = describe_reference(reference, ref)
    teacher = _request_data.repair_toward_model(bundle, request, repair_toward) if repair_toward is not None else None
    return PreparedRequest(bundle=bundle, request=request, data=data, dataset_spec=dataset, reference=ref,
                           teacher=teacher), net


def _run_claimed(*, out: Path, report_path: Path, inputs: List[str], seed, method, config,
                 keep_unconverged, retain_eval_size, progress, log, argv, cache, prepared, load) -> RequestOutcome:
    """:func:`run_request` once its outputs are claimed."""
    from .audit import report_thumbnails
    from .engine import unlearn

    t0 = time.perf_counter()
    input_sha = input_hashes(inputs)
    cfg = config
    if prepared is None:
        prepared, net = _load(**load)
    else:
        from .models import check_finite_model

        net = load["model"]
        check_finite_model(net)
    bundle, request = prepared.bundle, prepared.request
    xf, yf = bundle.stack_train(request.ids)
    stages = {"load": time.perf_counter() - t0}
    t0 = time.perf_counter()
    if prepared.teacher is not None and prepared.ingredients is None:
        log("l2ul: preparing the proxy and the teacher outputs from the --repair-toward model")
        prepared.ingredients = _request_data.teacher_ingredients(prepared.teacher, request, xf, yf, prepared.data,
                                                                 cfg, progress)
    log(f"l2ul: {bundle.name}: forgetting {len(request.ids)} instance(s) with {method} ({request.task}); "
        f"device {cfg.device or 'auto'}")
    result = unlearn(net, xf, yf, method=method, task=request.task, targets=request.targets, config=cfg,
                     data=prepared.data, progress=progress, ingredients=prepared.ingredients,
                     inplace=prepared.inplace, reference=prepared.reference)
    stages["unlearn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_retain_eval, retain_total, figures = _figures(net, result, prepared, retain_eval_size, seed, cfg, cache, log,
                                                    progress)
    metrics, per_inst, per_class, after = figures
    stages["evaluation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = _report(result=result, cfg=cfg, bundle=bundle, dataset_spec=prepared.dataset_spec or bundle.name,
                  request=request, inputs=inputs, input_sha=input_sha, model=net, metrics=metrics,
                  per_inst=per_inst, n_retain_eval=n_retain_eval, retain_total=retain_total, argv=argv)
    rep["per_class_test"] = per_class
    rep["thumbnails"] = report_thumbnails(xf, [r["id"] for r in per_inst])
    stages["report"] = time.perf_counter() - t0
    # the request's wall time by stage (the unlearning's own parts are in timings_s); publishing is after
    rep["request_timings_s"] = {**stages, "total_before_publish": sum(stages.values())}
    t0 = time.perf_counter()
    # the model is published when the request is met and holds with the original batch-norm statistics;
    # otherwise (not converged, or the forgetting lives in drifted statistics) only with keep_unconverged
    write_model = prepared.write_model and result.status != "diverged" and (
        verdict_of(result) == "holds" or keep_unconverged)
    model_path = _publish(result.model if write_model else None, out, rep, report_path)
    stages["publish"] = time.perf_counter() - t0
    return RequestOutcome(result=result, metrics=metrics, report=rep, report_path=report_path,
                          model_path=model_path, per_instance=per_inst, timings=stages, predictions=after)


def _figures(net, result, prepared: PreparedRequest, retain_eval_size, seed, cfg, cache, log, progress):
    """``(D_r size, remaining-data size, (metrics, per_instance, per_class, predictions after))``: on the fixed D_r sample and the
    test split, or on the sets a prepared request brings (with the original's evaluation on them)."""
    bundle, request = prepared.bundle, prepared.request
    kept = (request.extra.get("keep_forgotten") or {}).get("ids", [])
    retain_total = len(bundle.retain_indices(list(request.ids) + list(kept)))
    if prepared.original is not None:
        sets = dict(forget=bundle.stack_train(request.ids), retain=prepared.retain, test=prepared.test)
        log(f"l2ul: evaluating on D_f ({len(request.ids)}) and the given D_r and D_test")
        figures = measure_request(prepared.original, result, bundle, request, sets, seed=seed,
                                  mia_max_samples=prepared.mia_max_samples, mia_attack=prepared.mia_attack,
                                  batch_size=cfg.eval_batch(result.device), progress=progress)
        return figures[0]["n_retain"], retain_total, figures
    eval_sample = retain_eval_sample(bundle, retain_eval_size)
    eval_ids = retain_eval_subset(bundle, list(request.ids) + list(kept), retain_eval_size)
    log(f"l2ul: evaluating on D_f ({len(request.ids)}), D_r ({len(eval_ids)}"
        f"{' random' if len(eval_ids) < retain_total else ''}) and D_test ({bundle.n_test})")
    figures = evaluate_request(net, result, bundle, request, eval_ids, seed=seed, eval_sample=eval_sample,
                               cache=cache, batch_size=cfg.eval_batch(result.device), progress=progress)
    return len(eval_ids), retain_total, figures


def _publish(model: Optional[nn.Module], out: Path, report: Dict[str, Any], report_path: Path) -> Optional[Path]:
    """Write the model (if any), the audit page and the report to temporary files and publish them together
    (the report last: it is the commit record)."""
    from .audit import render_audit_page
    from .models.io import save_model
    from .publish import publish_together
    from .reports import write_json
    from .safety import sha256_file

    with publish_together() as stage:
        if model is not None:
            tmp = stage(out)
            save_model(model, tmp, overwrite=True)
            report["output_model"] = {"path": str(out), "sha256": sha256_file(tmp)}
        stage(_page_path(report_path)).write_text(render_audit_page(report), encoding="utf-8")
        write_json(stage(report_path), report)
    return out if model is not None else None
