"""Command-line interface: ``l2ul unlearn | evaluate | pretrain | convert | demo | bench | report | audit | info``.

One module per command (``add_arguments`` + ``cmd_<name>``); each parses, calls the library (for ``unlearn``:
:func:`l2ul.pipeline.run_request`) and prints. Problems a user can fix (bad request, missing file, unsafe
pickle, ...) print one line ``l2ul: error: ...`` and exit with code 2 (a traceback only with ``--debug``).
Exit codes: 0 done; 2 user error; 3 unlearning did not converge within its step budget; 4 unlearning
diverged; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). No command writes a partial file or over its
input: outputs are written to ``.<name>.*.partial`` temporary files next to their final paths and renamed
into place only when complete (``unlearn`` publishes its model and report together, or neither). Only a
``SIGKILL`` during the final write can leave such a temporary file behind, never a file at an output path.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Optional, Sequence

from . import audit, bench, convert, demo, evaluate, info, pretrain, report, unlearn
from ._common import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_NOT_CONVERGED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
)
from ._common import eprint as _eprint
from ._conventions import LOGGER, HelpFormatter, Parser, add_common_arguments, setup_logging
from ._options import flag_of
from .demo import demo_dir

__all__ = ["main", "build_parser", "demo_dir", "EXIT_USER_ERROR", "EXIT_NOT_CONVERGED", "EXIT_DIVERGED",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED"]


EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE, as a shell reports a command whose reader exited


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that a terminated run cleans up like an interrupted one."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through a subprocess
    raise _Terminated()


#: command -> (module, help, description)
_COMMANDS = {
    "unlearn": (unlearn, "make a model forget training instances",
                "Make a model forget training instances; write the unlearned model and an audit report "
                "(exit 3 if the step budget ran out, 4 if it diverged)."),
    "evaluate": (evaluate, "accuracy on forget / remaining / test data, MIA",
                 "Accuracy on D_f / D_r / D_test (and membership inference on D_f) for a model and a request; "
                 "with --original, before/after and agreement."),
    "pretrain": (pretrain, "train a classifier (the paper's recipes)",
                 "Train a classifier on a dataset with one of the paper's recipes."),
    "convert": (convert, "an l2ul model file from a foreign checkpoint or published weights",
                "Write an l2ul model file (architecture, classes, normalisation, weights) from a foreign "
                "checkpoint (--weights) or an architecture's published weights (--pretrained), checked against "
                "--dataset and named with its classes; every command then takes it as --model FILE."),
    "demo": (demo, "the embedded demo: digits, no network, under a minute",
             "Train (or reuse) a small CNN on scikit-learn's digits, forget 8 random training instances with "
             "neggrad and l2ul, print a before/after table."),
    "bench": (bench, "methods x k x seeds grid (or continual requests) with tables and plots",
              "Benchmark unlearning methods on one model and dataset; resumable."),
    "report": (report, "re-render the tables and plots of a bench folder",
               "Write again table.md / continual.md, results.csv/json and the plots of an `l2ul bench` output "
               "folder from its records (no model or data needed)."),
    "audit": (audit, "write the HTML audit page of an unlearn report",
              "Write the self-contained HTML audit page of an `l2ul unlearn` report (default: REPORT.html next "
              "to it): verdict, per-instance outcome, accuracy and privacy before/after, provenance."),
    "info": (info, "list methods (with the data they need), models, presets and dataset specs",
             "List methods, models, presets and dataset specs."),
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="l2ul", formatter_class=HelpFormatter,
                    description="Instance-wise machine unlearning of pre-trained image classifiers (L2UL, Cha et "
                                "al., AAAI 2024). Messages go to stderr (-v for more, --log-level warning for "
                                "fewer), results to stdout.")
    parser.add_argument("--version", action="version", version=f"l2ul {__version__}")
    add_common_arguments(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # the common flags are also accepted after the command
    common = argparse.ArgumentParser(add_help=False)
    add_common_arguments(common, top=False)
    for name, (module, help_, description) in _COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_, description=description,
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=getattr(module, f"cmd_{name}"))
    return parser


def _subparser(parser: argparse.ArgumentParser, command: Optional[str]) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _error_line(e: BaseException) -> str:
    """The message of a user error for ``l2ul: error: ...`` (continuation lines, e.g. a list of valid values,
    stay indented under it). A config error names its field; the CLI adds the flag that sets it."""
    msg = str(e).strip() or type(e).__name__
    field = getattr(e, "field", None)
    if field:
        msg += f" (set with {flag_of(field)})"
    return msg


def _interrupt_note(args) -> str:
    if args.command == "bench":
        return "no partial file was written; finished cells are kept, rerun the same command to resume"
    return "no partial output was written"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            _subparser(parser, getattr(args, "command", None)).unknown(extra)
    except KeyboardInterrupt:
        _eprint("l2ul: interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as e:  # --help, --version, an argument error: return the code (main is also called in-process)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USER_ERROR)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    args.argv = argv
    debug = bool(getattr(args, "debug", False))
    setup_logging(args)
    LOGGER.debug(f"l2ul {' '.join(argv)}")
    from ..errors import L2ULError

    previous = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread / no SIGTERM
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except L2ULError as e:
        if debug:
            raise
        _eprint(f"l2ul: error: {_error_line(e)}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _eprint(f"l2ul: interrupted; {_interrupt_note(args)}")
        return EXIT_INTERRUPTED
    except _Terminated:
        _eprint(f"l2ul: terminated; {_interrupt_note(args)}")
        return EXIT_TERMINATED
    except BrokenPipeError:  # the reader of stdout went away (`l2ul info | head -1`): not a failure to report
        with contextlib.suppress(OSError):  # (and Python's own flush at exit must not fail again)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as e:  # a missing, unreadable or unwritable file or folder
        if debug:
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        what = e.strerror or _error_line(e)
        if isinstance(e, FileNotFoundError):
            fix = "check the path"
        elif isinstance(e, PermissionError):
            fix = "check the permissions or choose another path"
        else:
            fix = "check the path, the permissions and the free disk space"
        _eprint(f"l2ul: error: {what}{where}; {fix}")
        return EXIT_USER_ERROR
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
