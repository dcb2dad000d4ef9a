"""l2ul.bench: the method x k x seed grid (files, records, shared adversarial examples, resume, settings
check), continual requests, the D_r / oracle split helper and the CLI glue, on the digits CNN."""
import argparse
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import l2ul.bench as bench
import l2ul.bench.continual
import l2ul.bench.grid
import l2ul.cli.bench as cli_bench
from _digits import digits_setup
from l2ul import UnlearnConfig
from l2ul.bench import continual_forget_sets, eval_splits, run_bench, run_continual
from l2ul.bench.store import save_checkpoint
from l2ul.cli._options import config_from_args
from l2ul.data import load_dataset
from l2ul.engine import unlearn
from l2ul.errors import ConfigError, DataError, L2ULError
from l2ul.requests import random_forget_ids

CFG = UnlearnConfig(pgd_steps=5, adv_per_instance=2, max_steps=50, pgd_eps=0.5, retain_batch_size=64, device="cpu",
                    synth_images=128, synth_steps=40)
METHODS = ("neggrad", "adv", "l2ul", "oracle")
KS = (1, 4)
COMMON = dict(methods=METHODS, ks=KS, seeds=(0,), config=CFG, retain_eval_size=200, mia_attack="logistic",
              mia_max_samples=300, progress=False)
RECORD_KEYS = {
    "method", "k", "seed", "status", "converged", "steps", "time_adversarial", "time_importance",
    "time_optimization", "time_total", "peak_rss_mib", "acc_forget", "acc_retain", "acc_test",
    "acc_forget_before", "acc_retain_before", "acc_test_before", "mia_efficacy", "mia_efficacy_before",
    "loss_auc", "loss_auc_before", "agreement_test", "forget_success", "n_forget", "n_retain", "n_test",
    "lr", "pgd_eps", "adv_per_instance", "bn", "reg_lambda", "config_name", "settings_hash",
}


class Counter:
    """Wraps the engine's unlearn, as the grid and continual modes call it (through l2ul.run_request), to
    count the cells and requests computed."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(l2ul.engine, "unlearn", self._counted(l2ul.engine.unlearn))

    def _counted(self, real):
        def counted(*a, **kw):
            self.calls.append(kw.get("method"))
            return real(*a, **kw)
        return counted


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def model():
    return digits_setup()[0]


@pytest.fixture(scope="module")
def grid(bundle, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    logs = []
    records = run_bench(model, bundle, out_dir=out, log=logs.append, config_name="test", **COMMON)
    return out, records, logs


# ------------------------------------------------------------------------------------------------ splits
def test_eval_splits_are_disjoint_and_fixed():
    n = 1000
    forget_sets = [random_forget_ids(k, n_train=n, seed=s) for k in (1, 8, 64) for s in (0, 1, 2)]
    union = set().union(*map(set, forget_sets))
    r, pool = eval_splits(n, forget_sets, 200)
    assert len(r) == 200 and list(r) == sorted(r)
    assert not set(r) & union and not set(pool) & union and not set(r) & set(pool)
    assert len(pool) == n - len(union) - 200                      # everything else goes to the oracle
    r2, pool2 = eval_splits(n, forget_sets, 200, oracle_pool_size=50)
    assert np.array_equal(r, r2) and len(pool2) == 50 and set(pool2) <= set(pool)
    # the D_r subset depends on the seed of the subset, never on the grid seeds' order
    assert np.array_equal(eval_splits(n, forget_sets[::-1], 200)[0], r)
    assert not np.array_equal(eval_splits(n, forget_sets, 200, seed=1)[0], r)
    # more than available -> all available; None -> all
    r_all, pool_all = eval_splits(n, forget_sets, 10 ** 6)
    assert len(r_all) == n - len(union) and len(pool_all) == 0
    assert np.array_equal(eval_splits(n, forget_sets, None)[0], r_all)


def test_continual_forget_sets_disjoint():
    sets = continual_forget_sets(100, 4, 5, seed=3)
    assert [len(s) for s in sets] == [5] * 4 and len(set().union(*map(set, sets))) == 20
    assert sets[0] == random_forget_ids(5, n_train=100, seed=3)
    with pytest.raises(L2ULError):
        continual_forget_sets(10, 3, 4, seed=0)


# ------------------------------------------------------------------------------------------------- bench
def test_bench_files(grid):
    out, records, _ = grid
    for name in ("results.csv", "results.json", "results.jsonl", "settings.json", "table.md",
                 "plot_vs_k.png", "plot_phase_times.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert "### k = 1" in table and "### k = 4" in table
    assert "fixed random subset of 200" in table and "Machine:" in table and "Date:" in table
    for png in ("plot_vs_k.png", "plot_phase_times.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 100
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["retain_eval"]["size"] == 200 and len(data["records"]) == len(records)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(METHODS) * len(KS)
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(records) and "acc_retain" in csv_lines[0]
    cell = json.loads((out / "cells" / "l2ul_k4_s0.json").read_text())
    assert len(cell["per_instance"]) == 4 and cell["forget_indices"] == random_forget_ids(4, n_train=1437, seed=0)
    assert not [p for p in out.rglob("*.partial*")]


def test_every_cell_is_a_request_of_the_pipeline_with_its_report_and_audit_page(grid):
    """The grid runs each cell through l2ul.run_request: the cell's report (the format of `l2ul unlearn`'s)
    and audit page lie beside its record, with the same figures, and no model file is kept."""
    out, records, _ = grid
    for rec in records:
        name = f"{rec['method']}_k{rec['k']}_s{rec['seed']}"
        report = json.loads((out / "cells" / f"{name}.report.json").read_text())
        assert report["command"] == "unlearn" and report["method"] == rec["method"]
        assert report["metrics"]["acc_retain"] == rec["acc_retain"] and report["metrics"]["acc_test"] == rec["acc_test"]
        assert report["metrics"]["loss_auc"] == rec["loss_auc"] and report["steps"] == rec["steps"]
        assert report["dataset"]["retain_eval_size"] == 200 and report["output_model"]["path"] is None
        assert set(report["request_timings_s"]) >= {"unlearn", "evaluation"}
        assert "<html" in (out / "cells" / f"{name}.report.html").read_text().lower()
    assert not list((out / "cells").glob("*.safetensors"))


def _without_date(text):
    return [line for line in text.splitlines() if not line.startswith("- Date:")]


def test_render_results_rewrites_outputs_from_records(grid, tmp_path):
    out, records, _ = grid
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("table.md", "results.csv", "results.json", "plot_vs_k.png"):
        (copy / name).unlink()
    written = bench.render_results(copy)
    assert {p.name for p in written} == {"table.md", "results.csv", "results.json", "plot_vs_k.png",
                                         "plot_phase_times.png"}
    assert _without_date((copy / "table.md").read_text()) == _without_date((out / "table.md").read_text())
    assert (copy / "results.csv").read_text() == (out / "results.csv").read_text()
    assert json.loads((copy / "results.json").read_text())["records"] == json.loads(
        (out / "results.json").read_text())["records"]
    # a record of other settings is refused; a folder without results says what it needs
    with open(copy / "results.jsonl", "a") as f:
        f.write(json.dumps({**records[0], "settings_hash": "0" * 16}) + "\n")
    with pytest.raises(L2ULError, match="other settings"):
        bench.render_results(copy)
    with pytest.raises(L2ULError, match="no settings.json"):
        bench.render_results(tmp_path / "empty")


def test_bench_records(grid, bundle):
    _, records, logs = grid
    assert len(records) == len(METHODS) * len(KS)
    assert {(r["method"], r["k"]) for r in records} == {(m, k) for m in METHODS for k in KS}
    for r in records:
        missing = RECORD_KEYS - set(r)
        assert not missing, missing
        assert "per_instance" not in r
        assert r["n_retain"] == 200 and r["n_test"] == bundle.n_test and r["n_forget"] == r["k"]
        assert r["status"] in ("converged", "budget_exhausted", "diverged")
        if r["converged"]:
            assert r["acc_forget"] == 0.0
        if r["status"] == "diverged":      # neggrad's unbounded loss can blow up: no metrics, original kept
            assert r["acc_retain"] is None and r["acc_retain_before"] is not None
        else:
            assert 0.0 <= r["acc_retain"] <= 1.0 and 0.0 <= r["mia_efficacy"] <= 1.0
        assert r["time_total"] == pytest.approx(r["time_adversarial"] + r["time_importance"] + r["time_optimization"])
        # the original's figures are the same in every record of one (k, seed)
        assert r["acc_retain_before"] == records[0]["acc_retain_before"]
    assert sum("neggrad k=1 seed=0" in line for line in logs) == 1
    assert sum(line.startswith("[") for line in logs) == len(records)   # one line per cell


def test_adv_and_l2ul_share_adversarial_examples(grid):
    _, records, _ = grid
    by = {(r["method"], r["k"]): r for r in records}
    for k in KS:
        adv, l2, ng = by[("adv", k)], by[("l2ul", k)], by[("neggrad", k)]
        assert adv["time_adversarial"] > 0 and adv["time_adversarial"] == l2["time_adversarial"]
        assert adv["adversarial_shared"] and l2["adversarial_shared"] and not ng["adversarial_shared"]
        assert ng["time_adversarial"] == 0 and l2["time_importance"] > 0 and adv["time_importance"] == 0


def test_shared_adversarial_set_is_the_engines(bundle, model):
    """The bench prepares shared ingredients exactly as the engine would for the same config."""
    from l2ul.engine import prepare_ingredients

    ids = random_forget_ids(4, n_train=bundle.n_train, seed=0)
    xf, yf = bundle.stack_train(ids)
    cfg = CFG.replace(seed=3)
    shared = prepare_ingredients(model, xf, yf, ["adversarial"], config=cfg)["adversarial"]
    own = unlearn(model, xf, yf, method="adv", config=cfg.replace(max_steps=1)).adversarial
    assert torch.equal(shared.labels, own.labels) and torch.equal(shared.source, own.source)
    assert torch.allclose(shared.images, own.images)


def test_bench_resume(grid, bundle, model, tmp_path, monkeypatch):
    src, records, _ = grid
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    counter = Counter(monkeypatch)
    logs = []
    again = run_bench(model, bundle, out_dir=out, log=logs.append, config_name="test", **COMMON)
    assert counter.calls == []                                      # nothing recomputed
    assert any("resuming: 8 cell(s) already done" in line for line in logs)
    assert [(r["method"], r["k"], r["acc_retain"]) for r in again] == \
        [(r["method"], r["k"], r["acc_retain"]) for r in records]
    # fewer methods is the same settings: nothing to do
    run_bench(model, bundle, out_dir=out, log=None, **{**COMMON, "methods": ("neggrad",)})
    assert counter.calls == []
    # a run killed after 7 cells, in the middle of writing the 8th line
    jsonl = out / "results.jsonl"
    lines = jsonl.read_text().splitlines()
    last = json.loads(lines[-1])
    jsonl.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    again = run_bench(model, bundle, out_dir=out, log=None, **COMMON)
    assert counter.calls == [last["method"]]                        # only the missing cell
    assert len(jsonl.read_text().splitlines()) == len(records)
    assert all(json.loads(line) for line in jsonl.read_text().splitlines())
    assert len(again) == len(records)


def test_bench_resumes_a_folder_written_before_a_config_field_existed(grid, bundle, model, tmp_path,
                                                                       monkeypatch):
    """A folder from before `forget_loss` existed (no such key in its hashed config) resumes with the
    value that reproduces the old behaviour, keeps its hash, and refuses any other value."""
    src, records, _ = grid
    out = tmp_path / "legacy"
    shutil.copytree(src, out)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["hashed"]["config"].pop("forget_loss") == "ascent"
    old_hash = bench.settings_hash(settings["hashed"])
    settings["settings_hash"] = old_hash
    (out / "settings.json").write_text(json.dumps(settings))
    jsonl = out / "results.jsonl"
    # the legacy folder had no oracle yet
    jsonl.write_text("".join(json.dumps({**json.loads(line), "settings_hash": old_hash}) + "\n"
                             for line in jsonl.read_text().splitlines() if json.loads(line)["method"] != "oracle"))
    counter = Counter(monkeypatch)
    again = run_bench(model, bundle, out_dir=out, log=None, **COMMON)
    assert counter.calls == ["oracle", "oracle"] and len(again) == len(records)   # only the missing cells
    assert json.loads((out / "settings.json").read_text())["settings_hash"] == old_hash
    assert {r["settings_hash"] for r in again} == {old_hash}
    with pytest.raises(L2ULError, match="different settings"):
        run_bench(model, bundle, out_dir=out, log=None, **{**COMMON, "config": CFG.replace(forget_loss="nearest")})


def test_bench_refuses_other_settings(grid, bundle, model, tmp_path, monkeypatch):
    src, _, _ = grid
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    counter = Counter(monkeypatch)
    with pytest.raises(L2ULError, match="new --out"):
        run_bench(model, bundle, out_dir=out, log=None, **{**COMMON, "config": CFG.replace(lr=0.01)})
    with pytest.raises(L2ULError, match="new --out"):
        run_bench(model, bundle, out_dir=out, log=None, **{**COMMON, "retain_eval_size": 100})
    other = digits_setup()[0].__class__()        # untrained weights: another model
    with pytest.raises(L2ULError, match="model_sha256"):
        run_bench(other, bundle, out_dir=out, log=None, **COMMON)
    assert counter.calls == []


def test_bench_checks_class_count(bundle, tmp_path):
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(DataError, match="3 classes"):
        run_bench(wrong, bundle, out_dir=tmp_path / "x", log=None, **{**COMMON, "methods": ("neggrad",)})


# --------------------------------------------------------------------------------------------- continual
def test_continual(bundle, model, tmp_path, monkeypatch):
    out = tmp_path / "cont"
    kw = dict(methods=("neggrad", "l2ul"), requests=2, k=2, seed=0, config=CFG, out_dir=out, retain_eval_size=200,
              progress=False)
    logs = []
    recs = run_continual(model, bundle, log=logs.append, **kw)
    assert [(r["method"], r["request"]) for r in recs] == [(m, q) for m in ("neggrad", "l2ul") for q in (0, 1, 2)]
    keys = ("method", "request", "acc_retain", "acc_test", "acc_forget", "acc_forgotten_so_far",
            "acc_previously_forgotten", "steps", "converged", "time_adversarial", "time_importance",
            "time_optimization")
    for r in recs:
        assert all(key in r for key in keys), r
        if r["request"] == 0:
            assert r["acc_forget"] is None and r["acc_retain"] > 0.9 and r["status"] == "original"
        elif r["status"] == "converged":
            assert r["acc_forget"] == 0.0
        # neggrad may blow up (its loss is unbounded): later requests are then recorded as skipped
        assert r["status"] in ("original", "converged", "budget_exhausted", "diverged", "skipped")
    l0, l1, l2 = recs[3:]
    assert l1["converged"] and l2["converged"], (l1["message"], l2["message"])
    assert l1["acc_previously_forgotten"] is None and l2["acc_previously_forgotten"] is not None
    assert l2["acc_forgotten_so_far"] is not None and 0.0 <= l2["acc_retain"] <= 1.0
    sets = continual_forget_sets(bundle.n_train, 2, 2, 0)
    assert [l1["forget_indices"], l2["forget_indices"]] == sets
    for name in ("continual.jsonl", "continual.json", "continual.md", "plot_continual.png"):
        assert (out / name).is_file(), name
    with Image.open(out / "plot_continual.png") as im:
        assert im.format == "PNG"
    assert "fixed random subset of 200" in (out / "continual.md").read_text()
    # every request ran through the request pipeline: its report (measured against the model before it)
    # and audit page are in requests/
    rep = json.loads((out / "requests" / "l2ul_r2.report.json").read_text())
    assert rep["request"]["ids"] == sets[1] and rep["metrics"]["acc_retain"] == l2["acc_retain"]
    assert rep["metrics"]["acc_retain_before"] == l1["acc_retain"]
    assert (out / "requests" / "l2ul_r2.report.html").is_file()
    counter = Counter(monkeypatch)
    again = run_continual(model, bundle, log=None, **kw)
    assert counter.calls == [] and len(again) == 6
    # killed during l2ul: neggrad is kept, l2ul restarts from the original model
    jsonl = out / "continual.jsonl"
    jsonl.write_text("\n".join(jsonl.read_text().splitlines()[:4]) + "\n")
    again = run_continual(model, bundle, log=None, **kw)
    assert counter.calls == ["l2ul", "l2ul"]
    assert [(r["method"], r["request"]) for r in again] == [(r["method"], r["request"]) for r in recs]
    assert again[5]["acc_retain"] == pytest.approx(l2["acc_retain"])
    # the continual outputs re-render from the records alone
    md = (out / "continual.md").read_text()
    (out / "continual.md").unlink()
    assert {p.name for p in bench.render_results(out, plots=False)} == {"continual.md", "continual.json"}
    assert _without_date((out / "continual.md").read_text()) == _without_date(md)


@pytest.mark.parametrize("toward", ["previous", "original"])
def test_continual_repair_distils_toward_the_chosen_model(bundle, model, tmp_path, monkeypatch, toward):
    """--repair-toward: request 2's repair distils the original model's outputs on the proxy ("original") or
    is left to compute them from the model before it ("previous"); either way request 1's instances stay
    forgotten, and only the non-default choice changes the settings hash (earlier folders still resume)."""
    cfg = CFG.replace(repair_steps=20, repair_check_every=10)
    real, given = l2ul.engine.unlearn, []

    def spy(*a, **k):
        given.append(dict(k.get("ingredients") or {}))
        return real(*a, **k)

    monkeypatch.setattr(l2ul.engine, "unlearn", spy)
    out = tmp_path / toward
    recs = run_continual(model, bundle, methods=("repair",), requests=2, k=2, seed=0, config=cfg, out_dir=out,
                         retain_eval_size=200, progress=False, log=None, proxy_test_split=150, repair_toward=toward)
    assert [r["status"] for r in recs[1:]] == ["converged", "converged"]
    assert recs[2]["acc_previously_forgotten"] == 0.0 and recs[2]["acc_forget"] == 0.0
    assert [set(g) for g in given] == ([{"proxy"}] * 2 if toward == "previous" else [{"proxy", "teacher"}] * 2)
    if toward == "original":
        images = given[1]["proxy"].images
        with torch.no_grad():
            want = model.eval()(images)        # the original model's logits, not request 1's model
        torch.testing.assert_close(given[1]["teacher"], want, rtol=1e-4, atol=1e-4)
    settings = json.loads((out / "settings.json").read_text())
    assert ("repair_toward" in json.dumps(settings)) == (toward == "original")
    assert ("toward the original model at every request" in json.dumps(settings)) == (toward == "original")


def test_continual_rejects_an_unknown_teacher(bundle, model, tmp_path):
    with pytest.raises(ConfigError, match="repair_toward"):
        run_continual(model, bundle, methods=("repair",), requests=1, k=2, config=CFG, out_dir=tmp_path / "x",
                      log=None, repair_toward="best")


def test_continual_resumes_after_the_last_checkpointed_request(bundle, model, tmp_path, monkeypatch):
    """A run killed during request 3 continues from request 2's checkpoint and ends where an uninterrupted
    run ends (same records), computing only requests 3 and 4."""
    kw = dict(methods=("adv",), requests=4, k=2, seed=0, config=CFG, retain_eval_size=200, progress=False, log=None)
    full = run_continual(model, bundle, out_dir=tmp_path / "full", **kw)
    assert not (tmp_path / "full" / "checkpoints" / "adv.safetensors").exists()   # removed when done
    out = tmp_path / "killed"
    real, calls = l2ul.engine.unlearn, []

    def dies_at_request_3(*a, **k):
        calls.append(k["config"].seed)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(l2ul.engine, "unlearn", dies_at_request_3)
    with pytest.raises(KeyboardInterrupt):
        run_continual(model, bundle, out_dir=out, **kw)
    assert (out / "checkpoints" / "adv.safetensors").is_file()
    monkeypatch.setattr(l2ul.engine, "unlearn", real)
    counter = Counter(monkeypatch)
    again = run_continual(model, bundle, out_dir=out, **kw)
    assert counter.calls == ["adv", "adv"]                       # requests 3 and 4 only
    assert [r["request"] for r in again] == [0, 1, 2, 3, 4]
    for a, b in zip(again, full):
        for key in ("status", "steps", "acc_retain", "acc_test", "acc_forget", "acc_previously_forgotten"):
            assert a[key] == b[key], (a["request"], key)
    # a checkpoint from other settings is not trusted: the method restarts from the original model
    jsonl = out / "continual.jsonl"
    jsonl.write_text("\n".join(jsonl.read_text().splitlines()[:3]) + "\n")
    save_checkpoint(out / "checkpoints" / "adv.safetensors", model, 2, "other-settings")
    counter.calls.clear()
    run_continual(model, bundle, out_dir=out, **kw)
    assert counter.calls == ["adv"] * 4


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_args_and_main(model, tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    cli_bench.add_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(["--model", "unused.safetensors", "--dataset", "digits", "--methods", "neggrad",
                              "--requests", "1", "--k", "1", "--max-steps", "20", "--pgd-eps", "0.5",
                              "--device", "cpu", "--retain-eval-size", "100", "--out", str(out), "--no-progress"])
    cfg, name = config_from_args(args)
    assert cfg.max_steps == 20 and cfg.pgd_eps == 0.5 and name == "default + overrides"
    real_load = cli_bench.load_model_from_args
    monkeypatch.setattr(cli_bench, "load_model_from_args", lambda a: model)
    assert cli_bench.cmd_bench(args) == 0
    assert (out / "continual.md").is_file()
    args = parser.parse_args(["--dataset", "digits", "--out", str(tmp_path / "x"), "--preset", "cifar10-resnet18",
                              "--requests", "2", "--k", "1,2"])
    with pytest.raises(L2ULError, match="single --k"):
        cli_bench.cmd_bench(args)
    args = parser.parse_args(["--dataset", "digits", "--out", str(tmp_path / "x"), "--repair-toward", "original"])
    with pytest.raises(L2ULError, match="continual-mode option"):
        cli_bench.cmd_bench(args)
    with pytest.raises(L2ULError, match="no model given"):
        real_load(parser.parse_args(["--dataset", "digits", "--out", "o"]))


def test_bench_relabel_task_meets_random_targets(bundle, model, tmp_path):
    """task="relabel": each cell relabels its instances to the random wrong classes `l2ul unlearn
    --relabel-to random` draws for the same ids and seed; the settings hash the task."""
    from l2ul.requests import parse_relabel_targets

    kw = {**COMMON, "methods": ["neggrad", "repair"], "ks": [4], "seeds": [0]}
    records = run_bench(model, bundle, out_dir=tmp_path / "r", log=None, task="relabel", **kw)
    assert {r["method"] for r in records} == {"neggrad", "repair"}
    assert all(r["forget_success"] == 1.0 and r["converged"] for r in records)
    settings = json.loads((tmp_path / "r" / "settings.json").read_text())
    assert settings["hashed"]["task"] == "relabel"
    report = json.loads((tmp_path / "r" / "cells" / "repair_k4_s0.report.json").read_text())
    ids = random_forget_ids(4, n_train=1437, seed=0)
    labels = bundle.train_labels[ids]
    assert report["task"] == "relabel"
    assert report["request"]["targets"] == parse_relabel_targets("random", labels=labels, num_classes=10, seed=0)
    assert [p["pred_after"] for p in report["per_instance"]] == report["request"]["targets"]
    with pytest.raises(ConfigError, match="task"):
        run_bench(model, bundle, out_dir=tmp_path / "x", log=None, task="unseen", **kw)
