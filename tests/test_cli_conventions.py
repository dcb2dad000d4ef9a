"""The CLI's conventions (issue #16): a fast ``--help`` that imports no torch, what the help mirrors from
modules it must not import, and the one-set-of-conventions rules shared by every command."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys


def subcommands(parser: argparse.ArgumentParser):
    """name -> sub-parser of every ``l2ul`` command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_building_the_parser_and_every_help_imports_no_torch():
    """`l2ul --help` and `l2ul CMD --help` stay well under a second: no torch (nor numpy) at parse time."""
    code = ("import sys, argparse, l2ul.cli\n"
            "p = l2ul.cli.build_parser()\n"
            "p.format_help()\n"
            "subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)][0].choices\n"
            "[s.format_help() for s in subs.values()]\n"
            "import l2ul\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'numpy', 'sklearn', 'l2ul.engine') if m in sys.modules)\n"
            "print(len(subs), heavy)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "[]"], proc.stdout


def test_the_lazy_package_still_exports_everything():
    import l2ul

    for name in l2ul.__all__:
        assert getattr(l2ul, name) is not None, name
    assert set(l2ul.__all__) <= set(dir(l2ul))


def test_help_mirrors_what_it_cannot_import():
    """The bench defaults and dataset examples the help names without importing torch are the real ones."""
    from l2ul.bench import DEFAULT_KS, DEFAULT_METHODS
    from l2ul.cli import bench as cli_bench
    from l2ul.cli._options import DATASET_EXAMPLES
    from l2ul.data import dataset_specs

    assert cli_bench.HELP_DEFAULT_METHODS == ",".join(DEFAULT_METHODS)
    assert cli_bench.HELP_DEFAULT_KS == ",".join(map(str, DEFAULT_KS))
    usages = {usage.split("[")[0] for usage, _ in dataset_specs()}
    assert set(DATASET_EXAMPLES) <= usages
