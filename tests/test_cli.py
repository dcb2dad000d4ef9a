"""End-to-end tests of the command-line interface on scikit-learn's digits (offline) and tiny npz data.

Commands run in-process through ``l2ul.cli.main`` (fast); one test runs the installed ``l2ul`` console script.
A small CNN is pre-trained once per module with ``l2ul pretrain`` (which is also the pretrain test).
Torch runs single-threaded here: on a busy 2-core machine intra-op threads make these tiny models ~100x
slower, and one thread is what makes the runs bit-reproducible across machines with other core counts.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli_helpers import FAST, run, sha256
from l2ul.cli import main
from l2ul.models import create_model
from l2ul.models.io import load_model
from l2ul.requests import random_forget_ids

# tiny, fast unlearning settings (digits images are 1x8x8)
N_TRAIN_DIGITS = 1437


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """`l2ul pretrain` a small CNN on digits (3 quick epochs): the pretrain test and every test's original."""
    out = tmp_path_factory.mktemp("base") / "base.safetensors"
    rc = main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--recipe", "quick", "--epochs", "3",
               "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def unlearn(capsys, base, out, *extra, method="l2ul"):
    rc, stdout, stderr = run(capsys, "unlearn", "--model", base, "--method", method, "--out", out, *FAST, *extra)
    report_path = Path(str(out) + ".report.json")
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return rc, stdout, stderr, report


def test_unlearn_nearest_forget_loss_with_frozen_bn(capsys, base, tmp_path):
    out = tmp_path / "n.safetensors"
    rc, stdout, stderr, report = unlearn(capsys, base, out, "--forget-ids", "3,17,42", "--bn", "freeze",
                                         "--forget-loss", "nearest", method="neggrad")
    assert rc == 0, stderr
    assert report["config"]["forget_loss"] == "nearest" and report["config"]["bn"] == "freeze"
    assert report["converged"] is True and report["metrics"]["acc_forget"] == 0.0
    assert report["score_with_original_bn_stats"] == 0.0           # frozen statistics: measured, and it holds
    rc, _, stderr = run(capsys, "unlearn", "--model", base, "--forget-ids", "3", "--out", tmp_path / "x.safetensors",
                        "--forget-loss", "sideways")
    assert rc == 2 and "forget-loss" in stderr


def check_report(report, *, base, out, method, ids, task="misclassify"):
    """The audit fields every unlearn report must carry, and their agreement with the files."""
    assert report["command"] == "unlearn" and report["method"] == method and report["task"] == task
    assert report["versions"]["l2ul"] and report["versions"]["torch"] == torch.__version__
    cfg = report["config"]
    assert (cfg["pgd_steps"], cfg["adv_per_instance"], cfg["pgd_eps"], cfg["max_steps"]) == (10, 2, 0.5, 300)
    assert report["request"]["ids"] == ids and report["request"]["k"] == len(ids)
    assert report["request"]["task"] == task
    assert set(report["timings_s"]) == {"adversarial", "importance", "optimization"}
    assert all(t >= 0 for t in report["timings_s"].values())
    assert isinstance(report["steps"], int) and 0 <= report["steps"] <= 300
    assert report["input_model"]["sha256"] == {str(base): sha256(base)}
    m = report["metrics"]
    for split in ("forget", "retain", "test"):
        assert 0 <= m[f"acc_{split}"] <= 1 and 0 <= m[f"acc_{split}_before"] <= 1
    per = report["per_instance"]
    assert [p["id"] for p in per] == ids
    for p in per:
        assert {"label", "target", "pred_before", "pred_after", "forgotten"} <= set(p)
    if report["converged"]:
        assert report["status"] == "converged"
        assert report["output_model"] == {"path": str(out), "sha256": sha256(out)}
        model = load_model(out)
        assert model.l2ul_meta["arch"] == "small_cnn"
        if task == "misclassify":
            assert m["acc_forget"] == 0.0
            assert all(p["pred_after"] != p["label"] and p["forgotten"] for p in per)
        else:
            assert all(p["pred_after"] == p["target"] for p in per)
    return report


# --------------------------------------------------------------------------------------------- pretrain

def test_pretrain_writes_a_loadable_model(base):
    model = load_model(base)
    assert model.l2ul_meta["arch"] == "small_cnn" and model.l2ul_meta["num_classes"] == 10
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert not [p for p in base.parent.iterdir() if p.name.endswith(".partial")]


# ---------------------------------------------------------------------------------------------- unlearn

def test_unlearn_forget_ids_list_l2ul(capsys, base, tmp_path):
    out = tmp_path / "u.safetensors"
    rc, stdout, stderr, report = unlearn(capsys, base, out, "--forget-ids", "3,17,42")
    assert rc == 0, stderr
    check_report(report, base=base, out=out, method="l2ul", ids=[3, 17, 42])
    assert report["converged"] is True
    assert report["metrics"]["acc_forget_before"] == 1.0  # the base model knows these digits
    assert report["adversarial_success"] is not None
    assert 0.0 <= report["score_with_original_bn_stats"] <= 1.0       # small_cnn has batch norm
    assert report["holds_with_original_bn_stats"] == (report["score_with_original_bn_stats"] == 0.0)
    assert "D_f (%)" in stdout and "D_r (%)" in stdout and "D_test (%)" in stdout   # registered labels
    assert "converged" in stdout and str(out) in stdout
    assert "MIA efficacy (share of D_f judged non-member)" in stdout and "loss AUC" in stdout
    assert "Traceback" not in stderr


def test_unlearn_forget_ids_file_neggrad(capsys, base, tmp_path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# deletion request 2024-01\n5\n\n1000  # a comment\n7,9\n")
    out = tmp_path / "u.safetensors"
    rc, _, stderr, report = unlearn(capsys, base, out, "--forget-ids", f"@{ids_file}", method="neggrad")
    assert rc == 0, stderr
    check_report(report, base=base, out=out, method="neggrad", ids=[5, 1000, 7, 9])
    assert report["timings_s"]["adversarial"] == 0 and report["timings_s"]["importance"] == 0
    assert str(ids_file) in report["request"]["source"]


def test_unlearn_forget_random_adv(capsys, base, tmp_path):
    out = tmp_path / "sub" / "u.safetensors"  # the output folder is created
    rc, _, stderr, report = unlearn(capsys, base, out, "--forget-random", "4", "--seed", "3", method="adv")
    assert rc == 0, stderr
    ids = random_forget_ids(4, n_train=N_TRAIN_DIGITS, seed=3)
    check_report(report, base=base, out=out, method="adv", ids=ids)
    assert report["config"]["seed"] == 3
    assert report["request"]["source"] == "--forget-random 4 --seed 3"


def test_unlearn_relabel_to_file(capsys, base, tmp_path):
    from l2ul.data import load_dataset

    labels = load_dataset("digits").train_labels
    ids = [3, 17]
    targets = [(int(labels[i]) + 1) % 10 for i in ids]
    tfile = tmp_path / "targets.txt"
    tfile.write_text("\n".join(map(str, targets)) + "\n")
    out = tmp_path / "u.safetensors"
    rc, _, stderr, report = unlearn(capsys, base, out, "--forget-ids", "3,17", "--relabel-to", f"@{tfile}")
    assert rc == 0, stderr
    check_report(report, base=base, out=out, method="l2ul", ids=ids, task="relabel")
    assert report["request"]["targets"] == targets
    assert [p["target"] for p in report["per_instance"]] == targets


def test_unlearn_relabel_random_oracle(capsys, base, tmp_path):
    # (the oracle fine-tunes on the remaining data too, so it needs a larger step than the default 1e-3; and
    # with train-mode batch norm a forget batch of 2 images is normalised by its own statistics, which on
    # this model keeps it from reaching its targets within 300 steps, so this CLI test freezes batch norm)
    out = tmp_path / "u.safetensors"
    rc, _, stderr, report = unlearn(capsys, base, out, "--forget-ids", "3,17", "--relabel-to", "random",
                                    "--seed", "1", "--lr", "0.01", "--bn", "freeze", method="oracle")
    assert rc == 0, stderr
    check_report(report, base=base, out=out, method="oracle", ids=[3, 17], task="relabel")
    targets = report["request"]["targets"]
    assert all(t != p["label"] for t, p in zip(targets, report["per_instance"]))
    assert report["note_retain"]


# --------------------------------------------------------------------------------------------- evaluate

@pytest.fixture(scope="module")
def unlearned(base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unlearned") / "u.safetensors"
    assert main(["unlearn", "--model", str(base), "--method", "neggrad", "--forget-ids", "3,17,42",
                 "--out", str(out), *FAST]) == 0
    return out


def test_evaluate_prints_table_and_writes_json(capsys, base, tmp_path):
    js = tmp_path / "eval.json"
    rc, stdout, stderr = run(capsys, "evaluate", "--model", base, "--forget-ids", "3,17,42", "--json", js,
                             "--retain-eval-size", "300")
    assert rc == 0, stderr
    # every figure by its registered label (l2ul.metrics), with the direction that is better
    assert all(label in stdout for label in ("D_f (%)", "D_r (%)", "D_test (%)", "MIA eff. (%)", "loss AUC"))
    assert "higher is better" in stdout and "0.5 is ideal" in stdout
    data = json.loads(js.read_text())
    assert data["metrics"]["acc_forget"] == 1.0 and 0.9 < data["metrics"]["acc_test"] <= 1
    assert data["request"]["ids"] == [3, 17, 42] and data["retain_eval_size"] == 300
    assert data["model"]["sha256"] == {str(base): sha256(base)}
    # an existing --json is not replaced without --overwrite
    rc, _, stderr = run(capsys, "evaluate", "--model", base, "--json", js)
    assert rc == 2 and "already exists" in stderr and "--overwrite" in stderr


def test_evaluate_without_request(capsys, base):
    rc, stdout, stderr = run(capsys, "evaluate", "--model", base, "--retain-eval-size", "300")
    assert rc == 0, stderr
    assert "D_test" in stdout and "D_f" not in stdout


def test_evaluate_with_original_gives_before_and_after(capsys, base, unlearned, tmp_path):
    js = tmp_path / "eval.json"
    rc, stdout, stderr = run(capsys, "evaluate", "--model", unlearned, "--original", base, "--forget-ids",
                             "3,17,42", "--json", js, "--retain-eval-size", "300")
    assert rc == 0, stderr
    assert "before" in stdout and "after" in stdout and "agreement D_test (%)" in stdout
    assert "100.00%" in stdout and "0.00%" in stdout        # D_f before and after, formatted by the registry
    m = json.loads(js.read_text())["metrics"]
    assert m["acc_forget_before"] == 1.0 and m["acc_forget"] == 0.0
    per = json.loads(js.read_text())["per_instance"]
    assert [p["id"] for p in per] == [3, 17, 42] and all(p["forgotten"] for p in per)


# ------------------------------------------------------------------------------------------ demo, info

def test_demo(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path / "cache"))
    rc, stdout, stderr = run(capsys, "demo", "--out-dir", tmp_path / "demo")
    assert rc == 0, stderr
    assert "original" in stdout and "neggrad" in stdout and "l2ul" in stdout
    assert "D_f acc %" in stdout and "D_test acc %" in stdout
    files = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"digits_small_cnn.safetensors", "demo_report.json"} <= files
    assert not (tmp_path / "cache").exists()  # --out-dir wins over the cache


def test_info(capsys):
    rc, stdout, _ = run(capsys, "info")
    assert rc == 0
    for word in ("methods:", "neggrad", "adv", "l2ul", "oracle", "models", "small_cnn", "resnet20",
                 "presets:", "cifar10-resnet18", "datasets:", "digits", "npz:PATH"):
        assert word in stdout


def test_no_command_prints_help(capsys):
    rc, stdout, _ = run(capsys)
    assert rc == 2 and "unlearn" in stdout


# ------------------------------------------------------------------------------ foreign weights, npz data

def tiny_npz(path: Path, n_train: int = 30, n_test: int = 20) -> Path:
    """A 32x32x3 uint8 npz with 10 classes."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(n_train) % 10, x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(n_test) % 10)
    return path


def test_import_resnet20_dataparallel_checkpoint(capsys, tmp_path):
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=10).net
    ckpt = tmp_path / "resnet20.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, ckpt)
    data = f"npz:{tiny_npz(tmp_path / 'tiny.npz')}"
    out = tmp_path / "u.safetensors"
    rc, _, stderr = run(capsys, "unlearn", "--arch", "resnet20", "--weights", ckpt, "--dataset", data,
                        "--forget-ids", "0,1,2", "--method", "neggrad", "--max-steps", "300", "--out", out,
                        "--quiet")
    assert rc == 0, stderr
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert report["input_model"]["arch"] == "resnet20"
    assert report["input_model"]["sha256"] == {str(ckpt): sha256(ckpt)}
    assert report["metrics"]["acc_forget"] == 0.0
    assert load_model(out).l2ul_meta["arch"] == "resnet20"
    # the same checkpoint evaluates, and the imported weights are the checkpoint's
    rc, stdout, stderr = run(capsys, "evaluate", "--arch", "resnet20", "--weights", ckpt, "--dataset", data)
    assert rc == 0, stderr
    assert "D_test" in stdout
    from l2ul.models.io import import_state_dict

    imported = import_state_dict("resnet20", ckpt)
    assert all(torch.equal(imported.net.state_dict()[k], v) for k, v in net.state_dict().items())


# ----------------------------------------------------------------------------------- the console script

def test_console_script_help():
    exe = shutil.which("l2ul")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "l2ul.cli", "--help"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    for command in ("unlearn", "evaluate", "pretrain", "demo", "bench", "info"):
        assert command in proc.stdout
    assert proc.stderr == ""


def test_report_command(capsys, tmp_path):
    rc, _, stderr = run(capsys, "report", tmp_path)
    assert rc != 0 and "no settings.json" in stderr and "Traceback" not in stderr


def test_evaluate_takes_a_device_and_a_foreign_original(capsys, base, tmp_path):
    """`evaluate --original-arch/--original-weights` compares with a foreign checkpoint; `--device cpu` runs
    there, and an unavailable device is a one-line error before any work."""
    import torch

    from l2ul.models.io import load_model

    sd = tmp_path / "original.pt"
    torch.save(load_model(base).net.state_dict(), sd)
    rc, out, err = run(capsys, "evaluate", "--model", base, "--original-arch", "small_cnn", "--original-weights", sd,
                       "--forget-ids", "3,17", "--retain-eval-size", "100", "--device", "cpu")
    assert rc == 0, err
    (row,) = [line for line in out.splitlines() if "agreement D_test (%)" in line]
    assert "100.00%" in row                                 # the same weights: every D_test prediction agrees
    rc, _, err = run(capsys, "evaluate", "--model", base, "--device", "cuda:7")
    assert rc == 2 and err.count("\n") == 1 and "not available" in err


def test_unlearn_writes_its_audit_page_beside_the_report(capsys, base, tmp_path):
    out = tmp_path / "u.safetensors"
    rc, _, stderr, report = unlearn(capsys, base, out, "--forget-ids", "3,17", method="neggrad")
    assert rc == 0, stderr
    page = (tmp_path / "u.safetensors.report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "17" in page and report["output_model"]["sha256"] in page
    assert report["per_class_test"] and set(report["thumbnails"]) == {"3", "17"}
    assert all("loss_percentile" in row for row in report["per_instance"])


def _first_repair_request(capsys, base, tmp_path):
    """The first of two requests: forget 3, 17 and 42 from ``base`` with a 200-image proxy; returns the proxy
    file and the output model."""
    from _digits import digits_setup

    xte = digits_setup()[3]
    proxy = tmp_path / "proxy.npz"
    np.savez(proxy, x=xte[:200].numpy())
    first = tmp_path / "first.safetensors"
    rc, _, stderr, _ = unlearn(capsys, base, first, "--forget-ids", "3,17,42", "--proxy-data", f"npz:{proxy}",
                               method="repair")
    assert rc == 0, stderr
    return proxy, first


def test_successive_requests_keep_the_earlier_ones_forgotten(capsys, base, tmp_path):
    """Two requests from the command line: the second, on the first's output model, names the first's ids with
    --keep-forgotten. Its report lists them and counts none back on their label, its D_r leaves them out,
    and the final model predicts none of the five as its label. Methods that cannot keep them refuse."""
    proxy, first = _first_repair_request(capsys, base, tmp_path)
    ids = tmp_path / "earlier.txt"
    ids.write_text("3\n17\n42\n")
    second = tmp_path / "second.safetensors"
    rc, stdout, stderr, report = unlearn(capsys, first, second, "--forget-ids", "5,6", "--proxy-data",
                                         f"npz:{proxy}", "--keep-forgotten", f"@{ids}", method="repair")
    assert rc == 0, stderr
    assert report["request"]["extra"]["keep_forgotten"]["ids"] == [3, 17, 42]
    assert report["kept_forgotten"] == {"n": 3, "back_on_label": 0} and report["verdict"] == "holds"
    assert "the 3 instances of earlier requests stay off their label" in stdout
    from l2ul import load_dataset
    from l2ul.pipeline import retain_eval_sample

    digits = load_dataset("digits")
    sample = set(retain_eval_sample(digits, 300).tolist())
    assert report["dataset"]["retain_eval_size"] == len(sample - {3, 17, 42, 5, 6})
    net = load_model(second).eval()
    x, y = digits.stack_train([3, 17, 42, 5, 6])
    with torch.no_grad():
        assert not (net(x).argmax(1) == y).any()
    rc, _, stderr, _ = unlearn(capsys, first, tmp_path / "x.safetensors", "--forget-ids", "5,6",
                               "--keep-forgotten", "3,17,42", method="neggrad")
    assert rc != 0 and "cannot keep earlier requests' instances forgotten" in stderr


def test_a_later_request_can_repair_toward_the_original_model(capsys, base, tmp_path, monkeypatch):
    """--repair-toward FILE: the second request's proxy and teacher outputs are prepared from the named model
    (the original), not from the model being unlearned; the report names it by its state hash, the earlier
    instances stay forgotten, and a method without a teacher refuses the option."""
    import l2ul.engine as engine
    from l2ul.bench.store import model_fingerprint
    from l2ul.models.io import load_model

    proxy, first = _first_repair_request(capsys, base, tmp_path)
    seen = []
    real = engine.prepare_ingredients

    def spy(model, *a, **k):
        seen.append((model_fingerprint(model), tuple(a[2])))
        return real(model, *a, **k)

    monkeypatch.setattr(engine, "prepare_ingredients", spy)
    second = tmp_path / "second.safetensors"
    rc, _, stderr, report = unlearn(capsys, first, second, "--forget-ids", "5,6", "--proxy-data", f"npz:{proxy}",
                                    "--keep-forgotten", "3,17,42", "--repair-toward", base, method="repair")
    assert rc == 0, stderr
    original_sha = model_fingerprint(load_model(base))
    assert seen == [(original_sha, ("proxy", "teacher"))]
    assert original_sha != model_fingerprint(load_model(first))
    assert report["request"]["extra"]["repair_toward"]["state_sha256"] == original_sha
    assert report["kept_forgotten"] == {"n": 3, "back_on_label": 0} and report["verdict"] == "holds"
    rc, _, stderr, _ = unlearn(capsys, first, tmp_path / "x.safetensors", "--forget-ids", "5,6",
                               "--repair-toward", base, method="neggrad")
    assert rc == 2 and "distils toward no teacher" in stderr
