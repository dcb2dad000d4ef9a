"""The ``unseen`` task (forget as if never seen, issue #13): the bands it targets, the engine's check, the
``repair`` method reaching it and keeping it through its repair, the reference set's loading and refusals,
and the CLI and bench paths."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _cli_helpers import FAST, assert_user_error, pretrain_digits, run
from _digits import DigitsCNN, digits_setup
from l2ul import UnlearnConfig, unlearn
from l2ul.errors import ConfigError, DataError, RequestError
from l2ul.unseen import band_violation, in_band, reference_bands, soft_margin

K = 16
CFG = UnlearnConfig(seed=0, proxy_holdout=60)


def test_soft_margin_is_the_cross_entropy_through_softplus():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g) * 4
    y = torch.randint(0, 7, (50,), generator=g)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(F.softplus(soft_margin(logits, y)), ce, atol=1e-5)
    # s < 0 implies the row is classified right
    s = soft_margin(logits, y)
    assert bool((logits.argmax(1)[s < 0] == y[s < 0]).all())


class _Fixed(torch.nn.Module):
    """A 'model' whose logits are the first two pixels: (z_0, z_1) = (x[0], x[1]) scaled, so every soft
    margin is known by hand."""

    def forward(self, x):
        return x.flatten(1)[:, :2] * 10


def test_bands_are_the_reference_quantiles_in_the_order_of_difficulty():
    """Reference soft margins 0.1, 0.2, ..., 10.0 (100 images of label 1 with z_1 - z_0 known): for k = 4
    forget instances, the easiest (lowest original soft margin) gets the band around the 1/8 quantile, the
    hardest the one around 7/8, each 1/4 wide."""
    d = torch.linspace(0.01, 1.0, 100)                       # z_0 - z_1 = 10 d; label 1: s = log(e^{z0}) - z1
    x = torch.zeros(100, 1, 1, 2)
    x[:, 0, 0, 0] = d
    y = torch.ones(100, dtype=torch.long)
    ref_s = soft_margin(_Fixed()(x), y)
    assert torch.allclose(ref_s, 10 * d, atol=1e-5)
    forget_logits = torch.tensor([[0.0, 5.0], [0.0, 1.0], [0.0, 9.0], [0.0, 3.0]])   # s = -5, -1, -9, -3
    rb = reference_bands(_Fixed(), (x, y), forget_logits, torch.ones(4, dtype=torch.long), band=0.5,
                         device=torch.device("cpu"))
    order = [2, 0, 3, 1]                                     # easiest (s = -9) first
    for rank, i in enumerate(order):
        lo, hi = rb.quantiles[i].tolist()
        assert lo == pytest.approx(rank / 4) and hi == pytest.approx((rank + 1) / 4)
        assert float(rb.bands[i, 0]) == pytest.approx(float(torch.quantile(ref_s.double(), rank / 4)), abs=1e-4)
    assert rb.n_reference == 100 and rb.reference_accuracy == 0.0    # every reference image is wrong here
    # unseen_band caps the width: one instance gets the middle fifth, not the whole distribution
    one = reference_bands(_Fixed(), (x, y), forget_logits[:1], torch.ones(1, dtype=torch.long), band=0.2,
                          device=torch.device("cpu"))
    assert one.quantiles[0].tolist() == pytest.approx([0.4, 0.6])


def test_band_violation_is_zero_only_inside_the_band_with_its_margin():
    bands = torch.tensor([[-2.0, 2.0]] * 5)
    y = torch.zeros(5, dtype=torch.long)
    # two classes: s = z_1 - z_0
    logits = torch.stack([torch.zeros(5), torch.tensor([-3.0, -1.5, 0.0, 1.5, 3.0])], 1)
    v = band_violation(logits, y, bands, margin=1.0)        # margin capped at width / 4 = 1
    assert v.tolist() == pytest.approx([2.0, 0.5, 0.0, 0.5, 2.0])
    assert in_band(soft_margin(logits, y), bands).tolist() == [False, True, True, True, False]


@pytest.fixture(scope="module")
def overfit():
    """A digits CNN trained to memorise 100 images for 100 epochs (unseen accuracy 93%, loss AUC of its
    training images against the test split 0.77): a model whose training instances have lower losses than
    unseen ones, so "looking unseen" is a real change. Reference: 180 test images; the other 180 measure
    the loss AUC."""
    _, xtr, ytr, xte, yte = digits_setup()
    xs, ys = xtr[:100], ytr[:100]
    torch.manual_seed(0)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        perm = torch.randperm(100, generator=g)
        for i in range(0, 100, 50):
            b = perm[i:i + 50]
            net.train()
            opt.zero_grad()
            F.cross_entropy(net(xs[b]), ys[b]).backward()
            opt.step()
    net.eval()
    ids = torch.randperm(100, generator=torch.Generator().manual_seed(1))[:K]
    return net, xs[ids], ys[ids], (xte[:180], yte[:180]), (xte[180:], yte[180:]), xtr[300:900]


def _losses(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def _auc(model, xf, yf, held):
    """The loss AUC of D_f against held-out images (as l2ul.privacy.loss_auc: 0.5 = like unseen data)."""
    from sklearn.metrics import roc_auc_score

    lf, lh = _losses(model, xf, yf).numpy(), _losses(model, *held).numpy()
    return roc_auc_score(np.r_[np.ones(len(lf)), np.zeros(len(lh))], -np.r_[lf, lh])


@pytest.fixture(scope="module")
def unseen_run(overfit):
    net, xf, yf, ref, held, proxy = overfit
    trace = []
    r = unlearn(net, xf, yf, task="unseen", reference=ref, data={"proxy": proxy}, config=CFG,
                callback=lambda step, score: trace.append(score))
    return r, trace


def test_unseen_makes_the_forget_set_look_like_held_out_data(overfit, unseen_run):
    """Measured here: the original's loss AUC of D_f against 180 held-out images is 0.77 (D_f memorised);
    after the unseen task 0.52 (0.65 without the repair's logit term, which keeps the confidence scale), with
    D_f accuracy near the reference accuracy, while the misclassify task overshoots to an AUC near 0 (every
    instance wrong, its loss above almost every unseen one)."""
    net, xf, yf, ref, held, proxy = overfit
    r, _ = unseen_run
    assert r.converged and r.task == "unseen"
    before, after = _auc(net, xf, yf, held), _auc(r.model, xf, yf, held)
    assert before > 0.7, before
    assert abs(after - 0.5) <= 0.1, after
    no_logit = unlearn(net, xf, yf, task="unseen", reference=ref, data={"proxy": proxy},
                       config=CFG.replace(unseen_logit_weight=0.0))
    assert _auc(no_logit.model, xf, yf, held) > after + 0.05
    acc_f = float((r.model(xf).argmax(1) == yf).float().mean())
    assert abs(acc_f - r.unseen["reference_accuracy"]) <= 0.2, (acc_f, r.unseen["reference_accuracy"])
    mis = unlearn(net, xf, yf, task="misclassify", data={"proxy": proxy}, config=CFG)
    assert _auc(mis.model, xf, yf, held) < 0.2


def test_unseen_repair_keeps_the_bands_and_the_audit_is_on_the_final_model(overfit, unseen_run):
    """Phase 1 reaches the original's bands, and the model the repair returns lies in them (the engine rolls
    back to the last step where it did). The result's per-instance verdict is an audit against bands re-read
    from the final model on the whole reference, whatever it finds; held-out accuracy stays within 3 points
    of the original's."""
    net, xf, yf, ref, held, proxy = overfit
    r, trace = unseen_run
    assert [p["name"] for p in r.phases] == ["optimization", "repair"]
    n1, n2 = r.phases[0]["steps"], r.phases[1]["steps"]
    assert n2 > 0 and trace[n1 - 1] == 1.0 and r.converged
    with torch.no_grad():
        loss_f = F.cross_entropy(r.model(xf), yf, reduction="none")
    for v, (lo, hi) in zip(loss_f.tolist(), r.unseen["loss_bands"]):      # the original's bands, as losses
        assert lo * (1 - 1e-4) <= v <= hi * (1 + 1e-4), (v, lo, hi)
    audit = r.unseen
    assert audit["band_rereads"] == 0 and len(audit["final_loss_bands"]) == K
    with torch.no_grad():                       # the audit's bands are the final model's reference quantiles
        s_ref = soft_margin(r.model(ref[0]), ref[1]).double()
        s_f = soft_margin(r.model(xf), yf).double()
    q = torch.tensor(audit["quantile_bands"]).double()
    expect = F.softplus(torch.quantile(s_ref, q.flatten()).view(q.shape)).float()
    assert torch.allclose(torch.tensor(audit["final_loss_bands"]), expect, rtol=1e-4, atol=1e-7)
    for i, inst in enumerate(audit["instances"]):
        pct = float((s_ref < s_f[i]).double().mean())
        assert inst["percentile"] == pytest.approx(100 * pct)
        lo, hi = q[i].tolist()
        assert inst["near_band"] == (inst["in_band"] or lo - (hi - lo) <= pct <= hi + (hi - lo))
    acc = lambda m: float((m(held[0]).argmax(1) == held[1]).float().mean())   # noqa: E731
    assert acc(r.model) >= acc(net) - 0.03
    assert r.holds_with_original_bn_stats


def test_unseen_settling_phase_rereads_the_bands_from_the_repaired_model(overfit):
    net, xf, yf, ref, _, proxy = overfit
    r = unlearn(net, xf, yf, task="unseen", reference=ref, data={"proxy": proxy},
                config=CFG.replace(repair_steps=50, settle_steps=30))
    assert [p["name"] for p in r.phases] == ["optimization", "repair", "settle"]
    assert r.unseen["band_rereads"] == 1 and r.phases[2]["steps"] > 0


def test_unseen_refusals(overfit):
    net, xf, yf, ref, _, _ = overfit
    with pytest.raises(RequestError, match="reference"):
        unlearn(net, xf, yf, task="unseen", config=CFG)
    with pytest.raises(RequestError, match="only by task 'unseen'"):
        unlearn(net, xf, yf, task="misclassify", reference=ref, config=CFG)
    with pytest.raises(ConfigError, match="supports only tasks 'misclassify', 'relabel', not 'unseen'; methods that do 'unseen': repair"):
        unlearn(net, xf, yf, method="neggrad", task="unseen", reference=ref, config=CFG)
    with pytest.raises(RequestError, match="at least 20"):
        unlearn(net, xf, yf, task="unseen", reference=(ref[0][:5], ref[1][:5]), config=CFG)
    with pytest.raises(RequestError, match="labels must lie"):
        unlearn(net, xf, yf, task="unseen", reference=(ref[0], ref[1] + 10), config=CFG)
    with pytest.raises(RequestError, match="one label per image"):
        unlearn(net, xf, yf, task="unseen", reference=(ref[0], ref[1][:-1]), config=CFG)


def _digits_npz(tmp_path, split, n, labels=True):
    from l2ul.data import load_dataset, stack

    b = load_dataset("digits")
    x, y = stack(b.test if split == "test" else b.train, list(range(n)))
    path = tmp_path / f"{split}{n}.npz"
    np.savez(path, **({"x": x.numpy(), "y": y.numpy()} if labels else {"x": x.numpy()}))
    return path


def test_reference_specs(tmp_path):
    from PIL import Image

    from l2ul.reference import load_reference

    npz = _digits_npz(tmp_path, "test", 40)
    x, y = load_reference(f"npz:{npz}", image_shape=(1, 8, 8), num_classes=10)
    assert x.shape == (40, 1, 8, 8) and y.dtype == torch.int64 and len(y) == 40
    with pytest.raises(DataError, match="no key 'y'"):
        load_reference(f"npz:{_digits_npz(tmp_path, 'test', 30, labels=False)}", image_shape=(1, 8, 8),
                       num_classes=10)
    with pytest.raises(DataError, match="labels lie in"):
        load_reference(f"npz:{npz}", image_shape=(1, 8, 8), num_classes=3)
    root = tmp_path / "ref"
    for c, name in ((0, "zero"), (1, "1")):           # by class name, or by index
        (root / name).mkdir(parents=True)
        for j in range(3):
            Image.fromarray(np.full((8, 8), 40 * j + c, dtype=np.uint8)).save(root / name / f"{j}.png")
    x, y = load_reference(f"imagefolder:{root}", image_shape=(1, 8, 8), num_classes=10,
                          class_names=["zero"] + [str(i) for i in range(1, 10)])
    assert y.tolist() == [1, 1, 1, 0, 0, 0] and x.shape == (6, 1, 8, 8)   # sorted by path: "1/" before "zero/"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "loose.png")
    with pytest.raises(DataError, match="not inside a class sub-folder"):
        load_reference(f"imagefolder:{root}", image_shape=(1, 8, 8), num_classes=10)


def test_cli_unseen_end_to_end(tmp_path, capsys):
    model = pretrain_digits(tmp_path / "m.safetensors")
    ref = _digits_npz(tmp_path, "test", 180)
    out = tmp_path / "u.safetensors"
    rc, stdout, err = run(capsys, "unlearn", "--model", model, "--dataset", "digits", "--forget-random", "8",
                          "--reference-data", f"npz:{ref}", "--out", out, *FAST)
    assert rc == 0, err
    assert "verdict: HOLDS" in stdout and "band of unseen-data losses" in stdout
    rep = json.loads((tmp_path / "u.safetensors.report.json").read_text())
    assert rep["task"] == "unseen" and rep["request"]["task"] == "unseen"
    assert "180 labeled images" in rep["unseen"]["reference"]
    # each instance's verdict is the audit against its band re-read from the released model
    rows = rep["per_instance"]
    assert all(r["in_band"] == (r["loss_band"][0] <= r["loss_after"] <= r["loss_band"][1]) for r in rows)
    assert all(r["forgotten"] or not r["in_band"] for r in rows)
    assert all(0 <= r["reference_percentile"] <= 100 and len(r["quantile_band"]) == 2 for r in rows)
    assert rep["metrics"]["forget_success"] == pytest.approx(sum(r["forgotten"] for r in rows) / len(rows))
    assert rep["unseen"]["final_loss_bands"] == [r["loss_band"] for r in rows]
    page = (tmp_path / "u.safetensors.report.html").read_text()
    assert "look like data the model never saw" in page and "held-out reference" in page
    _check_in_browser(tmp_path / "u.safetensors.report.html", tmp_path, rows)
    # the training split is never a reference; a method without the task is refused before any work
    train_ref = _digits_npz(tmp_path, "train", 100)
    rc, _, err = run(capsys, "unlearn", "--model", model, "--dataset", "digits", "--forget-random", "8",
                     "--reference-data", f"npz:{train_ref}", "--out", tmp_path / "t.safetensors", *FAST)
    assert_user_error(rc, err, "training split")
    rc, _, err = run(capsys, "unlearn", "--model", model, "--dataset", "digits", "--forget-random", "8",
                     "--reference-data", f"npz:{ref}", "--method", "neggrad", "--out", tmp_path / "n.safetensors",
                     *FAST)
    assert_user_error(rc, err, "unseen")
    rc, _, err = run(capsys, "unlearn", "--model", model, "--dataset", "digits", "--forget-random", "8",
                     "--reference-data", f"npz:{ref}", "--relabel-to", "random", "--out", tmp_path / "r.safetensors",
                     *FAST)
    assert_user_error(rc, err, "exclude")


def _check_in_browser(page, tmp_path, rows):
    """The unseen run's audit page as headless Chromium renders it (offline): the task, the reference and each
    instance's loss band (skipped without a browser, as the audit tests)."""
    import subprocess

    from test_audit import _chromium, _no_network_prefix, text_of

    browser = _chromium()
    if browser is None:
        return
    dom = subprocess.run([*_no_network_prefix(), browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = text_of(dom.stdout)
    assert "Task unseen: each forget instance must look like data the model never saw" in text
    assert "held-out reference (labeled, never the training split)" in text
    assert "its band of unseen-data losses" in text and f"{rows[0]['loss_after']:.3g}" in text


def test_bench_unseen_task(tmp_path):
    from l2ul.bench import run_bench
    from l2ul.data import load_dataset

    bundle, model = load_dataset("digits"), digits_setup()[0]
    kw = dict(methods=["repair"], ks=[8], seeds=[0], config=UnlearnConfig(repair_steps=50, synth_images=64),
              retain_eval_size=300, log=None, progress=False, mia_max_samples=200)
    with pytest.raises(ConfigError, match="proxy-test-split"):
        run_bench(model, bundle, out_dir=tmp_path / "x", task="unseen", **kw)
    with pytest.raises(ConfigError, match="neggrad"):
        run_bench(model, bundle, out_dir=tmp_path / "y", task="unseen", proxy_test_split=180,
                  **{**kw, "methods": ["repair", "neggrad"]})
    (rec,) = run_bench(model, bundle, out_dir=tmp_path / "u", task="unseen", proxy_test_split=180, **kw)
    assert rec["converged"] and rec["n_test"] == 180
    assert 0.5 < rec["reference_accuracy"] <= 1.0
    cell = json.loads((tmp_path / "u" / "cells" / "repair_k8_s0.report.json").read_text())
    assert cell["task"] == "unseen" and "180 labeled test images" in cell["unseen"]["reference"]
    assert rec["forget_success"] == pytest.approx(np.mean([r["forgotten"] for r in cell["per_instance"]]))
    settings = json.loads((tmp_path / "u" / "settings.json").read_text())
    assert settings["hashed"]["task"] == "unseen"
