"""The CLI's conventions (issue #16): a fast ``--help`` that imports no torch, what the help mirrors from
modules it must not import, and the one-set-of-conventions rules shared by every command."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _cli_helpers import FAST, pretrain_digits, run


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return pretrain_digits(tmp_path_factory.mktemp("base") / "base.safetensors")


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


# ------------------------------------------------------------------------------------- the verdict
def _outcome(status="converged", *, labels=(3, 5), preds=(1, 2), targets=None, score=0.0, saved="m.safetensors",
             metrics=None):
    from types import SimpleNamespace

    from l2ul.result import UnlearnResult

    result = SimpleNamespace(status=status, converged=status == "converged", labels=list(labels),
                             preds_after=list(preds), targets=targets, task="relabel" if targets else "misclassify",
                             score_with_original_bn_stats=score)
    result.holds_with_original_bn_stats = UnlearnResult.holds_with_original_bn_stats.fget(result)
    metrics = metrics or {"acc_retain_before": 0.856, "acc_retain": 0.841, "acc_test_before": 0.81,
                          "acc_test": 0.812}
    return SimpleNamespace(result=result, metrics=metrics, model_path=saved)


def test_the_verdict_says_in_words_whether_it_holds_and_what_it_cost():
    from l2ul.cli.unlearn import verdict

    head, cost = verdict(_outcome()).splitlines()
    assert head == "verdict: HOLDS: all 2 instances are no longer predicted as their label, also with the original " \
                   "batch-norm statistics"
    assert cost == "cost: D_r 85.6% -> 84.1% (-1.5 points); D_test 81.0% -> 81.2% (+0.2 points)"
    assert "no batch-norm statistics" in verdict(_outcome(score=None))
    head = verdict(_outcome(score=0.5)).splitlines()[0]
    assert head.startswith("verdict: DOES NOT HOLD: all 2 instances") and "1 of 2 would be back" in head
    head = verdict(_outcome("budget_exhausted", preds=(3, 2), saved=None)).splitlines()[0]
    assert head == ("verdict: INCOMPLETE: 1 of 2 instances are no longer predicted as their label when the step "
                    "budget ran out; no model was written")
    head = verdict(_outcome(targets=[7, 8], preds=(7, 8), score=0.5)).splitlines()[0]
    assert "all 2 instances are predicted as their target" in head and "1 of 2 would be back" in head
    assert verdict(_outcome("diverged")) == ("verdict: FAILED: unlearning diverged; no model was written and "
                                             "nothing was deleted")
    assert "D_r not measured" in verdict(_outcome(metrics={"acc_retain": None, "acc_test": 0.5}))


def test_unlearn_prints_the_verdict_first(capsys, base, tmp_path):
    out = tmp_path / "u.safetensors"
    rc, stdout, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3,17", "--method", "neggrad",
                          "--bn", "freeze", "--forget-loss", "nearest", "--out", out, *FAST)
    assert rc == 0, err
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["holds_with_original_bn_stats"] is True
    head, cost = stdout.splitlines()[:2]
    assert head == ("verdict: HOLDS: all 2 instances are no longer predicted as their label, also with the "
                    "original batch-norm statistics")
    m = report["metrics"]
    assert cost.startswith(f"cost: D_r {100 * m['acc_retain_before']:.1f}% -> {100 * m['acc_retain']:.1f}% (")
