"""``l2ul unlearn``: one deletion request (:func:`l2ul.pipeline.run_request`), printed."""
from __future__ import annotations

from ._common import EXIT_DIVERGED, EXIT_DOES_NOT_HOLD, EXIT_NOT_CONVERGED, eprint, privacy_line
from ._conventions import LOGGER, add_progress_arguments, info, progress_of
from ._options import (
    add_config_arguments,
    add_data_args,
    add_model_args,
    add_request_args,
    config_from_args,
    count_arg,
    method_arg,
)
from ._tables import print_table


def add_arguments(p) -> None:
    add_model_args(p)
    add_data_args(p)
    add_request_args(p)
    p.add_argument("--method", default="repair", type=method_arg, metavar="NAME",
                   help="unlearning method (default: %(default)s, forget then repair; the paper's method is l2ul; "
                        "`l2ul info` lists them all)")
    g = p.add_argument_group("proxy data (method repair)")
    g.add_argument("--proxy-data", metavar="SPEC",
                   help="unlabeled in-domain images to repair on: npz:PATH (key x) or imagefolder:PATH; labels are "
                        "never read (default: data-free, images synthesised from the model, cached)")
    g.add_argument("--allow-training-proxy", action="store_true",
                   help="accept proxy images from the training split (that makes it the oracle)")
    g.add_argument("--keep-forgotten", metavar="IDS",
                   help="training ids of earlier requests on this model (a comma list or @FILE, as --forget-ids): "
                        "the repair keeps them off their label too, the engine checks them, and D_r is measured "
                        "without them (successive requests)")
    g.add_argument("--repair-toward", metavar="FILE",
                   help="an l2ul model file, for successive requests the original model: the repair distils "
                        "toward its outputs (on proxy images prepared from it) instead of the given model's, so "
                        "the losses of a chain do not compound")
    g = p.add_argument_group("the unseen task (forget as if never seen)")
    g.add_argument("--reference-data", metavar="SPEC",
                   help="make each instance look like data the model never saw, measured on these labeled held-out "
                        "images (a validation split; never the training split): npz:PATH (keys x and y) or "
                        "imagefolder:PATH (one sub-folder per class). Sets the task to unseen")
    add_config_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="FILE", help="where to write the unlearned model")
    g.add_argument("--report", metavar="FILE", help="report JSON (default: OUT.report.json; the audit page goes "
                                                   "beside it)")
    g.add_argument("--overwrite", action="store_true", help="allow replacing existing output files")
    g.add_argument("--keep-unconverged", action="store_true",
                   help="write the model even if the request was not met: the step budget ran out, or the "
                        "forgetting does not hold with the original batch-norm statistics (exit codes 3 and 5)")
    g.add_argument("--retain-eval-size", type=count_arg, default=10000, metavar="N",
                   help="measure D_r on the dataset's fixed sample of N training instances (the same for "
                        "every request), less the request's (0 = all; default %(default)s)")
    add_progress_arguments(g)


def cmd_unlearn(args) -> int:
    from ..pipeline import run_request

    cfg, _ = config_from_args(args, seed=args.seed)
    LOGGER.debug(f"l2ul: config {cfg.to_dict()}")
    outcome = run_request(
        out=args.out, model=args.model, arch=args.arch, weights=args.weights, num_classes=args.num_classes,
        dataset=args.dataset, data_dir=args.data_dir, download=args.download, forget_ids=args.forget_ids,
        forget_random=args.forget_random, relabel_to=args.relabel_to, seed=args.seed, method=args.method,
        config=cfg, proxy=args.proxy_data, allow_training_proxy=args.allow_training_proxy,
        reference=args.reference_data, keep_forgotten=args.keep_forgotten, repair_toward=args.repair_toward, report=args.report, overwrite=args.overwrite, keep_unconverged=args.keep_unconverged,
        retain_eval_size=args.retain_eval_size, progress=progress_of(args), log=info,
        argv=getattr(args, "argv", None))
    _print_outcome(outcome, args)
    return {"holds": 0, "does_not_hold": EXIT_DOES_NOT_HOLD, "not_converged": EXIT_NOT_CONVERGED,
            "diverged": EXIT_DIVERGED}[outcome.verdict]


def _points(metrics, key: str) -> str:
    """``D_r 85.6% -> 84.1% (-1.5 points)`` for the metric ``acc_<key>``, or ``not measured``."""
    before, after = metrics.get(f"acc_{key}_before"), metrics.get(f"acc_{key}")
    if before is None or after is None:
        return "not measured"
    return f"{100 * before:.1f}% -> {100 * after:.1f}% ({100 * (after - before):+.1f} points)"


def verdict(outcome) -> str:
    """Two lines in words, printed first: whether the deletion holds, and what it cost (D_r, D_test)."""
    result, saved = outcome.result, outcome.model_path
    if result.status == "diverged":
        return "verdict: FAILED: unlearning diverged; no model was written and nothing was deleted"
    k = len(result.labels)
    relabel = result.task != "misclassify"        # (score 1 is done, as for relabel)
    if result.task == "unseen":
        ok = sum(i["in_band"] for i in result.unseen["instances"]) if result.unseen else 0
        what = "within their band of unseen-data losses"
    elif relabel:
        ok = sum(p == t for p, t in zip(result.preds_after, result.targets))
        what = "predicted as their target"
    else:
        ok = sum(p != y for p, y in zip(result.preds_after, result.labels))
        what = "no longer predicted as their label"
    written = "the model was written anyway (--keep-unconverged)" if saved else "no model was written"
    score = result.score_with_original_bn_stats
    every = "the instance is" if k == 1 else f"all {k} instances are"
    if not result.converged:
        head = f"INCOMPLETE: {ok} of {k} {'instance is' if k == 1 else 'instances are'} {what} when the step budget ran out; {written}"
    elif result.holds_with_original_bn_stats is False:
        back = round((1 - score) * k) if relabel else round(score * k)
        head = (f"DOES NOT HOLD: {every} {what}, but with the original batch-norm statistics "
                f"{back} of {k} would be back: the forgetting lives in drifted statistics, not in the weights; "
                f"{written} (try --bn freeze, or the default method)")
    elif result.earlier_stay_forgotten is False:
        kept = result.kept_forgotten
        head = (f"DOES NOT HOLD: {every} {what}, but {kept['back_on_label']} of {kept['n']} instances of earlier "
                f"requests (--keep-forgotten) are predicted as their label again; {written}")
    else:
        also = ("also with the original batch-norm statistics" if score is not None
                else "(the model has no batch-norm statistics)")
        kept = result.kept_forgotten
        earlier = (f"; the {kept['n']} instances of earlier requests stay off their label" if kept else "")
        head = f"HOLDS: {every} {what}, {also}{earlier}"
    m = outcome.metrics
    return f"verdict: {head}\ncost: D_r {_points(m, 'retain')}; D_test {_points(m, 'test')}"


def _print_outcome(outcome, args) -> None:
    from ..metrics import metric_rows

    result, metrics, saved = outcome.result, outcome.metrics, outcome.model_path
    print(verdict(outcome))
    if result.status == "diverged":
        eprint(f"l2ul: error: unlearning diverged ({result.message}); no model was written; "
               "lower --lr (or use the default recipe)")
    elif not result.converged:
        LOGGER.warning(f"l2ul: unlearning did not converge ({result.message}); "
               + ("the model was written anyway (--keep-unconverged)" if saved else
                  "no model was written (raise --max-steps, or pass --keep-unconverged to keep it anyway)"))

    # the metrics by their registered labels and formats (l2ul.metrics); the MIA figures with their caveat below
    rows = metric_rows(metrics, ("acc_forget", "acc_retain", "acc_test", "forget_success", "agreement_test"))
    print_table(rows, ["metric", "before", "after", "better"])
    if metrics.get("mia_efficacy") is not None:
        print(privacy_line(metrics))
    if result.status == "diverged":  # the summary's "forget accuracy" would be read off non-finite outputs
        print(f"{result.method}/{result.task}: DIVERGED after {result.steps} steps: {result.message}")
    else:
        print(result.summary())
    print(f"model:  {saved or '(not written)'}\nreport: {outcome.report_path}")
