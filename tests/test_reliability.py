"""Reliability and safety of the CLI: untrusted files, bad requests, divergence, non-convergence,
interruption (SIGINT / SIGTERM / SIGKILL in a real subprocess), output safety, reproducibility, audit fields.

Most checks run ``l2ul.cli.main`` in-process; the interruption checks start ``python -m l2ul.cli`` and wait
for it to report that the work has started before sending the signal. Torch runs single-threaded (see
tests/test_cli.py).
"""
from __future__ import annotations

import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli_helpers import FAST, assert_user_error, run, sha256
from l2ul.cli import main
from l2ul.errors import L2ULError
from l2ul.models import create_model
from l2ul.models.io import load_model, save_model

# slow enough to be still running seconds after it starts (thousands of adversarial examples, 500 PGD steps)
SLOW = ["--pgd-steps", "500", "--adv-per-instance", "3000", "--pgd-eps", "0.5", "--quiet"]
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")




def leftovers(folder: Path):
    return sorted(p.name for p in Path(folder).rglob("*") if ".partial" in p.name)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "base.safetensors"
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "3", "--out", str(out),
                 "--quiet"]) == 0
    return out


# ------------------------------------------------------------------------------------------ untrusted files

class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("fmt", ["pickle", "torch.save"])
@pytest.mark.parametrize("flag", ["--model", "--weights"])
def test_pickle_payload_is_refused_and_never_run(capsys, tmp_path, fmt, flag):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.pt"
    if fmt == "pickle":
        evil.write_bytes(pickle.dumps({"state_dict": Payload(marker)}, protocol=4))
    else:
        torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Payload(marker)}, evil)
    assert not marker.exists()
    model = ["--model", evil] if flag == "--model" else ["--arch", "small_cnn", "--weights", evil]
    for command in (["unlearn", "--forget-ids", "3", "--out", tmp_path / "o.safetensors"], ["evaluate"]):
        rc, _, err = run(capsys, *command, *model)
        assert_user_error(rc, err, str(evil))
        assert "pickle" in err
        assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("kind", ["truncated", "random"])
@pytest.mark.parametrize("flag", ["--model", "--weights"])
def test_corrupt_model_file_gives_a_clear_error(capsys, base, tmp_path, kind, flag):
    bad = tmp_path / "bad.safetensors"
    if kind == "truncated":
        data = base.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_bytes(b"\x13\x37" + np.random.default_rng(0).bytes(4094))  # not a pickle/zip/safetensors head
    model = ["--model", bad] if flag == "--model" else ["--arch", "small_cnn", "--weights", bad]
    rc, _, err = run(capsys, "unlearn", *model, "--forget-ids", "3", "--out", tmp_path / "o.safetensors")
    assert_user_error(rc, err, str(bad))
    assert "corrupt" in err or "not a" in err


def test_missing_model_file(capsys, tmp_path):
    rc, _, err = run(capsys, "unlearn", "--model", tmp_path / "nope.safetensors", "--forget-ids", "3",
                     "--out", tmp_path / "o.safetensors")
    assert_user_error(rc, err, "nope.safetensors", "does not exist", "check the path")


# ------------------------------------------------------------------------------------------- bad requests

@pytest.fixture(scope="module")
def misfits(tmp_path_factory):
    """A 5-class model and a 3-channel model, neither of which fits digits."""
    d = tmp_path_factory.mktemp("misfits")
    torch.manual_seed(0)
    save_model(create_model("small_cnn", num_classes=5, in_channels=1), d / "five.safetensors")
    save_model(create_model("small_cnn", num_classes=10, in_channels=3), d / "rgb.safetensors")
    return d


BAD_REQUESTS = {
    # name: (arguments, words the one-line message must contain: the problem ... and the fix)
    "out of range": (["--forget-ids", "3,5000"], ["5000", "out of range", "0..1436"]),
    "duplicated": (["--forget-ids", "3,17,3"], ["duplicate", "3", "once"]),
    "negative": (["--forget-ids", "-4"], ["-4", "negative", "0..1436"]),
    "non-integer": (["--forget-ids", "3,x7"], ["'x7'", "not an integer", "0..1436"]),
    "empty": (["--forget-ids", ""], ["empty", "3,17,42"]),
    "empty entry": (["--forget-ids", "3,,17"], ["empty entry", "remove"]),
    "no ids in file": (["--forget-ids", "@{tmp}/ids.txt"], ["holds no ids", "one training index per line"]),
    "missing ids file": (["--forget-ids", "@{tmp}/missing.txt"], ["does not exist", "comma list"]),
    "ids file without @": (["--forget-ids", "{tmp}/ids.txt"], ["is not an integer index", "comma list", "@FILE",
                                                                "write --forget-ids @"]),
    "random k too big": (["--forget-random", "2000"], ["2000", "exceeds", "k <= 1437"]),
    "relabel to own label": (["--forget-ids", "3", "--relabel-to", "3"],  # training instance 3 is a "3"
                             ["instance 3", "already has label 3", "must differ"]),
    "relabel out of range": (["--forget-ids", "3", "--relabel-to", "10"], ["10", "outside 0..9", "[0, 10)"]),
    "relabel count": (["--forget-ids", "3,17", "--relabel-to", "1"], ["1 targets", "2 forget ids", "one target"]),
    "class count": (["--forget-ids", "3", "--model", "{misfits}/five.safetensors"],
                    ["5 classes", "digits has 10", "use a model trained on this dataset"]),
    "input shape": (["--forget-ids", "3", "--model", "{misfits}/rgb.safetensors"],
                    ["cannot process digits images of shape (1, 8, 8)", "use a model built for this dataset"]),
    "missing npz": (["--forget-ids", "3", "--dataset", "npz:{tmp}/none.npz"], ["none.npz", "not found",
                                                                               "check the path"]),
    "missing image folder": (["--forget-ids", "3", "--dataset", "imagefolder:{tmp}/nodir"],
                             ["nodir", "not found", "check the path"]),
    "missing data dir": (["--forget-ids", "3", "--dataset", "cifar10", "--data-dir", "{tmp}/nodir"],
                         ["cifar10 not found", "nodir", "--download"]),
    "bad config": (["--forget-ids", "3", "--lr", "-1"], ["lr", "positive"]),
    # argument errors are one line too (not argparse's whole usage)
    "k not an integer": (["--forget-random", "three"], ["--forget-random", "invalid int value", "--help"]),
    "no request": ([], ["one of the arguments --forget-ids --forget-random is required", "--help"]),
    "both requests": (["--forget-ids", "3", "--forget-random", "2"], ["not allowed with", "--help"]),
    "unknown method": (["--forget-ids", "3", "--method", "magic"], ["invalid choice: 'magic'", "neggrad"]),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_is_one_line_with_the_fix(capsys, base, misfits, tmp_path, name):
    args, words = BAD_REQUESTS[name]
    (tmp_path / "ids.txt").write_text("# no ids here\n\n")
    args = [a.format(tmp=tmp_path, misfits=misfits) for a in args]
    if "--model" not in args:
        args += ["--model", str(base)]
    out = tmp_path / "o.safetensors"
    rc, stdout, err = run(capsys, "unlearn", *args, "--out", out, *FAST)
    assert_user_error(rc, err, *words)
    assert stdout == "" and not out.exists() and not Path(f"{out}.report.json").exists()


def test_debug_shows_the_traceback(base, tmp_path):
    # main re-raises, so the interpreter prints the traceback (and exits 1)
    for debug in (["--debug", "unlearn"], ["unlearn", "--debug"]):  # before or after the command
        with pytest.raises(L2ULError, match="out of range"):
            main([*debug, "--model", str(base), "--forget-ids", "5000", "--out", str(tmp_path / "o")])
        with pytest.raises(L2ULError, match="does not exist"):
            main([*debug, "--model", str(tmp_path / "none"), "--forget-ids", "3", "--out", str(tmp_path / "o")])


def test_unwritable_output_folder(capsys, base, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", blocker / "o.safetensors")
    assert_user_error(rc, err, "is a file, not a folder", "choose another output path")


# --------------------------------------------------------------------------------- divergence, convergence

def test_divergence_exit_4_and_no_model(capsys, base, tmp_path):
    out = tmp_path / "o.safetensors"
    rc, stdout, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3,17,42", "--method", "neggrad",
                          "--lr", "1e30", "--momentum", "0", "--out", out, *FAST)
    assert rc == 4, err
    assert "diverged" in err and "no model was written" in err and "Traceback" not in err
    assert not out.exists()
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["status"] == "diverged" and report["converged"] is False
    assert report["output_model"] == {"path": None, "sha256": None}
    assert report["metrics"]["acc_forget"] is None and report["metrics"]["acc_test_before"] > 0.9
    assert all(p["pred_after"] is None for p in report["per_instance"])
    assert "DIVERGED" in stdout
    assert leftovers(tmp_path) == []


def test_divergence_is_never_kept(capsys, base, tmp_path):
    out = tmp_path / "o.safetensors"
    rc, _, _ = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--method", "neggrad", "--lr", "1e30",
                   "--momentum", "0", "--keep-unconverged", "--out", out, *FAST)
    assert rc == 4 and not out.exists()


def test_non_convergence_exit_3(capsys, base, tmp_path):
    out = tmp_path / "o.safetensors"
    rc, stdout, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3,17,42", "--out", out, *FAST,
                          "--max-steps", "1")
    assert rc == 3, err
    assert "did not converge" in err and "--max-steps" in err and "--keep-unconverged" in err
    assert not out.exists()
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["converged"] is False and report["status"] == "budget_exhausted" and report["steps"] == 1
    assert report["output_model"]["path"] is None
    assert "DID NOT CONVERGE" in stdout

    kept = tmp_path / "kept.safetensors"
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3,17,42", "--out", kept, *FAST,
                     "--max-steps", "1", "--keep-unconverged")
    assert rc == 3 and "written anyway" in err
    report = json.loads(Path(f"{kept}.report.json").read_text())
    assert report["converged"] is False and report["output_model"] == {"path": str(kept), "sha256": sha256(kept)}
    load_model(kept)


# ------------------------------------------------------------------------------------------- interruption

class Proc:
    """``python -m l2ul.cli ARGS`` with stdout/stderr read line by line in the background."""

    def __init__(self, *args, cwd=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.text = []
        self.p = subprocess.Popen([sys.executable, "-m", "l2ul.cli", *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                                  # a shell that started us in the background may have set SIGINT to ignored
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None and self.lines.empty():
                    break
                continue
            self.text.append(line)
            if text in line:
                return
        self.p.kill()
        pytest.fail(f"{text!r} never appeared; output: {''.join(self.text)}")

    def stop(self, sig, timeout: float = 60.0) -> int:
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            pytest.fail(f"no exit within {timeout}s of signal {sig}")
        time.sleep(0.1)  # let the reader drain
        while not self.lines.empty():
            self.text.append(self.lines.get())
        return rc

    @property
    def output(self) -> str:
        return "".join(self.text)


@POSIX
@pytest.mark.parametrize("sig, code", [pytest.param(signal.SIGINT, 130, id="SIGINT"),
                                       pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
                                       pytest.param(signal.SIGKILL, -9, id="SIGKILL")])
def test_interrupted_unlearn_leaves_no_output(base, tmp_path, sig, code):
    before = sha256(base)
    out_dir = tmp_path / "out"
    out, report = out_dir / "u.safetensors", out_dir / "u.json"
    p = Proc("unlearn", "--model", base, "--forget-ids", "3,17,42", "--out", out, "--report", report, *SLOW)
    p.wait_for("forgetting 3 instance(s)")  # printed when the adversarial phase starts
    time.sleep(1.0)
    rc = p.stop(sig)
    assert rc == code, p.output
    assert not out.exists() and not report.exists()
    assert sha256(base) == before
    if sig != signal.SIGKILL:
        assert "interrupted" in p.output or "terminated" in p.output
        assert "no partial output" in p.output and "Traceback" not in p.output
        assert leftovers(tmp_path) == []
    else:
        # SIGKILL cannot be handled: the run dies during the adversarial phase, before any file is opened, so
        # nothing is left; a kill during the final write could leave a `.u.safetensors.*.partial*` temporary
        # file next to the output, never a file at --out or --report
        assert all(name.startswith(".") and ".partial" in name for name in leftovers(tmp_path))


def test_interrupt_while_writing_leaves_nothing(capsys, base, tmp_path, monkeypatch):
    """A KeyboardInterrupt after the model is staged but before the report is: neither file is published."""
    import l2ul.reports

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(l2ul.reports, "write_json", interrupted)
    out = tmp_path / "u.safetensors"
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST)
    assert rc == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_failed_publish_removes_what_it_published(capsys, base, tmp_path, monkeypatch):
    """The second rename of the commit fails: the first output is taken back."""
    import l2ul.safety

    real = os.replace
    out = tmp_path / "u.safetensors"
    published = []

    def flaky(src, dst):
        if Path(dst) == Path(f"{out}.report.json"):  # the model is published first, then the report
            raise KeyboardInterrupt
        real(src, dst)
        published.append(Path(dst))

    monkeypatch.setattr(l2ul.safety.os, "replace", flaky)  # (safety publishes the outputs)
    rc, _, _ = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST)
    monkeypatch.undo()
    assert rc == 130
    assert out in published  # it was published, then taken back
    assert [p.name for p in tmp_path.iterdir()] == []


@POSIX
def test_interrupted_pretrain_leaves_no_output(tmp_path):
    out = tmp_path / "m.safetensors"
    p = Proc("pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "1000", "--out", out, "--quiet")
    p.wait_for("epoch 1/1000")
    rc = p.stop(signal.SIGINT)
    assert rc == 130, p.output
    assert "interrupted" in p.output and "Traceback" not in p.output
    assert list(tmp_path.iterdir()) == []


@POSIX
def test_interrupted_bench_is_clean(base, tmp_path):
    before = sha256(base)
    out = tmp_path / "bench"
    p = Proc("bench", "--model", base, "--dataset", "digits", "--methods", "l2ul", "--k", "3", "--seeds", "0",
             "--pgd-steps", "500", "--adv-per-instance", "3000", "--pgd-eps", "0.5", "--retain-eval-size", "200",
             "--mia-max-samples", "100", "--out", out, "--no-progress")
    p.wait_for("original model:")
    time.sleep(1.0)
    rc = p.stop(signal.SIGINT)
    assert rc == 130, p.output
    assert "interrupted" in p.output and "resume" in p.output and "Traceback" not in p.output
    assert leftovers(tmp_path) == []
    assert sha256(base) == before
    if (out / "results.jsonl").exists():  # no cell finished
        assert (out / "results.jsonl").read_text().strip() == ""


# ------------------------------------------------------------------------------------------ output safety

def test_refuses_to_write_over_its_input(capsys, base, tmp_path):
    before = sha256(base)
    for extra in ([], ["--overwrite"]):
        rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", base, *FAST, *extra)
        assert_user_error(rc, err, "refusing to write", "input", "choose another output path")
    # the input reached by another spelling of its path, and the report aimed at the input
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out",
                     base.parent / ".." / base.parent.name / base.name, "--overwrite", *FAST)
    assert_user_error(rc, err, "refusing to write")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", tmp_path / "o.safetensors",
                     "--report", base, "--overwrite", *FAST)
    assert_user_error(rc, err, "refusing to write")
    assert sha256(base) == before
    assert list(tmp_path.iterdir()) == []


def test_refuses_existing_outputs_without_overwrite(capsys, base, tmp_path):
    out, report = tmp_path / "o.safetensors", tmp_path / "r.json"
    out.write_bytes(b"keep me")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--report", report, *FAST)
    assert_user_error(rc, err, str(out), "already exists", "--overwrite")
    assert out.read_bytes() == b"keep me" and not report.exists()

    out.unlink()
    report.write_bytes(b"keep me too")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--report", report, *FAST)
    assert_user_error(rc, err, str(report), "already exists", "--overwrite")
    assert report.read_bytes() == b"keep me too" and not out.exists()

    out.write_bytes(b"old")
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--report", report,
                     "--overwrite", *FAST)
    assert rc == 0, err
    load_model(out)
    assert json.loads(report.read_text())["output_model"]["sha256"] == sha256(out)

    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, "--report", out,
                     "--overwrite", *FAST)
    assert_user_error(rc, err, "same file")


@POSIX
def test_outputs_follow_the_umask(capsys, base, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "o.safetensors"
        rc, _, _ = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", out, *FAST)
    finally:
        os.umask(old)
    assert rc == 0
    for path in (out, Path(f"{out}.report.json")):
        assert path.stat().st_mode & 0o777 == 0o644, oct(path.stat().st_mode)


def test_pretrain_refuses_existing_output(capsys, base):
    rc, _, err = run(capsys, "pretrain", "--arch", "small_cnn", "--dataset", "digits", "--out", base)
    assert_user_error(rc, err, "already exists", "--overwrite")


# ---------------------------------------------------------------------------- reproducibility and audit

def _figures(report: dict) -> dict:
    """The report without what legitimately differs between two runs of the same command."""
    r = json.loads(json.dumps(report))
    for key in ("created", "timings_s", "request_timings_s", "argv"):
        r.pop(key)
    r["output_model"].pop("path")
    for phase in r["phases"]:
        phase.pop("seconds")
    return r


def test_same_command_and_seed_give_identical_results(capsys, base, tmp_path):
    results = []
    for name in ("a", "b"):
        out = tmp_path / name / "u.safetensors"
        rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-random", "3", "--seed", "5", "--out", out,
                         *FAST)
        assert rc == 0, err
        results.append((out, json.loads(Path(f"{out}.report.json").read_text())))
    (a, ra), (b, rb) = results
    assert sha256(a) == sha256(b)
    ta, tb = load_model(a).state_dict(), load_model(b).state_dict()
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert _figures(ra) == _figures(rb)


def test_audit_fields(capsys, base, tmp_path):
    out = tmp_path / "u.safetensors"
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3,17", "--relabel-to", "random",
                     "--seed", "2", "--out", out, *FAST)
    assert rc == 0, err
    report = json.loads(Path(f"{out}.report.json").read_text())
    import l2ul

    assert report["versions"]["l2ul"] == l2ul.__version__ and report["versions"]["torch"] == torch.__version__
    assert report["input_model"] == {"paths": [str(base)], "sha256": {str(base): sha256(base)},
                                     "arch": "small_cnn"}
    assert report["output_model"] == {"path": str(out), "sha256": sha256(out)}
    req = report["request"]
    assert req["ids"] == [3, 17] and req["task"] == "relabel" and len(req["targets"]) == 2
    assert "--relabel-to random" in req["source"]
    cfg = report["config"]
    assert cfg["seed"] == 2 and cfg["pgd_steps"] == 10 and cfg["max_steps"] == 300 and cfg["lr"] == 1e-3
    assert report["argv"][0] == "unlearn" and "--relabel-to" in report["argv"]
    assert report["dataset"]["spec"] == "digits" and report["dataset"]["n_train"] == 1437
    assert set(report["timings_s"]) == {"adversarial", "importance", "optimization", "proxy", "teacher", "repair"}
