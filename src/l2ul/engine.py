"""The unlearning engine: :func:`unlearn` runs one deletion request on a classifier.

The engine owns the run; the method (:mod:`l2ul.methods`) owns what it needs and its losses. Steps, each
timed: validate the request and copy the model; prepare the method's declared ingredients on the original
model (e.g. adversarial examples, MAS importance; :mod:`l2ul.methods.ingredients`), in order, each timed
under its name; ``method.setup``; then the method's phases (:class:`l2ul.methods.Phase`). After every step
the whole forget set is checked in eval mode. A ``forget`` phase stops as soon as the task is done
(``misclassify``: no forget instance predicted as its label; ``relabel``: every instance predicted as its
target; ``unseen``: every instance's loss in its band of unseen-data losses, :mod:`l2ul.unseen`) or when its step budget is spent; a ``repair`` phase runs only after the task is done, stops on its
own criterion or budget, and never returns a model for which the task does not hold. A non-finite loss or
output stops the run as ``diverged``. Nothing reports success it did not reach: see
:attr:`UnlearnResult.status`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ._progress import auto_progress, progress_bar
from .attacks import AdversarialSet, frozen_eval
from .config import TASKS, UnlearnConfig
from .errors import ConfigError, RequestError
from .methods import MethodContext, Phase, UnlearningMethod, get_method
from .methods import ingredients as _ingredients
from .result import UnlearnResult
from .task_check import DONE as _DONE
from .task_check import TaskCheck as _Checker


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device`` if given, else CUDA if available, else Apple MPS if available, else CPU."""
    from .config import check_device

    check_device(device)
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {device!r} requested but MPS is not available; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------------------
# helpers

#: Revision of the optimisation loop's behaviour. Benchmarks hash it into their settings so that results of
#: different revisions are never mixed in one table or resumed into each other.
#: 1: train-mode BN forwarded the forget batch first. 2: the auxiliary batch first, as the original code.
ENGINE_REVISION = 2


def _as_tensors(images, labels, name: str) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor):
        raise RequestError(f"{name} images must be a torch.Tensor of shape [k, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise RequestError(f"{name} images must have shape [k, C, H, W], got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise RequestError(f"the {name} set is empty; give at least one instance to forget")
    if not images.is_floating_point():
        raise RequestError(f"{name} images must be float in [0, 1] (got {images.dtype}); divide uint8 by 255")
    lo, hi = float(images.min()), float(images.max())
    if not (lo >= -1e-6 and hi <= 1 + 1e-6):   # (also false for NaN)
        raise RequestError(f"{name} images must lie in [0, 1] (got [{lo:.3g}, {hi:.3g}]); l2ul models "
                           "normalise inside the model, so pass unnormalised pixels")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise RequestError(f"{name} labels must be a 1-D sequence with one label per image "
                           f"({images.shape[0]}), got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise RequestError(f"{name} labels must be integers")
    return images.float(), labels.long()


def _relabel_targets(task: str, targets, y_f: torch.Tensor, num_classes: int) -> Optional[torch.Tensor]:
    if task != "relabel":
        if targets is not None:
            raise RequestError("targets are only used with task='relabel'")
        return None
    if targets is None:
        raise RequestError("task 'relabel' needs targets: one target label per forget instance")
    t_f = torch.as_tensor(targets).long().to(y_f.device)
    if t_f.shape != y_f.shape:
        raise RequestError(f"got {t_f.numel()} relabel targets for {y_f.numel()} forget instances")
    if int(t_f.min()) < 0 or int(t_f.max()) >= num_classes:
        raise RequestError(f"relabel targets must lie in [0, {num_classes - 1}]")
    same = (t_f == y_f).nonzero().flatten().tolist()
    if same:
        raise RequestError(f"relabel target equals the current label for forget position(s) {same}; "
                           "a target must differ from the instance's label")
    return t_f


_DATA_WORDS = {"retain": "the remaining training data"}


def _check_data(m: UnlearningMethod, data: Dict[str, Any]) -> None:
    """Every data name the method declares is given, and nothing else."""
    for name in m.data:
        if data.get(name) is None:
            what = _DATA_WORDS.get(name, f"{name!r} data")
            raise ConfigError(f"method {m.name!r} needs {what}: pass {name}=... (for retain: (images, labels) or "
                              "a Dataset); the methods that do not declare it use only the forget set")
    extra = sorted(n for n, v in data.items() if v is not None and n not in m.data + m.optional_data)
    if extra:
        known = m.data + m.optional_data
        uses = ("only the forget set" if not known else "only the forget set and " + ", ".join(known))
        raise ConfigError(f"method {m.name!r} uses {uses}; do not pass {' or '.join(extra)} data")


def _running_stats(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Copies of every batch-norm running mean and variance (empty for a model without them)."""
    return {n: b.detach().clone() for n, b in model.named_buffers()
            if n.endswith(("running_mean", "running_var"))}


def _load_running_stats(model: nn.Module, stats: Dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for n, t in stats.items():
            buffers[n].copy_(t)


@dataclass
class _PhaseRun:
    status: Optional[str] = None
    message: str = ""
    steps: int = 0


def _run_phase(phase: Phase, work: nn.Module, ctx: MethodContext, check: _Checker, score: float,
               history: List[float], callback, progress: bool, method_name: str) -> _PhaseRun:
    """The optimisation loop of one phase (see :class:`l2ul.methods.Phase` for the two kinds)."""
    params = [p for p in work.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    # what the start did, when it says (e.g. a closed-form edit): the first words of the phase's message
    started = phase.on_start(ctx) if phase.on_start is not None else None
    opt = phase.make_optimizer(params)
    sched = phase.make_scheduler(opt) if phase.make_scheduler is not None else None
    repair = phase.kind == "repair"
    last_good = copy.deepcopy(work.state_dict()) if repair else None
    run = _PhaseRun()
    label = method_name if phase.name == "optimization" else f"{method_name}: {phase.name}"
    bar = progress_bar(progress, phase.max_steps, f"unlearning ({label}), steps", up_to=True)
    if phase.check_first and not repair:
        done, first_score, _, _ = check()
        history.append(first_score)
        if done:
            run.status, run.message = "converged", f"{_DONE[ctx.task]} after 0 steps (reached as the phase started)"
    while run.status is None:
        if run.steps >= phase.max_steps:
            run.status = "budget_exhausted" if not repair else "converged"
            run.message = (f"step budget ({phase.max_steps}) spent before the task was done: {check.left(score)}"
                           if not repair else f"repair budget ({phase.max_steps} steps) spent")
            break
        work.train(phase.bn == "train")
        opt.zero_grad(set_to_none=True)
        loss = phase.loss(work, ctx)
        if not torch.isfinite(loss):
            run.status, run.message = "diverged", f"non-finite loss ({loss.item()}) at step {run.steps + 1}"
            break
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        run.steps += 1
        done, score, finite, _ = check()
        history.append(score)
        if callback is not None:
            callback(len(history), score)
        if bar:
            bar.update(1)
            bar.set_postfix(forget=f"{score:.3f}")
        if not finite:
            run.status, run.message = "diverged", f"non-finite model outputs after step {run.steps}"
        elif not repair and done:
            run.status = "converged"
            run.message = _DONE[ctx.task] + f" after {run.steps} steps"
        elif repair and done and check.earlier_back() == 0:
            # the task holds, and every earlier request's instance is still off its label
            last_good = copy.deepcopy(work.state_dict())
            if phase.should_stop is not None and phase.should_stop(run.steps, ctx):
                why = getattr(phase.should_stop, "reason", "")
                run.status, run.message = "converged", (f"repair stopped by its criterion after {run.steps} steps"
                                                        + (f" ({why})" if why else ""))
    if bar:
        bar.close()
    task = repair and (run.status == "diverged" or not check()[0])
    if task or (repair and check.earlier_back()):
        # the task must hold at the end of a repair, earlier requests' instances off their label: roll back
        work.load_state_dict(last_good)
        run.message += ("; the task did not hold at the last step: rolled back to the last step where it held" if task
                        else "; an earlier request's instance was on its label at the last step: rolled back")
        run.status = "converged" if run.status != "diverged" else "rolled_back"
    elif run.status == "diverged":
        run.message += "; the model is unusable"
    if isinstance(started, str):
        run.message = f"{started}; {run.message}"
    return run


def _prepare(m: UnlearningMethod, ctx: MethodContext, given: Dict[str, Any], timings: Dict[str, float]) -> None:
    for name in m.ingredients:
        value = _ingredients.prepare(name, ctx, given.get(name))
        ctx.ingredients[name] = value
        timings[name] = _ingredients.seconds_of(value)
    m.setup(ctx)


def _make_context(m: UnlearningMethod, work: nn.Module, x_f, y_f, task: str, targets, cfg: UnlearnConfig,
                  device: torch.device, data: Dict[str, Any], progress: bool, reference=None) -> MethodContext:
    with frozen_eval(work), torch.no_grad():
        logits0 = work(x_f)
    num_classes = logits0.shape[1]
    if int(y_f.min()) < 0 or int(y_f.max()) >= num_classes:
        raise RequestError(f"forget labels must lie in [0, {num_classes - 1}] for this {num_classes}-class model")
    t_f = _relabel_targets(task, targets, y_f, num_classes)
    ctx = MethodContext(task=task, config=cfg, model=work, x_forget=x_f, y_forget=y_f, targets=t_f,
                        device=device, generator=torch.Generator().manual_seed(cfg.seed), num_classes=num_classes,
                        logits_before=logits0, data={n: v for n, v in data.items() if v is not None},
                        progress=progress)
    if task == "unseen":
        from .unseen import reference_bands

        with frozen_eval(work):
            ref = reference_bands(work, reference, logits0, y_f, band=cfg.unseen_band, device=device,
                                  batch_size=cfg.eval_batch(device), min_band=cfg.unseen_min_band)
        ctx.bands, ctx.extras["reference_bands"] = ref.bands, ref
    return ctx


def _check_task(m: UnlearningMethod, task: str, reference) -> None:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    if task not in m.tasks:
        able = ", ".join(n for n in _methods_for(task)) or "none"
        does = ", ".join(repr(t) for t in m.tasks)
        raise ConfigError(f"method {m.name!r} supports only task{'s' if len(m.tasks) > 1 else ''} {does}, not "
                          f"{task!r}; methods that do {task!r}: {able}")
    if task == "unseen" and reference is None:
        raise RequestError("task 'unseen' needs a labeled held-out reference set (reference=(images, labels); "
                           "--reference-data SPEC): the losses of data the model never saw")
    if task != "unseen" and reference is not None:
        raise RequestError(f"a reference set is used only by task 'unseen', not {task!r}")


def _methods_for(task: str) -> List[str]:
    from .methods import get_method, list_methods

    return [n for n in list_methods() if task in get_method(n).tasks]


# --------------------------------------------------------------------------------------------------------

def unlearn(model: nn.Module, forget_images: torch.Tensor, forget_labels, *, method: Union[str, UnlearningMethod] = "repair",
            task: str = "misclassify", targets=None, config: Optional[UnlearnConfig] = None, retain=None,
            data: Optional[Dict[str, Any]] = None, inplace: bool = False, progress: Optional[bool] = None,
            reference=None,
            ingredients: Optional[Dict[str, Any]] = None, adversarial: Optional[AdversarialSet] = None,
            importance: Optional[Dict[str, torch.Tensor]] = None,
            callback: Optional[Callable[[int, float], None]] = None) -> UnlearnResult:
    """Make ``model`` forget the instances ``forget_images`` (float [k, C, H, W] in [0, 1]) with labels
    ``forget_labels``.

    Parameters
    ----------
    method: a registered method name (see :func:`l2ul.list_methods`) or an :class:`UnlearningMethod`; default
        ``"repair"`` (forget, then repair on proxy images: ``data={"proxy": images}``, data-free without);
        the paper's method is ``"l2ul"``.
    task: ``"misclassify"`` (each instance leaves its label), ``"relabel"`` (each instance is predicted as
        its entry in ``targets``) or ``"unseen"`` (each instance's loss reaches a band typical of data the model
        never saw, measured on ``reference``: :mod:`l2ul.unseen`; methods whose ``tasks`` include it).
    reference: task ``unseen`` only: labeled held-out images ``(images, labels)`` (a validation split, never
        the training split) whose losses under the original model define "unseen".
    config: :class:`UnlearnConfig`; default is the paper's CIFAR-10 recipe.
    data: the data the method declares it needs, by name (``method.data``), e.g. ``{"retain": ...}``;
        any other is refused. ``retain=`` is short for ``data={"retain": retain}`` (the remaining training
        data, a Dataset, DataLoader or ``(images, labels)``; ``oracle`` only).
    inplace: update ``model`` itself; by default a deep copy is unlearned and ``model`` is left untouched.
    ingredients: precomputed ingredients from an earlier result of the *same* original model, forget set and
        config (``result.ingredients``), e.g. to compare ``adv`` and ``l2ul`` on identical adversarial
        examples; their preparation time is carried over into ``timings``. Ingredients the method does not
        declare are ignored. ``adversarial=`` and ``importance=`` are short for those two entries.
    callback: called as ``callback(step, forget_score)`` after every step (steps counted over all phases).
    progress: progress bars on stderr; default (``None``): when stderr is a terminal.

    Returns an :class:`UnlearnResult`; ``result.model`` is the unlearned model (in eval mode).
    """
    cfg = (config or UnlearnConfig()).validate()
    progress = auto_progress(progress)
    if isinstance(model, nn.Module):  # a NaN/inf weight or buffer cannot be unlearned: refuse before any work
        from .models import check_finite_model

        check_finite_model(model)
    m = get_method(method)
    _check_task(m, task, reference)
    m.check_request(task, cfg)
    x_f, y_f = _as_tensors(forget_images, forget_labels, "forget")
    data = {**(data or {}), **({"retain": retain} if retain is not None else {})}
    _check_data(m, data)
    given = {**(ingredients or {}), **{n: v for n, v in (("adversarial", adversarial), ("importance", importance))
                                       if v is not None}}
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)

    work = model if inplace else copy.deepcopy(model)
    work.to(device)
    ctx = _make_context(m, work, x_f.to(device), y_f.to(device), task, targets, cfg, device, data, progress,
                        reference)
    timings = {"adversarial": 0.0, "importance": 0.0, "optimization": 0.0}
    _prepare(m, ctx, given, timings)
    adv = ctx.ingredients.get("adversarial")
    adv_success = adv.success_rate(work, cfg.eval_batch(device)) if adv is not None else None
    return _optimise(m, work, ctx, timings, adv_success, callback, progress)


def _optimise(m: UnlearningMethod, work: nn.Module, ctx: MethodContext, timings: Dict[str, float],
              adv_success, callback, progress: bool) -> UnlearnResult:
    """Run the method's phases on ``work`` and build the result."""
    phases = m.phases(ctx)
    check = _Checker(work, ctx)
    bn_stats = _running_stats(work)
    history: List[float] = []
    done, score, finite, preds = check()
    status, message, steps = ("converged", "the request already holds for the original model", 0) if done else (None, "", 0)
    phase_log: List[Dict[str, Any]] = []
    changed = False
    for phase in phases:
        # a forget phase runs while the task is not done; a repair phase only after steps that did it
        if not (status is None if phase.kind == "forget" else (status == "converged" and changed)):
            continue
        t0 = time.perf_counter()
        run = _run_phase(phase, work, ctx, check, score, history, callback, progress, m.name)
        timings[phase.name] = timings.get(phase.name, 0.0) + time.perf_counter() - t0
        phase_log.append({"name": phase.name, "kind": phase.kind, "steps": run.steps,
                          "seconds": timings[phase.name], "status": run.status, "message": run.message})
        steps += run.steps
        # a phase that edits the model as it starts (on_start) changes it even in 0 steps
        changed = changed or run.steps > 0 or (phase.kind == "forget" and phase.on_start is not None)
        score = history[-1] if history else score
        if phase.kind == "forget":
            status, message = run.status, run.message
        else:
            message = f"{message}; {phase.name}: {run.message}"
    work.eval()
    score_original_bn = None
    if status != "diverged":
        preds = check()[3]
        if bn_stats:
            current = _running_stats(work)
            _load_running_stats(work, bn_stats)
            score_original_bn = check()[1]
            _load_running_stats(work, current)
    cfg = ctx.config
    earlier_back = check.earlier_back() if check.earlier is not None and status != "diverged" else None
    if earlier_back:
        message += (f"; {earlier_back} of {check.earlier[0].shape[0]} instances of earlier requests "
                    "(keep_forgotten) are predicted as their label again")
    unseen = None
    if ctx.bands is not None and status != "diverged":
        unseen = _unseen_audit(work, ctx)
        inside = sum(i["in_band"] for i in unseen["instances"])
        near = sum(i["near_band"] for i in unseen["instances"])
        message += (f"; audit on the whole reference under the final model: {inside} of {len(ctx.y_forget)} "
                    f"instances inside their band, {near} within one band width of it")
    return UnlearnResult(
        model=work, method=m.name, task=ctx.task, status=status, steps=steps, timings=timings, config=cfg,
        labels=ctx.y_forget.tolist(), targets=ctx.targets.tolist() if ctx.targets is not None else None,
        preds_before=ctx.logits_before.argmax(1).tolist(), preds_after=preds.tolist(), forget_history=history,
        message=message, device=str(ctx.device), ingredients=dict(ctx.ingredients), phases=phase_log,
        adversarial_success=adv_success, score_with_original_bn_stats=score_original_bn, unseen=unseen,
        kept_forgotten=(None if earlier_back is None else
                        {"n": int(check.earlier[0].shape[0]), "back_on_label": earlier_back}))


def _unseen_audit(work: nn.Module, ctx: MethodContext) -> Dict[str, Any]:
    """Task ``unseen``: each instance against its band re-read on the whole reference under the final model."""
    from .unseen import final_audit, soft_margin

    with frozen_eval(work), torch.no_grad():
        s_after = soft_margin(work(ctx.x_forget), ctx.y_forget)
        return final_audit(work, ctx.extras["reference_bands"], s_after, num_classes=ctx.num_classes,
                           device=ctx.device, batch_size=ctx.config.eval_batch(ctx.device))


def prepare_ingredients(model: nn.Module, forget_images: torch.Tensor, forget_labels, names, *,
                        config: Optional[UnlearnConfig] = None, task: str = "misclassify", targets=None,
                        data: Optional[Dict[str, Any]] = None, progress: bool = False,
                        reference=None) -> Dict[str, Any]:
    """The ingredients ``names`` (in that order) exactly as :func:`unlearn` would prepare them first on this
    request with ``config`` (a fresh generator seeded with ``config.seed``), each timed (``.seconds``), on
    ``model`` itself (left unchanged); ``data`` as for :func:`unlearn`. Pass the result as ``ingredients=`` to several methods to run them on
    identical ingredients (``l2ul bench`` does). ``reference``: task ``unseen``'s reference set."""
    cfg = (config or UnlearnConfig()).validate()
    x_f, y_f = _as_tensors(forget_images, forget_labels, "forget")
    device = resolve_device(cfg.device)
    ctx = _make_context(get_method("neggrad"), model, x_f.to(device), y_f.to(device), task, targets, cfg, device,
                        data or {}, progress, reference)
    for name in dict.fromkeys(names):       # in order: an ingredient may use the ones before it
        ctx.ingredients[name] = _ingredients.prepare(name, ctx)
    return dict(ctx.ingredients)
