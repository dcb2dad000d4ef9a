"""Trust (#15): no wrong instance forgotten, no input destroyed, model and report published together, no
non-finite model accepted, a one-line error wherever one is promised, and the reproducibility condition
recorded.

Most checks run ``l2ul.cli.main`` in-process; the publish and lock checks start ``python -m l2ul.cli`` (or a
small driver script) in subprocesses. Torch runs single-threaded (see tests/conftest.py).
"""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli_helpers import FAST, assert_user_error, run, sha256
from l2ul.cli import main
from l2ul.errors import L2ULError, RequestError
from l2ul.requests import build_request, parse_forget_ids, parse_relabel_targets

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX files and signals")
N = 100




def assert_error_line(rc, err, *words):
    """Exit 2 and, after any progress lines of the work done, one last line ``l2ul: error: ...``."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert [line for line in lines if "error" in line] == lines[-1:] and lines[-1].startswith("l2ul: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[-1], (w, lines[-1])


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


# ------------------------------------------------------------------- 4. model and report published together

# Runs `l2ul ARGS` and SIGKILLs itself right after os.replace(..., KILL_AFTER): the moment between the renames
# of the model and of its report (or, with the report's path, just after the commit record).
KILL_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    kill_after, argv = Path(sys.argv[1]), sys.argv[2:]
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if Path(dst) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    from l2ul.cli import main
    sys.exit(main(argv))
""")


def _killed_run(tmp_path, kill_after, *args):
    driver = tmp_path / "driver.py"
    driver.write_text(KILL_DRIVER)
    p = subprocess.run([sys.executable, str(driver), str(kill_after), *map(str, args)], capture_output=True,
                       text=True, env=_env(), timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    return p


def _pair_is_whole(out: Path, report: Path):
    rep = json.loads(report.read_text())
    assert rep["output_model"] == {"path": str(out), "sha256": sha256(out)}
    assert not (out.parent / f".{out.name}.incomplete").exists()


@POSIX
def test_sigkill_between_the_renames(capsys, base, tmp_path):
    out_dir = tmp_path / "out"
    out, report = out_dir / "u.safetensors", out_dir / "u.safetensors.report.json"
    marker = out_dir / ".u.safetensors.incomplete"
    cmd = ["unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST]
    _killed_run(tmp_path, out, *cmd)
    assert out.exists() and not report.exists() and marker.exists()  # the moment between the renames
    # no l2ul reader accepts the model without its report
    rc, _, err = run(capsys, "evaluate", "--model", out, "--retain-eval-size", "50")
    assert_user_error(rc, err, str(out), "incomplete output", "rerun")
    rc, _, err = run(capsys, "unlearn", "--model", out, "--forget-ids", "5", "--out", tmp_path / "x", *FAST)
    assert_user_error(rc, err, "incomplete output")
    # the same command again (no --overwrite needed): the incomplete output is removed first, then published
    rc, _, err = run(capsys, *cmd)
    assert rc == 0, err
    assert "removed" in err and "interrupted run" in err
    _pair_is_whole(out, report)
    assert sorted(p.name for p in out_dir.iterdir()) == ["u.safetensors", "u.safetensors.report.html", "u.safetensors.report.json"]


@POSIX
def test_sigkill_after_the_commit_record(capsys, base, tmp_path):
    out, report = tmp_path / "u.safetensors", tmp_path / "r.json"
    cmd = ["unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--report", report, *FAST]
    _killed_run(tmp_path, report, *cmd)
    assert (tmp_path / ".u.safetensors.incomplete").exists()  # killed before removing its marker
    assert json.loads(report.read_text())["output_model"]["sha256"] == sha256(out)  # whole, but still marked
    rc, _, err = run(capsys, "evaluate", "--model", out, "--retain-eval-size", "50")  # published: accepted
    assert rc == 0, err
    rc, _, err = run(capsys, *cmd)
    assert_user_error(rc, err, "already exists", "--overwrite")
    rc, _, err = run(capsys, *cmd, "--overwrite")
    assert rc == 0, err
    _pair_is_whole(out, report)


@POSIX
def test_sigkill_while_overwriting_leaves_no_mixed_pair(capsys, base, tmp_path):
    out, report = tmp_path / "u.safetensors", tmp_path / "u.safetensors.report.json"
    cmd = ["unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST]
    rc, _, err = run(capsys, *cmd)
    assert rc == 0, err
    old_report = report.read_bytes()
    _killed_run(tmp_path, out, *cmd, "--forget-ids", "17", "--overwrite")  # (the last --forget-ids wins)
    assert report.read_bytes() == old_report  # the old report, next to the new model: a mixed pair ...
    rc, _, err = run(capsys, "evaluate", "--model", out, "--retain-eval-size", "50")
    assert_user_error(rc, err, "incomplete output")  # ... which l2ul refuses
    rc, _, err = run(capsys, *cmd, "--forget-ids", "17")  # and the next run clears, without --overwrite
    assert rc == 0, err
    _pair_is_whole(out, report)
    assert json.loads(report.read_text())["request"]["ids"] == [17]


def test_publish_rolls_back_on_an_exception(tmp_path, monkeypatch):
    import l2ul.publish as publish

    a, b = tmp_path / "a.bin", tmp_path / "b.json"
    with publish.publish_together() as stage:
        stage(a).write_bytes(b"A1")
        stage(b).write_bytes(b"B1")
    assert a.read_bytes() == b"A1" and b.read_bytes() == b"B1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]
    real = os.replace

    def replace(src, dst):
        if Path(dst) == b:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(publish.os, "replace", replace)
    with pytest.raises(OSError):
        with publish.publish_together() as stage:
            stage(a).write_bytes(b"A2")
            stage(b).write_bytes(b"B2")
    monkeypatch.undo()
    # the new a was published, then taken back with the marker; nothing else is left
    assert not a.exists() and b.read_bytes() == b"B1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


@pytest.mark.parametrize("state", ["before the first rename", "between the renames", "over an old set",
                                   "after the last rename", "written since"])
def test_publish_states_a_kill_can_leave(tmp_path, state):
    """What the reader (check_published) and the next writer (recover_incomplete) make of each state."""
    from l2ul.publish import check_published, incomplete_marker, recover_incomplete
    from l2ul.safety import sha256_file

    a, b = tmp_path / "m.bin", tmp_path / "m.json"
    new_a, new_b = tmp_path / ".m.bin.1.partial", tmp_path / ".m.json.1.partial"
    new_a.write_bytes(b"new model")
    new_b.write_bytes(b"new report")
    old = state in ("before the first rename", "over an old set")
    if old:
        a.write_bytes(b"old model")
        b.write_bytes(b"old report")
    files = [{"path": str(p), "tmp": str(t), "sha256": sha256_file(t),
              "before": sha256_file(p) if p.exists() else None} for p, t in ((a, new_a), (b, new_b))]
    incomplete_marker(a).write_text(json.dumps({"l2ul_incomplete": 1, "files": files}))
    if state != "before the first rename":
        os.replace(new_a, a)
    if state == "after the last rename":
        os.replace(new_b, b)
    if state == "written since":
        a.write_bytes(b"something else")
    whole = state in ("before the first rename", "after the last rename")
    if whole:
        check_published(a)
    else:
        with pytest.raises(L2ULError, match="incomplete output"):
            check_published(a)
    recover_incomplete(a)
    left = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    expected = {"before the first rename": {"m.bin": b"old model", "m.json": b"old report"},
                "between the renames": {},
                "over an old set": {},  # the new model is removed, and the old report, whose model it replaced
                "after the last rename": {"m.bin": b"new model", "m.json": b"new report"},
                "written since": {"m.bin": b"something else"}}[state]
    assert left == expected
    check_published(a)  # nothing is marked any more


@POSIX
def test_lock_a_concurrent_run_fails_at_once(capsys, base, tmp_path):
    out = tmp_path / "u.safetensors"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from l2ul.publish import output_lock
        with output_lock({str(out)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        for args in (["unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST],
                     ["unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--overwrite", *FAST],
                     ["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "1", "--out", out,
                      "--quiet"]):
            rc, _, err = run(capsys, *args)
            assert_user_error(rc, err, "another l2ul run is writing", str(out))
        assert time.monotonic() - t0 < 30  # refused at once, not after the work
        assert not out.exists() and not Path(f"{out}.report.json").exists()
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST)
    assert rc == 0, err  # (a lock file a killed holder left behind does not block)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.safetensors", "u.safetensors.report.html", "u.safetensors.report.json"]


@POSIX
def test_two_racing_runs_cannot_both_succeed(base, tmp_path):
    out = tmp_path / "u.safetensors"
    cmd = [sys.executable, "-m", "l2ul.cli", "unlearn", "--model", str(base), "--forget-ids", "3", "--out",
           str(out), *FAST]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert_user_error(2, err)
    assert "another l2ul run is writing" in err or "already exists" in err
    _pair_is_whole(out, Path(f"{out}.report.json"))


def test_lock_in_process(tmp_path):
    import l2ul.safety

    assert l2ul.safety.output_lock is __import__("l2ul.publish").publish.output_lock  # (still importable there)
    from l2ul.publish import output_lock

    out = tmp_path / "sub" / "dir" / "o.bin"
    with output_lock(out):
        assert (tmp_path / "sub" / "dir" / ".o.bin.lock").exists()
        with pytest.raises(L2ULError, match="another l2ul run is writing"):
            with output_lock(out):
                pass
        barrier = threading.Barrier(2)
        errors = []

        def other():
            barrier.wait()
            try:
                with output_lock(out):
                    pass
            except L2ULError as e:
                errors.append(str(e))

        t = threading.Thread(target=other)
        t.start()
        barrier.wait()
        t.join()
        assert len(errors) == 1
    assert not (tmp_path / "sub").exists()  # the folders it made for the lock are gone again


# ------------------------------------------------------------------------------------ 5. NaN models

def _damaged(kind: str):
    from l2ul.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    state = model.state_dict()
    with torch.no_grad():
        if kind == "nan weight":
            next(t for n, t in state.items() if n.endswith("weight")).view(-1)[0] = float("nan")
        elif kind == "inf bias":
            next(t for n, t in state.items() if n.endswith("bias")).view(-1)[0] = float("inf")
        else:  # a batch-norm variance that went to inf (what `pretrain --lr 1e9` produces)
            next(t for n, t in state.items() if n.endswith("running_var")).fill_(float("inf"))
    return model


DAMAGE = ["nan weight", "inf bias", "inf running_var"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_unlearn_api_refuses_a_non_finite_model_before_any_work(kind, monkeypatch):
    import l2ul.engine
    from l2ul import unlearn
    from l2ul.errors import ModelFileError

    def no_work(*a, **k):
        raise AssertionError("work started on a non-finite model")

    monkeypatch.setattr(l2ul.engine, "_make_context", no_work)
    model = _damaged(kind)
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([1, 2])
    for method in ("neggrad", "l2ul", "repair"):
        with pytest.raises(ModelFileError, match="non-finite value"):
            unlearn(model, x, y, method=method)


@pytest.mark.parametrize("kind", DAMAGE)
def test_run_request_and_cli_refuse_a_non_finite_model(capsys, tmp_path, kind):
    from l2ul.errors import ModelFileError
    from l2ul.pipeline import run_request

    model = _damaged(kind)
    with pytest.raises(ModelFileError, match="non-finite value"):
        run_request(model=model, forget_ids="3", out=tmp_path / "o.safetensors")
    weights = tmp_path / "nan.pt"
    torch.save(model.state_dict(), weights)
    rc, _, err = run(capsys, "unlearn", "--arch", "small_cnn", "--weights", weights, "--forget-ids", "3",
                     "--out", tmp_path / "o.safetensors", *FAST)
    assert_user_error(rc, err, "non-finite value")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt"]


def test_pretrain_with_a_huge_lr_reports_divergence_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "m.safetensors"
    rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--dataset", "digits", "--lr", "1e9", "--epochs",
                     "2", "--out", out, "--quiet", "--log-level", "warning")     # only the error line on stderr
    assert_user_error(rc, err, "diverged", "lower")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- 6. a one-line error where one is promised

def _npz_variants(d: Path, key_sets):
    """Damaged copies of a valid npz: a flipped data byte (bad CRC), truncated, object arrays, a non-.npy
    member. ``key_sets``: ``{key: array}`` of a valid file."""
    import io

    good = d / "good.npz"
    np.savez(good, **key_sets)
    raw = good.read_bytes()
    out = {}
    crc = bytearray(raw)
    crc[len(raw) // 3] ^= 0xFF  # inside the first member's data
    (d / "crc.npz").write_bytes(bytes(crc))
    out["bad CRC"] = d / "crc.npz"
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    out["truncated"] = d / "truncated.npz"
    with zipfile.ZipFile(d / "objects.npz", "w") as z:
        for k, v in key_sets.items():
            buf = io.BytesIO()
            np.save(buf, np.array([1, "a", None], dtype=object) if k in ("x_train", "x") else v, allow_pickle=True)
            z.writestr(k + ".npy", buf.getvalue())
    out["object arrays"] = d / "objects.npz"
    with zipfile.ZipFile(d / "members.npz", "w") as z:
        for k, v in key_sets.items():
            buf = io.BytesIO()
            np.save(buf, v)
            z.writestr(k + ".npy", buf.getvalue())
        z.writestr("readme.txt", b"not an array")
    out["non-.npy member"] = d / "members.npz"
    return out


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, inputs):
    d = tmp_path_factory.mktemp("damaged")
    with np.load(inputs / "data.npz") as z:
        arrays = {k: z[k] for k in z.files}
    (d / "data").mkdir()
    (d / "proxy").mkdir()
    with np.load(inputs / "proxy.npz") as z:
        proxy = {"x": z["x"]}
    return {"dataset": _npz_variants(d / "data", arrays), "proxy": _npz_variants(d / "proxy", proxy)}


NPZ_DAMAGE = ["bad CRC", "truncated", "object arrays", "non-.npy member"]
NPZ_WORDS = {"bad CRC": "damaged", "truncated": "damaged", "object arrays": "Python objects",
             "non-.npy member": "not a .npy array"}


@pytest.mark.parametrize("damage", NPZ_DAMAGE)
@pytest.mark.parametrize("role", ["dataset", "proxy", "pretrain dataset"])
def test_damaged_npz_is_one_line(capsys, base, damaged, tmp_path, role, damage):
    path = damaged["proxy" if role == "proxy" else "dataset"][damage]
    if role == "dataset":
        args = ["unlearn", "--model", base, "--dataset", f"npz:{path}", "--forget-ids", "3",
                "--out", tmp_path / "o.safetensors", *FAST]
    elif role == "proxy":
        args = ["unlearn", "--model", base, "--proxy-data", f"npz:{path}", "--forget-ids", "3",
                "--out", tmp_path / "o.safetensors", *FAST]
    else:
        args = ["pretrain", "--arch", "small_cnn", "--dataset", f"npz:{path}", "--epochs", "1",
                "--out", tmp_path / "o.safetensors", "--quiet"]
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, str(path), NPZ_WORDS[damage])
    assert list(tmp_path.iterdir()) == []


def test_a_state_dict_of_another_architecture(capsys, tmp_path):
    from l2ul.models import create_model

    other = tmp_path / "resnet20.pt"
    torch.save(create_model("resnet20", num_classes=10).state_dict(), other)
    rc, _, err = run(capsys, "unlearn", "--arch", "small_cnn", "--weights", other, "--forget-ids", "3",
                     "--out", tmp_path / "o.safetensors", *FAST)
    assert_user_error(rc, err, str(other), "does not fit small_cnn", "--arch")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("mixed")
    for split in ("train", "test"):
        for c in ("a", "b"):
            (d / split / c).mkdir(parents=True)
            for i in range(3):
                side = 9 if (split, c, i) == ("train", "b", 2) else 8
                Image.fromarray(np.full((side, side, 3), 30 * i, np.uint8)).save(d / split / c / f"{i}.png")
    return d


@pytest.mark.parametrize("command", ["unlearn", "pretrain"])
def test_mixed_image_sizes_in_a_folder(capsys, base, mixed_folder, tmp_path, command):
    spec = f"imagefolder:{mixed_folder}"
    if command == "unlearn":
        args = ["unlearn", "--model", base, "--dataset", spec, "--forget-ids", "0", "--out", tmp_path / "o", *FAST]
    else:
        args = ["pretrain", "--arch", "small_cnn", "--dataset", spec, "--epochs", "1", "--out", tmp_path / "o",
                "--quiet"]
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, "9x9", "8x8", "one size", "?resize=R&crop=C")
    # with a crop every image comes out the same size: accepted (pretrain trains on it)
    rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--dataset", f"{spec}?resize=8&crop=8",
                     "--epochs", "1", "--out", tmp_path / "m.safetensors", "--quiet")
    assert rc == 0, err
    # resize alone: square images of two sizes come out the same size too
    rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--dataset", f"{spec}?resize=8",
                     "--epochs", "1", "--out", tmp_path / "n.safetensors", "--quiet")
    assert rc == 0, err


SETTINGS = {
    # name: (arguments, words of the one-line message)
    "unlearn --seed -1": (["unlearn", "--forget-ids", "3", "--seed", "-1"], ["--seed", "-1", "0..", "range"]),
    "unlearn --seed 2**64": (["unlearn", "--forget-ids", "3", "--seed", "18446744073709551616"],
                             ["--seed", "18446744073709551616", "outside"]),
    "evaluate --seed -1": (["evaluate", "--forget-random", "2", "--seed", "-1"], ["--seed", "-1"]),
    "pretrain --seed -1": (["pretrain", "--arch", "small_cnn", "--seed", "-1"], ["--seed", "-1"]),
    "pretrain --seed 2**64": (["pretrain", "--arch", "small_cnn", "--seed", "18446744073709551616"], ["--seed"]),
    "unlearn --retain-eval-size -5": (["unlearn", "--forget-ids", "3", "--retain-eval-size", "-5"],
                                      ["--retain-eval-size", "-5", ">= 0"]),
    "evaluate --retain-eval-size -5": (["evaluate", "--retain-eval-size", "-5"],
                                       ["retain_eval_size", "-5", ">= 0", "--retain-eval-size"]),
    "unlearn --device gpu0": (["unlearn", "--forget-ids", "3", "--device", "gpu0"],
                              ["'gpu0'", "cpu, cuda, cuda:N or mps", "--device"]),
    "unlearn --device meta": (["unlearn", "--forget-ids", "3", "--device", "meta"], ["'meta'", "holds no data"]),
    "pretrain --device gpu0": (["pretrain", "--arch", "small_cnn", "--device", "gpu0"], ["'gpu0'"]),
    "pretrain --device meta": (["pretrain", "--arch", "small_cnn", "--device", "meta"], ["'meta'"]),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_bad_settings_are_one_line_before_any_work(capsys, base, tmp_path, name, monkeypatch):
    import l2ul.data

    args, words = SETTINGS[name]
    if args[0] != "pretrain":
        args = args + ["--model", str(base)]
    if args[0] != "evaluate":
        args = args + ["--out", str(tmp_path / "o.safetensors")]
    if args[0] == "unlearn":
        args += FAST[:-2] if "--retain-eval-size" in args else FAST
    if args[0] != "evaluate":  # no dataset is even loaded
        monkeypatch.setattr(l2ul.data, "load_dataset", lambda *a, **k: pytest.fail("work started"))
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_run_request_refuses_bad_settings_before_any_work(tmp_path):
    from l2ul.errors import ConfigError
    from l2ul.pipeline import run_request

    for kwargs, match in ((dict(retain_eval_size=-5), "retain_eval_size"), (dict(seed=-1), "seed"),
                          (dict(config=__import__("l2ul").UnlearnConfig().replace(max_steps=5)) | dict(seed=2**64),
                           "seed")):
        with pytest.raises(ConfigError, match=match):
            run_request(model=tmp_path / "none", forget_ids="3", out=tmp_path / "o", **kwargs)
    with pytest.raises(ConfigError, match="holds no data"):
        run_request(model=tmp_path / "none", forget_ids="3", out=tmp_path / "o",
                    config=__import__("l2ul").UnlearnConfig(device="meta"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            run_request(model=tmp_path / "none", forget_ids="3", out=tmp_path / "o",
                        config=__import__("l2ul").UnlearnConfig(device="cuda"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, where", [("unlearn", "model"), ("unlearn", "report"), ("pretrain", "model")])
def test_a_full_disk_is_one_line_and_leaves_nothing(capsys, base, tmp_path, monkeypatch, command, where):
    import safetensors.torch

    import l2ul.reports

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "model":
        monkeypatch.setattr(safetensors.torch, "save_model", full)
    else:  # the report, staged after the model
        monkeypatch.setattr(l2ul.reports, "write_json", full)
    out = tmp_path / "o.safetensors"
    if command == "unlearn":
        args = ["unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST]
    else:
        args = ["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "1", "--out", out, "--quiet"]
    rc, _, err = run(capsys, *args)
    monkeypatch.undo()
    assert_error_line(rc, err, "No space left on device", "free disk space")
    assert list(tmp_path.iterdir()) == []


LOOPS = {
    "--model": lambda loop, base, d: ["--model", loop],
    "--weights": lambda loop, base, d: ["--arch", "small_cnn", "--weights", loop],
    "dataset": lambda loop, base, d: ["--model", base, "--dataset", f"npz:{loop}"],
    "--forget-ids @": lambda loop, base, d: ["--model", base, "--forget-ids", f"@{loop}"],
    "--relabel-to @": lambda loop, base, d: ["--model", base, "--relabel-to", f"@{loop}"],
    "--proxy-data": lambda loop, base, d: ["--model", base, "--proxy-data", f"npz:{loop}"],
    "--out": lambda loop, base, d: ["--model", base, "--out", loop],
    "--report": lambda loop, base, d: ["--model", base, "--report", loop],
    "inside the dataset folder": lambda loop, base, d: ["--model", base, "--dataset", f"imagefolder:{d}"],
}


@POSIX
@pytest.mark.parametrize("where", list(LOOPS))
def test_a_symlink_loop_as_a_path(capsys, base, tmp_path, where):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    folder = tmp_path / "folder"
    for split in ("train", "test"):
        (folder / split / "a").mkdir(parents=True)
    os.symlink(folder / "train", folder / "train" / "a" / "back")  # a folder cycle
    args = LOOPS[where](loop, base, folder)
    if "--forget-ids" not in " ".join(map(str, args)):
        args = args + ["--forget-ids", "3"]
    if "--out" not in args:
        args = args + ["--out", tmp_path / "o.safetensors"]
    rc, _, err = run(capsys, "unlearn", *args, *FAST)
    assert_user_error(rc, err, "loop")
    rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--dataset", f"npz:{loop}", "--out",
                     tmp_path / "p.safetensors")
    assert_user_error(rc, err, "loop")


@POSIX
@pytest.mark.parametrize("role", ["unlearn dataset", "unlearn proxy", "pretrain dataset"])
def test_a_fifo_inside_an_image_folder_does_not_hang(base, inputs, tmp_path, role):
    import shutil

    folder = tmp_path / "folder"
    shutil.copytree(inputs / "folder", folder)
    os.mkfifo(folder / "train" / "a" / "0b.png")  # sorted right after 0.png: the loader would open it
    if role == "unlearn dataset":
        args = ["unlearn", "--model", base, "--dataset", f"imagefolder:{folder}", "--forget-ids", "0",
                "--out", tmp_path / "o", *FAST]
    elif role == "unlearn proxy":
        args = ["unlearn", "--model", base, "--proxy-data", f"imagefolder:{folder}", "--forget-ids", "0",
                "--out", tmp_path / "o", *FAST]
    else:
        args = ["pretrain", "--arch", "small_cnn", "--dataset", f"imagefolder:{folder}", "--out", tmp_path / "o"]
    p = subprocess.run([sys.executable, "-m", "l2ul.cli", *map(str, args)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert_user_error(p.returncode, p.stderr, "0b.png", "FIFO")


@pytest.mark.parametrize("command", ["report", "bench"])
def test_a_bench_settings_file_holding_a_list(capsys, base, tmp_path, command):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "settings.json").write_text("[]")
    if command == "report":
        rc, _, err = run(capsys, "report", out)
    else:
        rc, _, err = run(capsys, "bench", "--model", base, "--dataset", "digits", "--methods", "neggrad", "--k", "1",
                         "--seeds", "0", "--out", out, "--no-progress", "--pgd-steps", "2", "--max-steps", "3")
    assert_user_error(rc, err, "settings.json")


# --------------------------------------------------------------------- 7. the reproducibility condition

def test_the_report_records_the_thread_count(capsys, base, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "u.safetensors"
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST)
    assert rc == 0, err
    machine = json.loads(Path(f"{out}.report.json").read_text())["machine"]
    assert machine["torch_threads"] == torch.get_num_threads() == 1
    assert machine["omp_num_threads"] == "1" and machine["device"] == "cpu"
    assert machine["cpu_count"] == os.cpu_count()


def test_same_command_same_machine_same_threads_is_bit_identical_across_processes(base, tmp_path):
    reports = []
    for name in ("a", "b"):
        out = tmp_path / name / "u.safetensors"
        p = subprocess.run([sys.executable, "-m", "l2ul.cli", "unlearn", "--model", str(base), "--forget-random",
                            "2", "--seed", "4", "--out", str(out), *FAST], capture_output=True, text=True,
                           env=_env(), timeout=600)
        assert p.returncode == 0, p.stderr
        reports.append((out, json.loads(Path(f"{out}.report.json").read_text())))
    (a, ra), (b, rb) = reports
    assert sha256(a) == sha256(b)
    assert ra["machine"] == rb["machine"] and ra["machine"]["torch_threads"] == 1
    assert ra["metrics"] == rb["metrics"] and ra["per_instance"] == rb["per_instance"]


def test_bench_settings_record_the_thread_count(capsys, base, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "bench"
    rc, _, err = run(capsys, "bench", "--model", base, "--dataset", "digits", "--methods", "neggrad", "--k", "1",
                     "--seeds", "0", "--out", out, "--no-progress", "--max-steps", "20", "--retain-eval-size", "50",
                     "--mia-max-samples", "50")
    assert rc == 0, err
    settings = json.loads((out / "settings.json").read_text())
    assert settings["machine"]["torch_threads"] == 1 and settings["machine"]["omp_num_threads"] == "1"
    assert "machine" not in settings["hashed"]  # (recorded, not hashed: the settings hash is unchanged)
