"""``repair --forget-phase head_edit``: the closed-form least change of the classifier head (l2ul.head_edit).
The solver meets every margin and no feasible edit changes the proxy's logits less; on the digits CNN the edit
reaches the task in 0 forget steps, changes only the final linear layer, holds with the original batch-norm
statistics, and a repair after it never re-admits an instance."""
import pytest
import torch
from torch import nn

from _digits import accuracy, digits_setup, forget_split
from l2ul import UnlearnConfig, unlearn
from l2ul.errors import ConfigError
from l2ul.head_edit import classifier_head, solve_head_edit

K = 16


def _problem(seed=0, n=400, d=12, k=5, classes=4):
    g = torch.Generator().manual_seed(seed)
    fp = torch.randn(n, d, generator=g, dtype=torch.float64).relu()
    ff = torch.randn(k, d, generator=g, dtype=torch.float64).relu()
    w, b = torch.randn(classes, d, generator=g), torch.randn(classes, generator=g)
    away = torch.randint(0, classes, (k,), generator=g)
    toward = (away + 1 + torch.randint(0, classes - 1, (k,), generator=g)) % classes
    return w, b, fp, ff, away, toward


def _objective(delta, fp, ridge):
    x = torch.cat([fp, torch.ones(fp.shape[0], 1, dtype=fp.dtype)], 1)
    c = x.T @ x / x.shape[0]
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    return float(torch.trace(delta @ c @ delta.T))


def test_the_edit_meets_every_margin_with_the_least_change_of_the_proxy_logits():
    w, b, fp, ff, away, toward = _problem()
    d_w, d_b, info = solve_head_edit(w, b, fp, ff, away, toward, margin=1.0, ridge=0.01)
    z = ff.float() @ (w + d_w).T + (b + d_b)
    gap = z[torch.arange(5), toward] - z[torch.arange(5), away]
    assert info.unmet == 0 and bool((gap >= 1.0 - 1e-4).all())
    # first-order optimality: every edit that keeps the active constraints' values costs at least as much
    xf = torch.cat([ff, torch.ones(5, 1, dtype=ff.dtype)], 1)
    delta = torch.cat([d_w, d_b[:, None]], 1).double()
    best = _objective(delta, fp, 0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        e = torch.randn(delta.shape, generator=g, dtype=delta.dtype)
        # remove the part of e that changes any instance's (toward - away) logit gap
        rows = torch.stack([torch.outer(torch.eye(4, dtype=e.dtype)[t] - torch.eye(4, dtype=e.dtype)[a], x).flatten()
                            for t, a, x in zip(toward, away, xf)])
        q, _ = torch.linalg.qr(rows.T)
        e = e.flatten() - q @ (q.T @ e.flatten())
        assert _objective(delta + 0.1 * e.reshape(delta.shape), fp, 0.01) >= best - 1e-9


def test_instances_already_past_their_margin_are_left_alone_unless_the_edit_pushes_them_back():
    w, b, fp, ff, away, toward = _problem(seed=3)
    z = ff.float() @ w.T + b
    top, bottom = z.argmax(1), z.argmin(1)
    assert bool((z.max(1).values - z.min(1).values >= 0.5).all())          # (this problem: every gap >= 0.5)
    d_w, d_b, info = solve_head_edit(w, b, fp, ff, bottom, top, margin=0.5, ridge=0.01)
    assert info.active == 0 and info.unmet == 0 and float(d_w.abs().max()) == 0.0 and float(d_b.abs().max()) == 0.0
    # mixed: instances 0-2 must move their lowest class to the top, 3-4 are already there
    away, toward = torch.cat([top[:3], bottom[3:]]), torch.cat([bottom[:3], top[3:]])
    d_w, d_b, info = solve_head_edit(w, b, fp, ff, away, toward, margin=0.5, ridge=0.01)
    z2 = ff.float() @ (w + d_w).T + (b + d_b)
    gap = z2[torch.arange(5), toward] - z2[torch.arange(5), away]
    assert info.unmet == 0 and info.active >= 3 and bool((gap >= 0.5 - 1e-4).all())


def test_classifier_head_refuses_a_model_with_a_layer_after_its_last_linear():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh())
    with pytest.raises(ConfigError, match="last nn.Linear"):
        classifier_head(net, torch.rand(2, 4))
    with pytest.raises(ConfigError, match="no nn.Linear"):
        classifier_head(nn.Sequential(nn.Flatten()), torch.rand(2, 4))
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    assert classifier_head(plain, torch.rand(2, 4)) is plain[1]


@pytest.fixture(scope="module")
def setup():
    model, xtr, ytr, xte, yte = digits_setup()
    ids, mask = forget_split(len(xtr), K, seed=0)
    return model, xtr[ids], ytr[ids], (xtr[mask], ytr[mask]), xte[:180]


def test_head_edit_forgets_in_zero_steps_in_the_head_alone_and_holds_with_the_original_bn_statistics(setup):
    """Measured here (180 proxy images, no repair): D_r 98.7% before; after the head edit 97.5%, after the
    SGD forget phase 67.8% (and 89.7% after its 300-step repair). Stated bound: the task done in 0 forget
    steps, at least 10 points more D_r than the SGD forget phase, every parameter but the final linear
    layer's unchanged."""
    model, xf, yf, (xr, yr), proxy = setup
    cfg = UnlearnConfig(seed=0, repair_steps=0)
    edit = unlearn(model, xf, yf, data={"proxy": proxy}, config=cfg.replace(forget_phase="head_edit"), progress=False)
    sgd = unlearn(model, xf, yf, data={"proxy": proxy}, config=cfg, progress=False)
    assert edit.converged and edit.forget_accuracy == 0.0 and edit.holds_with_original_bn_stats is True
    assert edit.phases[0]["steps"] == 0 and "after 0 steps" in edit.phases[0]["message"]
    assert edit.phases[0]["message"].startswith("head edit: ") and f"of {K} instances" in edit.phases[0]["message"]
    assert accuracy(edit.model, xr, yr) >= accuracy(sgd.model, xr, yr) + 0.10
    before, after = dict(model.named_parameters()), dict(edit.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == {"fc.weight", "fc.bias"}
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), edit.model.buffers()))


def test_a_repair_after_the_head_edit_never_readmits_an_instance(setup):
    model, xf, yf, _, proxy = setup
    trace = []
    r = unlearn(model, xf, yf, data={"proxy": proxy}, progress=False,
                config=UnlearnConfig(seed=0, forget_phase="head_edit", repair_steps=40, repair_stop_kl=0),
                callback=lambda step, score: trace.append(score))
    assert r.phases[0]["steps"] == 0 and r.phases[1]["steps"] > 0
    assert trace and all(s == 0.0 for s in trace) and r.forget_accuracy == 0.0


def test_the_field_is_hashed_only_when_set_and_only_for_misclassify():
    from l2ul.bench.store import _hashed_config

    assert "forget_phase" not in _hashed_config(UnlearnConfig(), ["repair"])
    assert _hashed_config(UnlearnConfig(forget_phase="head_edit"), ["repair"])["forget_phase"] == "head_edit"
    assert "forget_phase" not in _hashed_config(UnlearnConfig(forget_phase="head_edit"), ["repair"], "relabel")


def test_the_proxy_features_come_from_the_outputs_cache_and_the_result_is_bit_identical_with_it_off(
        setup, tmp_path, monkeypatch):
    import l2ul.head_edit as head_edit

    model, xf, yf, _, proxy = setup
    cfg = UnlearnConfig(seed=0, forget_phase="head_edit", repair_steps=0)
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("L2UL_CACHE", "0")
    off = unlearn(model, xf, yf, data={"proxy": proxy}, config=cfg, progress=False)
    monkeypatch.setenv("L2UL_CACHE", "1")
    first = unlearn(model, xf, yf, data={"proxy": proxy}, config=cfg, progress=False)
    calls = []
    real = head_edit.head_features
    monkeypatch.setattr(head_edit, "head_features", lambda m, h, x, *a: calls.append(x.shape[0]) or real(m, h, x, *a))
    second = unlearn(model, xf, yf, data={"proxy": proxy}, config=cfg, progress=False)
    assert calls == [K]                                   # only the forget set's features: the proxy's were cached
    assert list((tmp_path / "outputs").glob("features-*.safetensors"))
    for r in (first, second):
        assert all(torch.equal(a, b) for a, b in zip(off.model.state_dict().values(), r.model.state_dict().values()))


def test_head_only_change_names_the_final_layer_only_when_it_is_all_that_changed(setup):
    import copy

    from l2ul.head_edit import head_features, head_logits, head_only_change

    model, xf, *_ = setup
    probe = xf[:2]
    edited = copy.deepcopy(model)
    assert head_only_change(model, edited, probe) is None                    # nothing changed
    with torch.no_grad():
        edited.fc.weight[0, 0] += 1.0
    assert head_only_change(model, edited, probe) == "fc"
    # its outputs are the edited head on the original's features, bit for bit, in the same batches
    feats = head_features(model, model.fc, xf, 8, torch.device("cpu"))
    assert torch.equal(head_logits(edited.fc, feats, 8), predict_logits(edited, xf, 8))
    other = copy.deepcopy(edited)
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if not n.startswith("fc")).add_(1e-3)
    assert head_only_change(model, other, probe) is None                     # another layer changed too


def predict_logits(model, x, batch):
    from l2ul.evaluation import predict

    return predict(model, (x, torch.zeros(x.shape[0], dtype=torch.long)), batch_size=batch).logits


def test_a_fast_request_is_evaluated_from_the_original_features_with_the_same_figures(tmp_path, monkeypatch):
    """``l2ul unlearn --preset fast``: the result differs from the original only in its head, so D_r and D_test
    are measured as that head on the original's cached features, with exactly the figures of a forward pass
    (the shortcut turned off), the same model and figures with the cache on, warm and off, and the warm
    request runs no forward pass over D_r or D_test."""
    import json

    import numpy as np

    import l2ul.request_figures as figures
    from l2ul.cli import main

    base = tmp_path / "base.safetensors"
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--recipe", "quick", "--epochs", "3",
                 "--out", str(base), "--quiet"]) == 0
    _, _, _, xte, _ = digits_setup()
    proxy = tmp_path / "proxy.npz"
    np.savez(proxy, x=xte[:200].numpy())
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--model", str(base), "--forget-ids", "3,17,42", "--proxy-data", f"npz:{proxy}", "--preset", "fast",
            "--retain-eval-size", "300", "--quiet"]
    used, real = [], figures._head_only_after
    monkeypatch.setattr(figures, "_head_only_after", lambda *a, **kw: used.append(real(*a, **kw)) or used[-1])
    reports = {}
    for run, env in (("cold", "1"), ("warm", "1"), ("off", "0")):
        monkeypatch.setenv("L2UL_CACHE", env)
        out = tmp_path / f"{run}.safetensors"
        assert main(["unlearn", *args, "--out", str(out)]) == 0
        reports[run] = json.loads(open(str(out) + ".report.json").read())
    assert len(used) == 3 and all(u is not None for u in used)              # the shortcut served every run
    monkeypatch.setattr(figures, "_head_only_after", lambda *a, **kw: None)  # a forward pass instead
    assert main(["unlearn", *args, "--out", str(tmp_path / "forward.safetensors")]) == 0
    forward = json.loads(open(str(tmp_path / "forward.safetensors") + ".report.json").read())
    assert reports["cold"]["metrics"] == reports["warm"]["metrics"] == reports["off"]["metrics"] == forward["metrics"]
    assert reports["cold"]["metrics"]["acc_forget"] == 0.0
    assert [p["steps"] for p in reports["cold"]["phases"]] == [0, 0]          # the edit, no repair step
    assert len(list((tmp_path / "cache" / "outputs").glob("features-*"))) == 3   # proxy, D_r sample, D_test


def test_the_head_edit_is_refused_for_another_task_before_any_work(setup):
    model, xf, yf, _, proxy = setup
    with pytest.raises(ConfigError, match="misclassify task"):
        unlearn(model, xf, yf, data={"proxy": proxy}, task="relabel", targets=(yf + 1) % 10, progress=False,
                config=UnlearnConfig(seed=0, forget_phase="head_edit"))
