"""Trust (#15): no wrong instance forgotten, no input destroyed, model and report published together, no
non-finite model accepted, a one-line error wherever one is promised, and the reproducibility condition
recorded.

Most checks run ``l2ul.cli.main`` in-process; the publish and lock checks start ``python -m l2ul.cli`` (or a
small driver script) in subprocesses. Torch runs single-threaded (see tests/conftest.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from _cli_helpers import run
from l2ul.cli import main
from l2ul.errors import RequestError
from l2ul.requests import build_request, parse_forget_ids, parse_relabel_targets

FAST = ["--pgd-steps", "10", "--adv-per-instance", "2", "--pgd-eps", "0.5", "--max-steps", "300",
        "--retain-eval-size", "300", "--quiet", "--synth-images", "64", "--synth-steps", "20", "--repair-steps", "50"]
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX files and signals")
N = 100


def assert_user_error(rc, err, *words):
    """Exit 2, exactly one line ``l2ul: error: ...`` on stderr naming ``words``, no traceback."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2ul: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "base.safetensors"
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "3", "--out", str(out),
                 "--quiet"]) == 0
    return out


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ------------------------------------------------------------------------------ 1. the right instances

def test_an_id_list_is_never_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("3").write_text("42\n")
    Path("5").write_text("9\n")
    assert parse_forget_ids("3", n_train=N) == [3]  # instance 3, not the 42 in the file named 3
    assert parse_forget_ids("@3", n_train=N) == [42]
    assert parse_forget_ids("3,5", n_train=N) == [3, 5]
    labels = np.array([0, 1])
    assert parse_relabel_targets("5,2", labels=labels, num_classes=10, seed=0) == [5, 2]
    assert parse_relabel_targets("5", labels=np.array([0]), num_classes=10, seed=0) == [5]
    assert parse_relabel_targets("@5", labels=np.array([0]), num_classes=10, seed=0) == [9]
    Path("random").write_text("1\n")
    assert parse_relabel_targets("random", labels=np.array([0]), num_classes=2, seed=0) == [1]
    r = build_request(n_train=N, train_labels=np.arange(N) % 10, num_classes=10, forget_ids="3", relabel_to="5")
    assert r.ids == [3] and r.targets == [5] and r.source == "--forget-ids 3 --relabel-to 5"
    r = build_request(n_train=N, train_labels=np.arange(N) % 10, num_classes=10, forget_ids="@3")
    assert r.ids == [42] and r.source == "--forget-ids @3"


def test_a_value_that_is_neither_form_names_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ids.txt").write_text("7\n")
    with pytest.raises(RequestError, match=r"'ids.txt' is not an integer index.*comma list like 3,17,42.*"
                                           r"@FILE.*to read the file 'ids.txt', write --forget-ids @ids.txt"):
        parse_forget_ids("ids.txt", n_train=N)
    with pytest.raises(RequestError, match=r"'nothere.txt' is not an integer index.*@FILE") as e:
        parse_forget_ids("nothere.txt", n_train=N)
    assert "to read the file" not in str(e.value)
    # path ids (image folders): an unknown path names both forms too
    with pytest.raises(RequestError, match=r"not a training file of this dataset.*@FILE.*write --forget-ids @"):
        parse_forget_ids("ids.txt", n_train=2, train_ids=["train/a/0.png", "train/b/0.png"])
    assert parse_forget_ids("@ids.txt", n_train=N) == [7]
    Path("t.txt").write_text("4\n")
    with pytest.raises(RequestError, match=r"relabel target 't.txt' is not an integer.*'random', a comma list of "
                                           r"targets, or @FILE.*write --relabel-to @t.txt"):
        parse_relabel_targets("t.txt", labels=np.array([0]), num_classes=10, seed=0)
    assert parse_relabel_targets("@t.txt", labels=np.array([0]), num_classes=10, seed=0) == [4]
    # a class name is a target list even where a file of that name exists
    Path("cat").write_text("0\n")
    assert parse_relabel_targets("cat", labels=np.array([0]), num_classes=2, seed=0, class_names=["dog", "cat"]) == [1]


@pytest.mark.parametrize("value, match", [
    ("@", "needs a file name after '@'"),
    ("@missing.txt", "does not exist"),
    ("@.", "is a directory"),
])
def test_bad_at_file(tmp_path, monkeypatch, value, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RequestError, match=match):
        parse_forget_ids(value, n_train=N)
    with pytest.raises(RequestError, match=match):
        parse_relabel_targets(value, labels=np.array([0]), num_classes=10, seed=0)


@POSIX
def test_at_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RequestError, match="not a regular file"):
        parse_forget_ids(f"@{fifo}", n_train=N)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(RequestError, match=r"cannot read --forget-ids file .*loop"):
        parse_forget_ids(f"@{loop}", n_train=N)


def test_cli_forgets_the_listed_instance_next_to_a_same_named_file(capsys, base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("3").write_text("42\n")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", "u.safetensors", *FAST)
    assert rc == 0, err
    report = json.loads(Path("u.safetensors.report.json").read_text())
    assert report["request"]["ids"] == [3] and [p["id"] for p in report["per_instance"]] == [3]
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "ids", "--out", "v.safetensors", *FAST)
    assert_user_error(rc, err, "'ids' is not an integer index", "@FILE")
    Path("ids").write_text("42\n")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "ids", "--out", "v.safetensors", *FAST)
    assert_user_error(rc, err, "write --forget-ids @ids")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--relabel-to", "t.txt",
                     "--out", "v.safetensors", *FAST)
    assert_user_error(rc, err, "'t.txt' is not an integer", "@FILE", "'random'")
    assert not Path("v.safetensors").exists()


def test_cli_help_names_the_at_form(capsys):
    assert main(["unlearn", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "IDS|@FILE" in out and "@FILE: a file with one id per line" in out
    assert "TARGETS|@FILE|random" in out
