"""``l2ul report``: re-render a bench folder's tables and plots from its records."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="--out folder(s) of l2ul bench")
    p.add_argument("--no-plots", action="store_true", help="tables only")


def cmd_report(args) -> int:
    from ..bench import render_results

    for d in args.dirs:
        paths = render_results(d, plots=not args.no_plots)
        print(f"{d}: wrote " + ", ".join(p.name for p in paths))
    return 0
