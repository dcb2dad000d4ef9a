"""Engine behaviour on a real (small) problem: a CNN trained on scikit-learn's digits in this session."""
import copy

import pytest
import torch

import l2ul
from _digits import accuracy, digits_setup, forget_split
from l2ul import UnlearnConfig, unlearn
from l2ul.errors import ConfigError, RequestError

# The paper's CIFAR-10 recipe (lr 1e-3, momentum 0.9, wd 1e-4, 20 adversarial examples per instance, lambda 1)
# with eps scaled to 8x8 images: eps 4.0 over 3x32x32 pixels is an RMS of 4/sqrt(3072) = 0.072 per pixel;
# the same per-pixel budget over 1x8x8 pixels is 0.58, so eps = 0.5. 50 PGD iterations keep the test fast.
CFG = UnlearnConfig(pgd_eps=0.5, pgd_steps=50, max_steps=1000, seed=0)
K = 8


@pytest.fixture(scope="module")
def setup():
    model, xtr, ytr, xte, yte = digits_setup()
    ids, mask = forget_split(len(xtr), K, seed=0)
    return model, xtr[ids], ytr[ids], (xtr[mask], ytr[mask]), (xte, yte)


@pytest.fixture(scope="module")
def runs(setup):
    model, xf, yf, retain, _ = setup
    out = {}
    for method in ("neggrad", "adv", "l2ul", "oracle"):
        # oracle: a 32-example retain batch, so the forget term keeps a 20% share of the loss (with the
        # default 256 it gets 3% and does not finish within 1000 steps on this model)
        cfg = CFG.replace(retain_batch_size=32) if method == "oracle" else CFG
        out[method] = unlearn(model, xf, yf, method=method, config=cfg,
                              retain=retain if method == "oracle" else None)
    return out


@pytest.mark.parametrize("method", ["neggrad", "adv", "l2ul", "oracle"])
def test_every_method_forgets_all_k_instances(runs, setup, method):
    _, xf, yf, _, _ = setup
    r = runs[method]
    assert r.converged and r.status == "converged", r.message
    assert r.forget_accuracy == 0.0
    assert accuracy(r.model, xf, yf) == 0.0               # measured independently of the engine
    assert 1 <= r.steps <= CFG.max_steps
    assert len(r.forget_history) == r.steps and r.forget_history[-1] == 0.0
    assert all(v >= 0 for v in r.timings.values())


def test_l2ul_keeps_remaining_accuracy(runs, setup):
    """Stated bound: l2ul keeps remaining-data and test accuracy within 25 points of the original model
    (measured: D_r 98.7% -> 77.6%) and at least as high as neggrad (which collapses to one class here:
    10.1%). Forgetting 8 typical digits of an 8x8 dataset is hard: their near-duplicates fill the rest of
    the data, so any method that misclassifies them also misclassifies many neighbours."""
    model, _, _, (xr, yr), (xte, yte) = setup
    orig_r, orig_t = accuracy(model, xr, yr), accuracy(model, xte, yte)
    l2ul_r, l2ul_t = accuracy(runs["l2ul"].model, xr, yr), accuracy(runs["l2ul"].model, xte, yte)
    ng_r = accuracy(runs["neggrad"].model, xr, yr)
    assert l2ul_r >= ng_r
    assert l2ul_r >= orig_r - 0.25 and l2ul_t >= orig_t - 0.25


def test_callers_model_is_untouched(runs, setup):
    model, *_ = setup
    fresh = digits_setup()[0]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert runs["l2ul"].model is not model


def test_adv_and_l2ul_record_phases(runs):
    r = runs["l2ul"]
    assert len(r.adversarial) == K * CFG.adv_per_instance
    assert r.timings["adversarial"] > 0 and r.timings["importance"] > 0 and r.timings["optimization"] > 0
    assert runs["neggrad"].timings["adversarial"] == 0 and runs["neggrad"].adversarial is None
    d = r.to_dict()
    assert d["converged"] is True and d["steps"] == r.steps and d["config"]["pgd_eps"] == 0.5


def test_relabel_reaches_every_target(setup):
    model, xf, yf, _, _ = setup
    targets = (yf + 1) % 10
    # relabel pulls toward a target while the adversarial examples hold the boundaries: with 20 per instance
    # (160) lr 1e-2 needed 982 of the 1000 steps on this machine (at 1e-3, 2 of 8 instances stay short of
    # their target); with 5 per instance it finishes in about 35
    r = unlearn(model, xf, yf, method="l2ul", task="relabel", targets=targets,
                config=CFG.replace(lr=1e-2, adv_per_instance=5))
    assert r.converged, r.message
    r.model.eval()
    with torch.no_grad():
        assert torch.equal(r.model(xf).argmax(1), targets)
    assert r.target_accuracy == 1.0


def test_impossible_budget_reports_not_converged(setup):
    model, xf, yf, _, _ = setup
    r = unlearn(model, xf, yf, method="l2ul", config=CFG.replace(max_steps=1))
    assert r.status == "budget_exhausted" and not r.converged
    assert r.steps == 1 and r.forget_accuracy > 0
    assert "budget" in r.message and "DID NOT CONVERGE" in r.summary()


def test_same_seed_same_result_and_seed_matters(setup):
    model, xf, yf, _, _ = setup
    cfg = CFG.replace(adv_per_instance=4, pgd_steps=10, max_steps=20)
    a = unlearn(model, xf, yf, method="l2ul", config=cfg)
    b = unlearn(model, xf, yf, method="l2ul", config=cfg)
    c = unlearn(model, xf, yf, method="l2ul", config=cfg.replace(seed=1))
    assert a.steps == b.steps
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert not torch.equal(a.adversarial.images, c.adversarial.images)


def test_continual_requests(setup):
    model, xtr, ytr, _, _ = digits_setup()
    cur = model
    results = []
    for seed in range(3):
        ids, _ = forget_split(len(xtr), 4, seed=10 + seed)
        r = unlearn(cur, xtr[ids], ytr[ids], method="l2ul", config=CFG.replace(seed=seed))
        assert r.converged, r.message
        results.append(r)
        cur = r.model
    assert len({id(r.model) for r in results}) == 3
    # the first request's instances: does the last model still see them as forgotten? (reported, not required)
    assert all(r.steps >= 0 for r in results)


def test_inplace_modifies_given_model(setup):
    _, xf, yf, _, _ = setup
    m = copy.deepcopy(digits_setup()[0])
    r = unlearn(m, xf, yf, method="neggrad", config=CFG, inplace=True)
    assert r.model is m and r.converged


def test_precomputed_ingredients_are_reused(runs, setup):
    model, xf, yf, _, _ = setup
    r0 = runs["l2ul"]
    r = unlearn(model, xf, yf, method="l2ul", config=CFG, adversarial=r0.adversarial, importance=r0.importance)
    assert r.steps == r0.steps
    assert r.timings["adversarial"] == r0.timings["adversarial"]


def test_bn_train_mode_runs_and_updates_running_stats(setup):
    model, xf, yf, _, _ = setup
    r = unlearn(model, xf, yf, method="adv", config=CFG.replace(bn="train", adv_per_instance=5, max_steps=50))
    assert r.steps >= 1
    assert not torch.equal(r.model.b1.running_mean, model.b1.running_mean)
    r2 = unlearn(model, xf, yf, method="adv", config=CFG.replace(bn="freeze", adv_per_instance=5, max_steps=50))
    assert torch.equal(r2.model.b1.running_mean, model.b1.running_mean)


@pytest.mark.parametrize("method", ["adv", "oracle"])
def test_bn_train_mode_forwards_auxiliary_batch_before_forget_batch(setup, method):
    """The original code's order: with train-mode BN the last pass of a step (the forget batch) is the one
    whose statistics weigh most in the running statistics the evaluated model uses."""
    model, xf, yf, retain, _ = setup
    sizes = []
    work = copy.deepcopy(model)
    work.b1.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].shape[0]) if mod.training else None)
    cfg = CFG.replace(bn="train", adv_per_instance=5, max_steps=2, adv_batch_size=24, retain_batch_size=24)
    unlearn(work, xf, yf, method=method, config=cfg, inplace=True,
            retain=(retain[0][:100], retain[1][:100]) if method == "oracle" else None)
    assert len(sizes) == 4 and sizes[1::2] == [K, K]          # aux, forget, aux, forget
    assert all(s in (24, 16) for s in sizes[::2]), sizes     # 40 adversarial / 100 retain examples in 24s


def test_score_with_original_bn_stats_matches_a_hand_check(setup):
    model, xf, yf, _, _ = setup
    r = unlearn(model, xf, yf, method="neggrad", config=CFG.replace(bn="train"))
    assert r.converged
    check = copy.deepcopy(r.model)
    stats = {n: b for n, b in model.named_buffers() if "running_" in n}
    for n, b in check.named_buffers():
        if n in stats:
            b.copy_(stats[n])
    with torch.no_grad():
        expected = float((check.eval()(xf).argmax(1) == yf).float().mean())
    assert r.score_with_original_bn_stats == pytest.approx(expected)
    assert r.holds_with_original_bn_stats == (expected == 0.0)
    assert not torch.equal(r.model.b1.running_mean, model.b1.running_mean)   # the result keeps its own stats
    assert r.to_dict()["score_with_original_bn_stats"] == r.score_with_original_bn_stats
    frozen = unlearn(model, xf, yf, method="neggrad", config=CFG.replace(bn="freeze", max_steps=3))
    # frozen statistics never change: the check is measured and equals the plain forget accuracy
    assert frozen.score_with_original_bn_stats == frozen.forget_accuracy


def test_summary_warns_when_forgetting_lives_in_bn_stats(setup):
    model, xf, yf, _, _ = setup
    r = unlearn(model, xf, yf, method="neggrad", config=CFG.replace(bn="train"))
    r.score_with_original_bn_stats = 0.25
    assert "WARNING" in r.summary() and "2 of 8" in r.summary()
    r.score_with_original_bn_stats = 0.0
    assert "WARNING" not in r.summary()


def test_nearest_forget_term_matches_a_hand_computation():
    from l2ul.methods import MethodContext, StepBatch, get_method

    logits = torch.tensor([[2.0, 1.0, 3.0], [0.5, 0.2, 0.1]])
    y = torch.tensor([2, 0])
    batch = StepBatch(torch.zeros(2, 1, 2, 2), y)
    term = get_method("neggrad").forget_term
    nearest = term(logits, batch, MethodContext("misclassify", UnlearnConfig(forget_loss="nearest")))
    # nearest wrong classes: row 0 -> class 0 (2.0 beats 1.0), row 1 -> class 1 (0.2 beats 0.1)
    assert float(nearest) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))))
    ascent = term(logits, batch, MethodContext("misclassify", UnlearnConfig()))
    assert float(ascent) == pytest.approx(-float(torch.nn.functional.cross_entropy(logits, y)))
    relabel = term(logits, StepBatch(batch.x_forget, torch.tensor([1, 2])),
                   MethodContext("relabel", UnlearnConfig(forget_loss="nearest")))     # relabel ignores it
    assert float(relabel) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2]))))
    with pytest.raises(ConfigError, match="forget_loss"):
        UnlearnConfig(forget_loss="sideways")


def test_nearest_forget_loss_with_frozen_bn(setup, runs):
    """Stated bounds (measured on this digits CNN: neggrad keeps 70.4% D_r with the nearest-class term and
    frozen BN against 25.3% with the paper's ascent; l2ul 83.7% against 80.5%)."""
    model, xf, yf, (xr, yr), _ = setup
    cfg = CFG.replace(bn="freeze", forget_loss="nearest")
    ng = unlearn(model, xf, yf, method="neggrad", config=cfg)
    l2 = unlearn(model, xf, yf, method="l2ul", config=cfg)
    assert ng.converged and l2.converged and ng.forget_accuracy == 0.0 and l2.forget_accuracy == 0.0
    assert accuracy(ng.model, xr, yr) >= accuracy(runs["neggrad"].model, xr, yr) + 0.3
    assert accuracy(l2.model, xr, yr) >= accuracy(model, xr, yr) - 0.25
    assert torch.equal(l2.model.b1.running_mean, model.b1.running_mean)       # frozen: statistics untouched


def test_divergence_is_reported(setup):
    model, xf, yf, _, _ = setup
    r = unlearn(model, xf, yf, method="neggrad", config=CFG.replace(lr=1e30, momentum=0.0, max_steps=50))
    assert r.status == "diverged" and not r.converged
    assert "non-finite" in r.message


def test_bad_inputs_raise_clear_errors(setup):
    model, xf, yf, retain, _ = setup
    with pytest.raises(RequestError, match="empty"):
        unlearn(model, xf[:0], yf[:0])
    with pytest.raises(RequestError, match=r"\[0, 1\]"):
        unlearn(model, xf * 255, yf)
    with pytest.raises(RequestError, match="one label per image"):
        unlearn(model, xf, yf[:3])
    with pytest.raises(RequestError, match="must lie in"):
        unlearn(model, xf, yf + 10)
    with pytest.raises(RequestError, match="needs targets"):
        unlearn(model, xf, yf, task="relabel")
    with pytest.raises(RequestError, match="differ"):
        unlearn(model, xf, yf, task="relabel", targets=yf)
    with pytest.raises(ConfigError, match="needs the remaining training data"):
        unlearn(model, xf, yf, method="oracle")
    with pytest.raises(ConfigError, match="uses only the forget set"):
        unlearn(model, xf, yf, method="l2ul", retain=retain)
    with pytest.raises(ConfigError, match="unknown method"):
        unlearn(model, xf, yf, method="nope")
    with pytest.raises(ConfigError, match="lr"):
        UnlearnConfig(lr=-1)
    with pytest.raises(ConfigError, match="bn"):
        UnlearnConfig(bn="sometimes")


def test_presets_and_device():
    cfg = UnlearnConfig.from_preset("utkface-resnet18")
    assert cfg.pgd_eps == 2.0 and cfg.adv_per_instance == 300
    assert UnlearnConfig.from_preset("cifar100-vit").adv_batch_size == 512
    with pytest.raises(ConfigError, match="available"):
        UnlearnConfig.from_preset("nope")
    assert l2ul.resolve_device("cpu").type == "cpu"
    assert l2ul.resolve_device().type in {"cpu", "cuda", "mps"}
