"""The CLI's conventions (issue #16): a fast ``--help`` that imports no torch, what the help mirrors from
modules it must not import, and the one-set-of-conventions rules shared by every command."""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _cli_helpers import FAST, assert_user_error, pretrain_digits, run
from l2ul.cli import build_parser


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
    assert proc.stdout.split() == ["9", "[]"], proc.stdout


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
             metrics=None, kept=None):
    from types import SimpleNamespace

    from l2ul.result import UnlearnResult

    result = SimpleNamespace(status=status, converged=status == "converged", labels=list(labels),
                             preds_after=list(preds), targets=targets, task="relabel" if targets else "misclassify",
                             score_with_original_bn_stats=score, kept_forgotten=kept)
    result.holds_with_original_bn_stats = UnlearnResult.holds_with_original_bn_stats.fget(result)
    result.earlier_stay_forgotten = UnlearnResult.earlier_stay_forgotten.fget(result)
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
    head = verdict(_outcome(kept={"n": 16, "back_on_label": 0})).splitlines()[0]
    assert head.startswith("verdict: HOLDS:") and "the 16 instances of earlier requests stay off their label" in head
    head = verdict(_outcome(kept={"n": 16, "back_on_label": 2})).splitlines()[0]
    assert head.startswith("verdict: DOES NOT HOLD:") and "2 of 16 instances of earlier requests" in head


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


# ----------------------------------------------------------------------------------- one set of conventions
def test_every_command_shows_its_defaults_in_its_help():
    from l2ul.cli._conventions import HelpFormatter

    subs = subcommands(build_parser())
    assert all(sp.formatter_class is HelpFormatter for sp in subs.values())
    flat = {name: " ".join(sp.format_help().split()) for name, sp in subs.items()}
    assert "--seed SEED seed of the initialisation and the batch order (default: 0)" in flat["pretrain"]
    assert "--seed SEED seed of the request (which 8 instances) and the runs (default: 0)" in flat["demo"]
    assert "(default: info)" in flat["unlearn"] and "(default: None)" not in flat["unlearn"]
    for name, sp in subs.items():  # every option with a default says it
        for a in sp._actions:
            d = a.default
            if a.option_strings and d not in (None, argparse.SUPPRESS) and not isinstance(d, bool):
                assert "default" in HelpFormatter(name)._get_help_string(a), (name, a.option_strings)


def test_quiet_and_no_progress_are_one_flag_wherever_progress_is_drawn():
    subs = subcommands(build_parser())
    common = {"unlearn": ["--model", "m", "--forget-ids", "3", "--out", "o"], "pretrain": ["--arch", "a", "--out", "o"],
              "bench": ["--out", "o"]}
    for name, argv in common.items():
        for flag in ("--quiet", "--no-progress"):
            assert subs[name].parse_args(argv + [flag]).no_progress is True, (name, flag)
        assert subs[name].parse_args(argv).no_progress is False


def test_one_name_for_an_output_and_a_report_across_commands():
    subs = subcommands(build_parser())
    assert subs["demo"].parse_args(["--out", "d"]).out_dir == "d" == subs["demo"].parse_args(["--out-dir", "d"]).out_dir
    assert subs["evaluate"].parse_args(["--report", "r.json"]).json == "r.json"
    assert subs["evaluate"].parse_args(["--json", "r.json"]).json == "r.json"
    assert subs["bench"].parse_args(["--out", "o"]).dataset == "digits"  # the same default dataset everywhere


def test_an_unknown_flag_points_to_the_commands_help(capsys):
    rc, _, err = run(capsys, "unlearn", "--model", "m", "--forget-ids", "3", "--out", "o", "--max-stesp", "3")
    assert_user_error(rc, err, "unrecognized arguments: --max-stesp 3", "did you mean --max-steps?",
                      "(see `l2ul unlearn --help`)")
    rc, _, err = run(capsys, "--bogus")
    assert_user_error(rc, err, "unrecognized arguments: --bogus", "(see `l2ul --help`)")


def test_every_command_a_text_names_exists():
    """`l2ul X` in the sources, the README and the docs names a command that exists."""
    import re

    import l2ul
    from l2ul.cli import _COMMANDS

    root = Path(l2ul.__file__).parent
    files = [*root.rglob("*.py"), *(root.parents[1] / "docs").glob("*.md"), root.parents[1] / "README.md",
             root.parents[1] / "ARCHITECTURE.md"]
    named = {(f.name, m) for f in files if f.is_file()
             for m in re.findall(r"`l2ul ([a-z][a-z_-]*)", f.read_text(encoding="utf-8"))}
    assert {m for _, m in named} >= {"unlearn", "info"}
    assert not [(f, m) for f, m in named if m not in _COMMANDS]


def test_log_levels(capsys, base):
    argv = ["evaluate", "--model", base, "--retain-eval-size", "50"]
    rc, out, err = run(capsys, *argv)
    assert rc == 0 and "l2ul: evaluating on D_r (50 remaining instances) and D_test (360)" in err, err
    assert "D_test" in out
    rc, out, err = run(capsys, "--log-level", "warning", *argv)
    assert rc == 0 and err == "" and "D_test" in out
    for verbose in (["-v", *argv], [*argv, "--log-level", "DEBUG"]):
        rc, _, err = run(capsys, *verbose)
        assert rc == 0 and f"l2ul {' '.join(map(str, verbose))}" in err


# ------------------------------------------------------------------------------------------- --config FILE
def _config(tmp_path, argv):
    from l2ul.cli._options import config_from_args

    args = subcommands(build_parser())["unlearn"].parse_args(
        ["--model", "m", "--forget-ids", "3", "--out", "o", *map(str, argv)])
    return config_from_args(args, seed=args.seed)


def test_a_config_file_sets_fields_and_the_flags_override_it(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('pgd_eps = 0.5\nmax_steps = 20\nbn = "freeze"\nlr = 0.01\n')
    cfg, name = _config(tmp_path, ["--config", toml, "--max-steps", "30"])
    assert (cfg.pgd_eps, cfg.max_steps, cfg.bn, cfg.lr) == (0.5, 30, "freeze", 0.01) and name == "default + run.toml + overrides"
    cfg, name = _config(tmp_path, ["--config", toml, "--preset", "cifar10-resnet18"])
    assert cfg.pgd_eps == 0.5 and cfg.adv_per_instance == 20 and name == "cifar10-resnet18 + run.toml"
    yaml = tmp_path / "run.yaml"
    yaml.write_text("pgd_eps: 0.25\nforget_loss: nearest\n")
    pytest.importorskip("yaml")
    cfg, name = _config(tmp_path, ["--config", yaml])
    assert (cfg.pgd_eps, cfg.forget_loss) == (0.25, "nearest") and name == "default + run.yaml"
    cfg, _ = _config(tmp_path, [])
    from l2ul.config import UnlearnConfig

    assert cfg == UnlearnConfig()


@pytest.mark.parametrize("text, words", [
    ("pgd_epz = 0.5\n", ["unknown config key(s) pgd_epz", "pgd_eps"]),
    ("lr = -1.0\n", ["bad.toml: ", "lr"]),
    ("seed = 3\n", ["--seed"]),
    ("lr = \n", ["not valid TOML"]),
])
def test_a_bad_config_file_is_one_line(capsys, base, tmp_path, text, words):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    out = tmp_path / "o.safetensors"
    rc, stdout, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--config", bad)
    assert_user_error(rc, err, *words)
    assert "set with --" not in err and stdout == "" and not out.exists()


def test_one_instance_reads_as_one():
    from l2ul.cli.unlearn import verdict

    assert verdict(_outcome(labels=[3], preds=[1])).startswith("verdict: HOLDS: the instance is no longer predicted")
    assert "0 of 1 instance is no longer" in verdict(_outcome("budget_exhausted", labels=[3], preds=[3]))


def test_a_closed_stdout_is_not_an_error():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(f"'{sys.executable}' -m l2ul info | head -1", shell=True, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.stdout == "methods:\n" and proc.stderr == ""


def test_the_readme_commands_parse():
    """Every `l2ul ...` command line in the README's shell blocks is one the CLI accepts (flags, values)."""
    import re
    import shlex

    import l2ul

    readme = (Path(l2ul.__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    lines = [line.split("#", 1)[0] for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    commands = [part.strip()[len("l2ul "):] for line in lines for part in line.split("&&")
                if part.strip().startswith("l2ul ")]
    assert "demo" in commands and sum(c.startswith("unlearn") for c in commands) >= 2
    for command in commands:
        try:
            args, extra = build_parser().parse_known_args(shlex.split(command))
        except SystemExit as e:
            raise AssertionError(f"README: `l2ul {command}` does not parse") from e
        assert not extra and args.command, command


# ------------------------------------------------------------------------------------------------ tables
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_tables_are_drawn_by_rich_on_a_terminal_and_plain_in_a_pipe():
    from l2ul.cli._tables import print_table
    from l2ul.reports import format_table

    rows = [{"metric": "D_r accuracy [%]", "before": 85.6, "after": 84.1}, {"metric": "D_test", "before": None}]
    cols = ["metric", "before", "after"]
    plain = io.StringIO()
    print_table(rows, cols, floatfmt=".1f", file=plain)
    assert plain.getvalue() == format_table(rows, cols, floatfmt=".1f") + "\n"
    term = _Terminal()
    print_table(rows, cols, floatfmt=".1f", file=term)
    text = term.getvalue()
    assert "\x1b[" in text  # styled (bold headers)
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if line.strip()]
    assert lines[0].split() == ["metric", "before", "after"] and set(lines[1].strip()) <= set("━─ ")
    assert "D_r accuracy [%]" in lines[2] and lines[2].rstrip().endswith("84.1")  # markup off; numbers right
    assert lines[3].split() == ["D_test", "-", "-"]
