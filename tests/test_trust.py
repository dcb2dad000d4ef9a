"""Trust (#15): no wrong instance forgotten, no input destroyed, model and report published together, no
non-finite model accepted, a one-line error wherever one is promised, and the reproducibility condition
recorded.

Most checks run ``l2ul.cli.main`` in-process; the publish and lock checks start ``python -m l2ul.cli`` (or a
small driver script) in subprocesses. Torch runs single-threaded (see tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from _cli_helpers import run, sha256
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


# ------------------------------------------------------------------------------ 2. no input destroyed

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A digits-shaped npz dataset, an ids file, a targets file, a proxy npz and an image folder."""
    from l2ul.data import load_dataset

    d = tmp_path_factory.mktemp("inputs")
    b = load_dataset("digits")
    x, y = b.stack_train(list(range(300)))
    u8 = np.rint(x.numpy()[:, 0] * 255).astype(np.uint8)
    np.savez(d / "data.npz", x_train=u8[:200], y_train=y.numpy()[:200], x_test=u8[200:], y_test=y.numpy()[200:])
    np.savez(d / "proxy.npz", x=u8[200:264])
    (d / "ids.txt").write_text("3\n17\n")
    (d / "targets.txt").write_text("1\n2\n")
    from PIL import Image

    for split in ("train", "test"):
        for c in ("a", "b"):
            (d / "folder" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(d / "folder" / split / c / f"{i}.png")
    return d


def _contents(folder: Path):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


UNLEARN_INPUT_CASES = {
    # name: (extra arguments, the output flag, the input it is aimed at)
    "dataset npz as --out": (["--dataset", "npz:{d}/data.npz"], "--out", "{d}/data.npz"),
    "dataset npz as --report": (["--dataset", "npz:{d}/data.npz"], "--report", "{d}/data.npz"),
    "ids file as --out": (["--forget-ids", "@{d}/ids.txt"], "--out", "{d}/ids.txt"),
    "ids file as --report": (["--forget-ids", "@{d}/ids.txt"], "--report", "{d}/ids.txt"),
    "relabel file as --report": (["--relabel-to", "@{d}/targets.txt"], "--report", "{d}/targets.txt"),
    "proxy npz as --out": (["--proxy-data", "npz:{d}/proxy.npz"], "--out", "{d}/proxy.npz"),
    "another spelling of the dataset": (["--dataset", "npz:{d}/data.npz"], "--out", "{d}/../{dn}/data.npz"),
    "inside the image folder": (["--dataset", "imagefolder:{d}/folder?resize=8"], "--out",
                                "{d}/folder/train/a/0.png"),
    "new file inside the image folder": (["--dataset", "imagefolder:{d}/folder"], "--report",
                                         "{d}/folder/train/a/model.report.json"),
    "proxy folder": (["--proxy-data", "imagefolder:{d}/folder"], "--out", "{d}/folder/x.safetensors"),
}


@pytest.mark.parametrize("name", list(UNLEARN_INPUT_CASES))
def test_unlearn_never_writes_over_an_input(capsys, base, inputs, tmp_path, name):
    extra, flag, target = UNLEARN_INPUT_CASES[name]
    fmt = dict(d=inputs, dn=inputs.name)
    extra = [a.format(**fmt) for a in extra]
    target = target.format(**fmt)
    before = _contents(inputs)
    args = ["unlearn", "--model", base, *extra, "--overwrite", *FAST]
    if "--forget-ids" not in extra:
        args += ["--forget-ids", "3,17"]
    if flag == "--out":
        args += ["--out", target]
    else:
        args += ["--out", tmp_path / "o.safetensors", "--report", target]
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, "refusing to write", "input", "choose another output path")
    assert _contents(inputs) == before
    assert list(tmp_path.iterdir()) == []


@POSIX
def test_links_to_an_input_are_refused(capsys, base, inputs, tmp_path):
    link, hard = tmp_path / "link.npz", tmp_path / "hard.npz"
    os.symlink(inputs / "data.npz", link)
    os.link(inputs / "data.npz", hard)
    before = sha256(inputs / "data.npz")
    for out in (link, hard):
        rc, _, err = run(capsys, "unlearn", "--model", base, "--dataset", f"npz:{inputs}/data.npz",
                         "--forget-ids", "3", "--out", out, "--overwrite", *FAST)
        assert_user_error(rc, err, "refusing to write", "input")
    # and a link *to the output* named as an input
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", inputs / "data.npz",
                     "--dataset", f"npz:{link}", "--overwrite", *FAST)
    assert_user_error(rc, err, "refusing to write", "input")
    assert sha256(inputs / "data.npz") == before


def test_pretrain_never_writes_over_its_dataset(capsys, inputs):
    before = _contents(inputs)
    for spec, out in ((f"npz:{inputs}/data.npz", inputs / "data.npz"),
                      (f"imagefolder:{inputs}/folder", inputs / "folder" / "m.safetensors")):
        rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--dataset", spec, "--out", out,
                         "--overwrite", "--epochs", "1", "--quiet")
        assert_user_error(rc, err, "refusing to write", "input")
    assert _contents(inputs) == before


def _special(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "device":
        try:
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
        except (PermissionError, OSError):
            pytest.skip("cannot create a device node here (needs root)")
    elif kind == "directory":
        p.mkdir()
    elif kind == "link to fifo":
        os.mkfifo(tmp_path / "fifo-target")
        os.symlink(tmp_path / "fifo-target", p)
    elif kind == "dangling link":
        os.symlink(tmp_path / "nothing-here", p)
    elif kind == "link loop":
        os.symlink(p, p)
    return p


SPECIAL = ["fifo", "device", "directory", "link to fifo", "dangling link", "link loop"]
SPECIAL_WORDS = {"fifo": "a FIFO", "device": "a character device", "directory": "is a directory",
                 "link to fifo": "(through a symbolic link)", "dangling link": "leads nowhere",
                 "link loop": "symbolic link loop"}


@POSIX
@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("command", ["unlearn --out", "unlearn --report", "pretrain --out", "evaluate --json"])
def test_an_output_that_is_not_a_regular_file_is_refused(capsys, base, tmp_path, kind, command):
    special = _special(tmp_path, kind)
    mode = os.lstat(special).st_mode
    if command == "unlearn --out":
        args = ["unlearn", "--model", base, "--forget-ids", "3", "--out", special, *FAST]
    elif command == "unlearn --report":
        args = ["unlearn", "--model", base, "--forget-ids", "3", "--out", tmp_path / "o.safetensors",
                "--report", special, *FAST]
    elif command == "pretrain --out":
        args = ["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "1", "--out", special,
                "--quiet"]
    else:
        args = ["evaluate", "--model", base, "--retain-eval-size", "50", "--json", special]
    rc, _, err = run(capsys, *args, "--overwrite")
    assert_user_error(rc, err, SPECIAL_WORDS[kind])
    assert os.lstat(special).st_mode == mode  # still what it was
    assert not (tmp_path / "o.safetensors").exists()
