"""``l2ul evaluate``: accuracy on D_f / D_r / D_test and membership inference for a model and a request."""
from __future__ import annotations

import datetime as _dt
from typing import List

from ._common import mia_caveat
from ._conventions import info
from ._options import add_data_args, add_model_args, add_request_args, load_model_from_args, model_inputs
from ._tables import print_table


def add_arguments(p) -> None:
    add_model_args(p)
    add_data_args(p)
    add_request_args(p, required=False)
    g = p.add_argument_group("the model before unlearning (for before/after figures and agreement)")
    g.add_argument("--original", metavar="FILE", help="an l2ul model file")
    g.add_argument("--original-arch", metavar="NAME", help="or the architecture of a foreign checkpoint ...")
    g.add_argument("--original-weights", metavar="PATH", help="... and that checkpoint (loaded weights-only)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: automatic)")
    p.add_argument("--retain-eval-size", type=int, default=10000, metavar="N",
                   help="measure D_r on the dataset's fixed sample of N training instances (the same for "
                        "every request), less the request's (0 = all; default %(default)s)")
    p.add_argument("--report", "--json", dest="json", metavar="FILE",
                   help="also write the metrics as a JSON report (--json is the same flag)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --report file")


def _check_evaluate_inputs(args):
    """Everything refused before any work: the device, unusable inputs, the --json output path.
    Returns the model input files and the device."""
    from ..engine import resolve_device
    from ..pipeline import check_inputs, run_inputs
    from ..safety import check_output_path

    inputs = model_inputs(args) + [p for p in (args.original, args.original_weights) if p]
    device = resolve_device(args.device)
    check_inputs(model=args.model, weights=args.weights, original=args.original or args.original_weights,
                 dataset=args.dataset, forget_ids=args.forget_ids, relabel_to=args.relabel_to)
    if args.json:
        every = inputs + run_inputs(dataset=args.dataset, forget_ids=args.forget_ids, relabel_to=args.relabel_to)
        check_output_path(args.json, overwrite=args.overwrite, inputs=tuple(every))
    return inputs, device


def cmd_evaluate(args) -> int:
    from ..data import load_dataset
    from ..evaluation import evaluate_model, evaluate_unlearning
    from ..loading import check_fit
    from ..metrics import metric_rows
    from ..pipeline import input_hashes, retain_eval_subset, versions
    from ..reports import write_json
    from ..requests import build_request

    original_given = bool(args.original or args.original_arch or args.original_weights)
    inputs, device = _check_evaluate_inputs(args)
    input_sha = input_hashes(inputs)
    bundle = load_dataset(args.dataset, data_dir=args.data_dir, download=args.download)
    model = load_model_from_args(args)
    check_fit(model, bundle)
    ids: List[int] = []
    request = None
    if args.forget_ids is not None or args.forget_random is not None:
        request = build_request(n_train=bundle.n_train, train_labels=bundle.train_labels,
                                num_classes=bundle.num_classes, forget_ids=args.forget_ids,
                                forget_random=args.forget_random, relabel_to=args.relabel_to, seed=args.seed,
                                train_ids=bundle.train_ids, class_names=bundle.class_names)
        ids = request.ids
    elif args.relabel_to is not None:
        from ..errors import RequestError

        raise RequestError("--relabel-to needs the instances it applies to: add --forget-ids or --forget-random")
    eval_ids = retain_eval_subset(bundle, ids, args.retain_eval_size)
    info("l2ul: evaluating on " + (f"D_f ({len(ids)}), " if ids else "") + f"D_r ({len(eval_ids)} remaining "
         f"instances) and D_test ({bundle.n_test})" + (", the original model too" if original_given else ""))
    forget = bundle.stack_train(ids) if ids else bundle.stack_train(eval_ids[:1])
    common = dict(forget=forget, retain=bundle.train_subset(eval_ids), test=bundle.test, seed=args.seed,
                  mia_max_samples=5000, device=str(device))
    if original_given:
        from ..loading import load_model_from

        original = load_model_from(model=args.original, arch=args.original_arch, weights=args.original_weights)
        check_fit(original, bundle)
        metrics = evaluate_unlearning(original, model, ids=[bundle.train_ids[i] for i in ids] or None,
                                      targets=request.targets if request else None, **common)
        per_inst = metrics.pop("per_instance")
        if not ids:  # (the forget split was a placeholder)
            per_inst = None
    else:
        metrics, per_inst = evaluate_model(model, **common).metrics, None
    if not ids:
        for k in list(metrics):
            if "forget" in k or "mia" in k or "loss_auc" in k:
                metrics.pop(k)
    # the metrics by their registered labels and formats (l2ul.metrics)
    rows = metric_rows(metrics, ("acc_forget", "acc_retain", "acc_test", "forget_success", "agreement_test",
                                 "mia_efficacy", "loss_auc"))
    print_table(rows, ["metric", "before", "after", "better"] if original_given
                else ["metric", ("after", "value"), "better"])
    if "mia_efficacy" in metrics and mia_caveat(metrics):
        print("MIA efficacy" + mia_caveat(metrics))
    print(f"D_r measured on {len(eval_ids)} remaining training instances")
    if args.json:
        write_json(args.json, {"l2ul_report": 1, "command": "evaluate",
                               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                               "versions": versions(), "dataset": args.dataset,
                               "model": {"paths": inputs, "sha256": input_sha},
                               "metrics": metrics, "per_instance": per_inst,
                               "request": request.to_dict() if request else None,
                               "retain_eval_size": len(eval_ids)})
        print(f"json: {args.json}")
    return 0
