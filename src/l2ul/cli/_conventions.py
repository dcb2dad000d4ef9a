"""What every command shares: help that shows the defaults, one pair of progress flags, logging levels, and
argument errors that point to the command's own ``--help`` (with the option meant, when a flag is misspelt).

- ``--no-progress`` and ``--quiet`` are the same flag (no progress bars) on every command that draws them;
- messages (what a command is doing, notes, warnings) go to stderr through :mod:`logging` (logger ``l2ul``):
  ``--log-level warning`` keeps only warnings, ``-v`` / ``--log-level debug`` adds debug lines; results go to
  stdout, and error lines (``l2ul: error: ...``) are always printed.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import sys

from ._common import EXIT_USER_ERROR

LOGGER = logging.getLogger("l2ul")
LEVELS = ("debug", "info", "warning", "error")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with ``(default: X)`` added to every option whose help does not already say its
    default (as :class:`argparse.ArgumentDefaultsHelpFormatter`, but without ``(default: None)`` or
    ``(default: False)`` on flags and options that have no default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (not action.option_strings or "default" in text or d is None or isinstance(d, bool)
                or d is argparse.SUPPRESS or d == []):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument error is one line, like every other user error (argparse would print the whole usage),
    and names the ``--help`` of the command it concerns."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"l2ul: error: {message} (see `{self.prog} --help`)\n")

    def unknown(self, extra) -> None:
        """The error for arguments no option of this command takes; a misspelt option names the one meant."""
        options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        hints = []
        for word in extra:
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1) if word.startswith("-") else []
            if close:
                hints.append(f"{word}: did you mean {close[0]}?")
        self.error(f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else ""))


def add_common_arguments(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``--debug``, ``-v`` and ``--log-level``: before the command (``top``) or after it (an absent flag then
    leaves the value given before the command alone)."""
    keep = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors", **keep)
    p.add_argument("-v", "--verbose", action="count", help="more messages (debug lines)",
                   **(keep or {"default": 0}))
    p.add_argument("--log-level", choices=LEVELS, type=str.lower, metavar="LEVEL",
                   help=f"which messages to print on stderr: {', '.join(LEVELS)} (default: info)", **keep)


def add_progress_arguments(g) -> None:
    """``--no-progress`` / ``--quiet``: one flag under two names, on every command that draws progress bars."""
    g.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                   help="no progress bars (the two names are the same flag; fewer messages: --log-level warning)")


def progress_of(args) -> bool:
    return not getattr(args, "no_progress", False)


class _StderrHandler(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (so a redirected or captured stderr gets the lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - as logging.StreamHandler does
            self.handleError(record)


def setup_logging(args) -> None:
    """The ``l2ul`` logger at the level the flags ask for (default info), printing bare lines on stderr."""
    level = getattr(args, "log_level", None) or ("debug" if getattr(args, "verbose", 0) else "info")
    if not any(isinstance(h, _StderrHandler) for h in LOGGER.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.propagate = False  # (the lines are printed once, by this handler)
    LOGGER.setLevel(level.upper())


def info(message: str) -> None:
    """A command's progress line (the ``log`` callback the library is given)."""
    LOGGER.info(message)
