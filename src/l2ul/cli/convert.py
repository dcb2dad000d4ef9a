"""``l2ul convert``: an l2ul model file from a foreign checkpoint or from an architecture's published weights.

The file then carries the architecture, the class count, the class names (from ``--dataset``, checked to fit
it) and the normalisation, so every other command takes it as ``--model FILE``, with its sha256 in their
reports: ``l2ul convert --arch tv:resnet18 --pretrained --num-classes 1000 --out r18.safetensors`` is how
published weights reach ``l2ul unlearn``.
"""
from __future__ import annotations

from ._conventions import info
from ._options import add_data_args


def add_arguments(p) -> None:
    g = p.add_argument_group("the model")
    g.add_argument("--arch", required=True, metavar="NAME", help="architecture (see `l2ul info`)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="PATH", help="a foreign checkpoint (.th/.pt/.pth/.safetensors) for --arch; "
                                                       "loaded without executing pickled code")
    src.add_argument("--pretrained", action="store_true",
                     help="the architecture's published weights (tv:*, imagenet_*, timm:*; downloaded, or timm's "
                          "Hugging Face cache)")
    g.add_argument("--num-classes", type=int, metavar="N",
                   help="class count (default: from --weights' final layer, else from --dataset; with --pretrained "
                        "the weights' own count, e.g. 1000, keeps their classifier)")
    add_data_args(p, default=None, required=False,
                  title="data (optional: a dataset the model must fit; its class names go into the file)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the l2ul model file")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --out")


def _build(args, bundle):
    from ..errors import L2ULError
    from ..loading import load_model_from
    from ..models import create_model, model_info

    if args.weights:
        return load_model_from(arch=args.arch, weights=args.weights, num_classes=args.num_classes)
    if not model_info(args.arch)["pretrained_download"]:
        raise L2ULError(f"{args.arch} has no published weights (--pretrained); give its checkpoint with --weights")
    n = args.num_classes or (bundle.num_classes if bundle is not None else None)
    if n is None:
        raise L2ULError("--pretrained needs the class count: --num-classes N (the weights' own, e.g. 1000, keeps "
                        "their classifier) or --dataset SPEC")
    return create_model(args.arch, n, pretrained=True).eval()


def cmd_convert(args) -> int:
    from ..data import load_dataset
    from ..inputs import check_inputs, run_inputs
    from ..loading import adopt_class_names, check_fit
    from ..models.io import save_model
    from ..publish import output_lock
    from ..safety import check_output_path

    check_inputs(weights=args.weights, dataset=args.dataset)
    inputs = run_inputs(weights=args.weights, dataset=args.dataset)
    check_output_path(args.out, overwrite=True, inputs=inputs)  # (what needs no lock: before creating one)
    with output_lock(args.out):
        check_output_path(args.out, overwrite=args.overwrite, inputs=inputs)
        bundle = (load_dataset(args.dataset, data_dir=args.data_dir, download=args.download)
                  if args.dataset else None)
        model = _build(args, bundle)
        named = ""
        if bundle is not None:
            check_fit(model, bundle)
            if adopt_class_names(model, bundle):
                named = f", class names from {args.dataset}"
        save_model(model, args.out, overwrite=args.overwrite)
    meta = model.l2ul_meta
    info(f"l2ul: converted {args.weights or 'the published weights of ' + args.arch}")
    print(f"model: {args.out}  ({meta['arch']}, {meta['num_classes']} classes{named})")
    return 0
