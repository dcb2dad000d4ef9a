"""``l2ul bench``: the methods x k x seeds grid, or continual requests (:mod:`l2ul.bench`)."""
from __future__ import annotations

from typing import List

from ._conventions import LOGGER, add_progress_arguments, info, progress_of
from ._options import add_config_arguments, add_data_args, add_model_args, config_from_args, load_model_from_args

#: ``l2ul.bench.DEFAULT_METHODS`` and ``DEFAULT_KS`` as the help prints them: importing ``l2ul.bench`` imports
#: torch, which ``--help`` must not; a test keeps these equal to the bench's own
HELP_DEFAULT_METHODS = "neggrad,adv,l2ul,oracle"
HELP_DEFAULT_KS = "1,8,16,32,64,128"


def _csv_ints(text: str, what: str) -> List[int]:
    from ..errors import ConfigError

    try:
        return [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be a comma list of integers, got {text!r}") from None


def add_arguments(parser) -> None:
    """Options of ``l2ul bench`` (an ``argparse`` parser or sub-parser)."""
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for file-based datasets (default 0)")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--methods", default=None, help=f"comma list (default {HELP_DEFAULT_METHODS})")
    grid.add_argument("--k", default=None, help=f"comma list of forget-set sizes (default {HELP_DEFAULT_KS}; "
                      "continual mode: one value, default 16)")
    grid.add_argument("--seeds", default="0", help="comma list of seeds (default %(default)s; continual: first one)")
    grid.add_argument("--relabel-random", action="store_true",
                      help="grid mode: relabel each request's instances to random wrong classes (the relabel task) "
                           "instead of misclassifying them")
    grid.add_argument("--unseen", action="store_true",
                      help="grid mode: the unseen task (each instance made to look like data the model never saw), "
                           "with the --proxy-test-split images and their labels as the reference set")
    grid.add_argument("--requests", type=int, default=None, metavar="R",
                      help="continual mode: R successive requests of --k instances on the same model")
    grid.add_argument("--repair-toward", choices=("previous", "original"), default="previous",
                      help="continual mode: the repair phase distils toward the model as it was before each "
                           "request (previous, default) or toward the original model at every request (original)")
    add_config_arguments(parser)
    ev = parser.add_argument_group("evaluation")
    ev.add_argument("--retain-eval-size", type=int, default=10000,
                    help="size of the fixed random D_r subset accuracy is measured on (default %(default)s)")
    ev.add_argument("--oracle-pool-size", type=int, default=None,
                    help="cap on the remaining data the oracle fine-tunes on (default: all outside D_r subset)")
    ev.add_argument("--proxy-test-split", type=int, default=None, metavar="N",
                    help="use N random test images as the unlabeled proxy of methods that take one (repair) and "
                         "measure D_test on the other test images only (default: no proxy; repair is data-free)")
    ev.add_argument("--mia-max-samples", type=int, default=5000,
                    help="MIA attack samples per class (default %(default)s)")
    ev.add_argument("--mia-attack", choices=("svc", "logistic"), default="svc",
                    help="MIA attack classifier (default svc, as in the literature)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (resumes if it holds a run)")
    add_progress_arguments(parser)


def cmd_bench(args) -> int:
    """Run ``l2ul bench`` from parsed arguments (see :func:`add_arguments`)."""
    from ..bench import DEFAULT_KS, DEFAULT_METHODS, resolve_methods, run_bench, run_continual
    from ..data import load_dataset
    from ..errors import ConfigError
    from ..loading import check_fit

    config, config_name = config_from_args(args)
    methods = resolve_methods(DEFAULT_METHODS if args.methods is None else args.methods)
    seeds = _csv_ints(args.seeds, "--seeds")
    continual = args.requests is not None
    ks = ([16] if continual else list(DEFAULT_KS)) if args.k is None else _csv_ints(args.k, "--k")
    if continual and len(ks) != 1:
        raise ConfigError("continual mode (--requests) takes a single --k (instances per request)")
    if continual and (args.relabel_random or args.unseen):
        raise ConfigError("--relabel-random and --unseen are grid-mode options (continual requests misclassify)")
    if args.relabel_random and args.unseen:
        raise ConfigError("--relabel-random and --unseen are two tasks: give one")
    if not continual and args.repair_toward != "previous":
        raise ConfigError("--repair-toward is a continual-mode option (--requests)")
    if continual and args.requests < 1:
        raise ConfigError(f"--requests must be at least 1, got {args.requests}")
    model = load_model_from_args(args)
    bundle = load_dataset(args.dataset, data_dir=args.data_dir, download=getattr(args, "download", False))
    check_fit(model, bundle)
    common = dict(methods=methods, config=config, out_dir=args.out, retain_eval_size=args.retain_eval_size,
                  oracle_pool_size=args.oracle_pool_size, progress=progress_of(args),
                  log=info, config_name=config_name, num_workers=getattr(args, "workers", 0),
                  proxy_test_split=args.proxy_test_split)
    if continual:
        if len(seeds) > 1:
            LOGGER.warning(f"l2ul: continual mode uses one seed; using {seeds[0]}")
        run_continual(model, bundle, requests=args.requests, k=ks[0], seed=seeds[0],
                      repair_toward=args.repair_toward, **common)
    else:
        run_bench(model, bundle, ks=ks, seeds=seeds, mia_max_samples=args.mia_max_samples,
                  mia_attack=args.mia_attack, task="relabel" if args.relabel_random else "unseen" if args.unseen else "misclassify", **common)
    return 0
