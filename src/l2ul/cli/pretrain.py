"""``l2ul pretrain``: train a classifier with one of the paper's recipes."""
from __future__ import annotations

from ._conventions import add_progress_arguments, info, progress_of
from ._options import add_data_args, seed_arg


def add_arguments(p) -> None:
    p.add_argument("--arch", required=True, help="architecture name (see `l2ul info`)")
    add_data_args(p)
    p.add_argument("--recipe", default="quick", help="cifar | utkface | quick (default: %(default)s)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from the architecture's published weights (tv:*, imagenet_*, timm:*; downloaded, "
                        "or timm's Hugging Face cache) and fine-tune them; a new classifier if the class count "
                        "differs")
    p.add_argument("--epochs", type=int, metavar="N", help="training epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (default: the recipe's)")
    p.add_argument("--lr", type=float, metavar="X", help="learning rate (default: the recipe's)")
    p.add_argument("--weight-decay", type=float, metavar="X", help="weight decay (default: the recipe's)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the initialisation and the batch order")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: automatic)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the trained model")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --out")
    add_progress_arguments(p)


def cmd_pretrain(args) -> int:
    from ..pipeline import check_device_available, check_inputs, run_inputs
    from ..publish import output_lock
    from ..safety import check_output_path
    from ..training import pretrain_to_file

    # everything that can be refused is refused before any work: the device, the dataset, the output
    check_device_available(args.device)
    if args.pretrained:
        from ..errors import L2ULError
        from ..models import model_info

        if not model_info(args.arch)["pretrained_download"]:
            raise L2ULError(f"{args.arch} has no published weights to start from (--pretrained); leave it out, "
                            "or use an architecture that has them (tv:*, imagenet_*, timm:*)")
    check_inputs(dataset=args.dataset)
    inputs = run_inputs(dataset=args.dataset)
    check_output_path(args.out, overwrite=True, inputs=inputs)  # (what needs no lock: before creating one)
    with output_lock(args.out):  # held to the end: a concurrent run with the same --out fails at once
        check_output_path(args.out, overwrite=args.overwrite, inputs=inputs)
        result = pretrain_to_file(args.arch, args.dataset, args.out, recipe=args.recipe, epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                                  seed=args.seed, device=args.device, overwrite=args.overwrite,
                                  data_dir=args.data_dir, download=args.download, pretrained=args.pretrained,
                                  progress=progress_of(args),
                                  log=info)
    print(f"model: {args.out}  ({result.epochs} epochs, {result.seconds:.1f}s)")
    return 0
