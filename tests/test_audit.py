"""The audit page (l2ul.audit, ``l2ul audit``): rendered from a real ``l2ul unlearn`` report on digits, from
minimal and hostile reports, and opened in a real headless Chromium with no network."""
from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from l2ul.audit import (
    GENERATOR_MARKER,
    default_page_path,
    per_class_accuracy,
    render_audit_page,
    report_thumbnails,
    thumbnails_png,
    write_audit_page,
)
from l2ul.cli import main
from l2ul.errors import DataError
from l2ul.evaluation import MIA_MIN_SIGNAL_Z, Predictions, predict
from l2ul.membership import add_membership_evidence

FAST = ["--pgd-steps", "10", "--adv-per-instance", "2", "--pgd-eps", "0.5", "--max-steps", "300",
        "--retain-eval-size", "300", "--quiet", "--bn", "freeze"]
IDS = [3, 17, 42]
URL = re.compile(r"https?://", re.I)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Pretrain a small CNN on digits and unlearn 3 instances with neggrad: (base, out, report path)."""
    d = tmp_path_factory.mktemp("audit")
    base = d / "base.safetensors"
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--recipe", "quick", "--epochs", "3",
                 "--out", str(base), "--quiet"]) == 0
    out = d / "u.safetensors"
    rc = main(["unlearn", "--model", str(base), "--method", "neggrad", "--forget-ids", ",".join(map(str, IDS)),
               "--out", str(out), *FAST])
    assert rc == 0
    return base, out, Path(str(out) + ".report.json")


EXTRAS = ("thumbnails", "per_class_test")
EVIDENCE = ("loss_percentile", "loss_percentile_before", "calibrated_percentile")


@pytest.fixture(scope="module")
def raw_report(run):
    return json.loads(run[2].read_text())


@pytest.fixture(scope="module")
def report(raw_report):
    """The report without the optional audit extras, as pipelines before them wrote it."""
    rep = {k: v for k, v in copy.deepcopy(raw_report).items() if k not in EXTRAS}
    for row in rep["per_instance"]:
        for k in EVIDENCE:
            row.pop(k, None)
    return rep


@pytest.fixture(scope="module")
def rich_report(run, report):
    """The report with what the pipeline is to add: membership percentiles, per-class accuracy, thumbnails."""
    from l2ul.data import load_dataset
    from l2ul.models.io import load_model
    from l2ul.pipeline import retain_eval_subset

    base, out, _ = run
    bundle = load_dataset("digits")
    xf, yf = bundle.stack_train(IDS)
    retain = bundle.train_subset(retain_eval_subset(bundle, IDS, 300))
    original, unlearned = load_model(base), load_model(out)
    before = {"forget": predict(original, (xf, yf)), "retain": predict(original, retain),
              "test": predict(original, bundle.test)}
    after = {"forget": predict(unlearned, (xf, yf)), "test": predict(unlearned, bundle.test)}
    rep = copy.deepcopy(report)
    add_membership_evidence(rep["per_instance"], before, after)
    rep["per_class_test"] = per_class_accuracy(before["test"], after["test"], class_names=bundle.class_names)
    rep["thumbnails"] = report_thumbnails(xf, [r["id"] for r in rep["per_instance"]])
    return json.loads(json.dumps(rep))  # as it would be read back from the JSON file


def text_of(page: str) -> str:
    """The visible text of a page (tags dropped, entities decoded, whitespace collapsed)."""
    import html

    body = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


# --------------------------------------------------------------------------------------- real report
def test_page_from_a_real_report(report):
    page = render_audit_page(report)
    assert page.startswith("<!DOCTYPE html>") and GENERATOR_MARKER in page
    assert not URL.search(page), "the page must reference nothing on the network"
    assert "<script" not in page.lower() and "<link" not in page.lower()
    text = text_of(page)
    m = report["metrics"]
    assert report["holds_with_original_bn_stats"] is True                 # (FAST freezes batch norm)
    assert "Done: all 3 instance(s) are forgotten after" in text
    assert "the forgetting holds with the original batch-norm statistics" in text
    for i in IDS:
        assert re.search(rf"\b{i}\b", text)
    assert "neggrad" in text and "misclassify" in text and "none: only the model and the instances to forget" in text
    assert "D_test" in text and "D_r (remaining)" in text and "D_f (forget)" in text
    assert f"{100 * m['acc_test_before']:.2f}%" in text and f"{100 * m['acc_test']:.2f}%" in text
    assert f"{100 * m['agreement_test']:.1f}%" in text
    assert f"{m['loss_auc']:.3f}" in text and f"{100 * m['mia_efficacy']:.1f}%" in text
    assert ("Uninformative" in text) == (m["mia_signal_z"] < MIA_MIN_SIGNAL_Z)
    for sha in report["input_model"]["sha256"].values():
        assert sha in text
    assert report["output_model"]["sha256"] in text
    assert report["versions"]["torch"] in text and "optimization" in text and "pgd_steps" in text
    # no optional extras in a plain report: no image, percentile or chart
    assert "<img" not in page and "<svg" not in page and "loss percentile" not in text


def test_page_draws_the_extras_the_pipeline_adds(raw_report):
    """Once the pipeline stores thumbnails, per-class accuracy and percentiles, the page draws them as written."""
    page = render_audit_page(raw_report)
    assert not URL.search(page)
    rows = raw_report["per_instance"]
    assert ("thumbnails" in raw_report) == (page.count('<img class="thumb"') == len(rows))
    assert ("per_class_test" in raw_report) == ("<svg" in page)
    assert ("loss_percentile" in rows[0]) == ("loss percentile among unseen data" in text_of(page))


def test_page_with_thumbnails_percentiles_and_per_class_chart(rich_report):
    page = render_audit_page(rich_report)
    assert not URL.search(page)
    assert page.count('<img class="thumb"') == 3 and page.count('src="data:image/png;base64,') == 3
    assert "<svg" in page and "Accuracy change per class on D_test" in page
    text = text_of(page)
    assert "loss percentile among unseen data" in text and "calibrated percentile" in text
    assert "about 50 = looks like data the model never saw" in text and "over-forgotten" in text
    mean = np.mean([r["loss_percentile"] for r in rich_report["per_instance"]])
    assert f"Membership evidence: mean loss percentile among unseen data {mean:.0f}" in text
    for r in rich_report["per_instance"]:
        assert 0 <= r["loss_percentile"] <= 100 and 0 <= r["calibrated_percentile"] <= 100
        assert f"{r['loss_percentile_before']:.0f} → {r['loss_percentile']:.0f}" in text
    pc = rich_report["per_class_test"]
    assert [r["class"] for r in pc] == list(range(10)) and sum(r["n"] for r in pc) == rich_report["dataset"]["n_test"]
    assert sum(r["n"] * r["acc_before"] for r in pc) / sum(r["n"] for r in pc) == pytest.approx(
        rich_report["metrics"]["acc_test_before"], abs=1e-6)
    # thumbnails passed in replace the report's (by id or by str(id)); bad data is dropped, never linked
    page = render_audit_page(rich_report, thumbnails={3: np.zeros((8, 8, 3), np.uint8), "17": "not base64!"})
    assert page.count('<img class="thumb"') == 1


def test_minimal_and_diverged_reports_render():
    text = text_of(render_audit_page({}))
    assert "Status unknown" in text and "The report lists no per-instance outcome" in text
    diverged = {
        "status": "diverged", "converged": False, "steps": 9, "method": "neggrad", "task": "misclassify",
        "message": "non-finite loss at step 9", "holds_with_original_bn_stats": None,
        "metrics": {"acc_forget": None, "acc_forget_before": 1.0, "acc_retain": None, "acc_retain_before": 0.99,
                    "acc_test": None, "acc_test_before": 0.97, "mia_efficacy": None, "mia_efficacy_before": 0.1,
                    "loss_auc": None, "loss_auc_before": 0.7, "mia_signal_z": None},
        "per_instance": [{"id": 5, "label": 1, "target": None, "pred_before": 1, "pred_after": None,
                          "confidence_before": 0.9, "confidence_after": None, "forgotten": None}],
        "output_model": {"path": None, "sha256": None}, "timings_s": None, "phases": None, "config": None,
        "per_class_test": [{"class": 0, "name": "zero", "n": 3, "acc_before": 1.0, "acc_after": None}],
        "thumbnails": None, "versions": None, "request": None, "dataset": None,
    }
    page = render_audit_page(diverged)
    text = text_of(page)
    assert "Diverged after 9 steps" in text and "none was written" in text
    assert "97.00%" in text and "–" in text and "(not written)" in text
    assert "<svg" not in page  # no after-accuracy: no chart
    # other statuses and odd values
    text = text_of(render_audit_page({"status": "budget_exhausted", "steps": 300, "per_instance": [
        {"id": 1, "forgotten": False}, {"id": 2, "forgotten": True}, "junk"], "metrics": {"acc_test": "high"}}))
    assert "Not done: the step budget ran out after 300 steps" in text and "(1 of 2 instance(s) forgotten)" in text
    assert "NOT forgotten" in text
    assert "Evaluation only" in text_of(render_audit_page({"command": "evaluate", "metrics": {}}))


def test_every_report_string_is_escaped():
    evil = "<script>alert(1)</script>"
    rep = {"status": "converged", "method": evil, "task": evil, "steps": 1, "proxy": '"><img src=x>',
           "message": evil, "created": evil, "argv": ["--forget-ids", evil], "device": evil,
           "request": {"ids": [evil], "k": 1, "source": evil}, "dataset": {"spec": evil, "name": evil},
           "input_model": {"paths": [evil], "sha256": {evil: evil}, "arch": evil},
           "output_model": {"path": evil, "sha256": evil}, "versions": {evil: evil, "platform": evil},
           "config": {evil: evil}, "timings_s": {evil: 1.0}, "phases": [{"name": evil, "message": evil}],
           "per_instance": [{"id": evil, "label": evil, "target": evil, "pred_before": evil, "pred_after": evil,
                             "forgotten": True}],
           "per_class_test": [{"class": 0, "name": evil, "n": 1, "acc_before": 1.0, "acc_after": 0.5}],
           "thumbnails": {evil: evil}}
    page = render_audit_page(rep)
    assert "<script" not in page and "<img src=x>" not in page and 'src="x"' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not URL.search(page)


# ---------------------------------------------------------------------------------------------- pieces
def _png_size_and_pixels(data: bytes):
    """(width, height, colour type, raw scanlines) of a PNG written by l2ul (one IDAT, no interlace)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    idat = data.index(b"IDAT")
    n = struct.unpack(">I", data[idat - 4:idat])[0]
    return w, h, ctype, zlib.decompress(data[idat + 4:idat + 4 + n])


def test_thumbnails_are_small_nearest_upscaled_pngs():
    images = torch.zeros(2, 1, 8, 8)
    images[0, 0, 0, 0] = 1.0
    images[1, 0] = 0.5
    thumbs = thumbnails_png(images, ["a", "b"])
    w, h, ctype, raw = _png_size_and_pixels(thumbs["a"])
    assert (w, h, ctype) == (64, 64, 0) and len(raw) == 64 * 65
    rows = np.frombuffer(raw, np.uint8).reshape(64, 65)[:, 1:]
    assert (rows[:8, :8] == 255).all() and rows[8:, :].max() == 0 and rows[:, 8:].max() == 0  # 8x nearest
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(thumbs["b"]))
    assert img.size == (64, 64) and set(np.asarray(img).ravel().tolist()) == {128}
    rgb = thumbnails_png(torch.rand(1, 3, 32, 32), [7])[7]
    assert _png_size_and_pixels(rgb)[:3] == (64, 64, 2)
    big = thumbnails_png(torch.rand(1, 3, 224, 224), [0])[0]
    assert _png_size_and_pixels(big)[:2] == (112, 112)   # large images are shrunk, not inlined at full size
    b64 = report_thumbnails(images, [3, 17])
    assert set(b64) == {"3", "17"} and base64.b64decode(b64["3"]) == thumbs["a"]
    assert len(report_thumbnails(torch.zeros(5, 1, 8, 8), list(range(5)), limit=2)) == 2
    with pytest.raises(DataError, match="one id per image"):
        thumbnails_png(images, [1])


def test_per_class_accuracy_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    eye = torch.eye(3)
    before = Predictions(eye[[0, 0, 1, 1, 0, 2]], labels)      # class 1: 2 of 3
    after = Predictions(eye[[0, 1, 1, 1, 1, 0]], labels)       # class 0: 1 of 2, class 1: 3 of 3, class 2: 0
    rows = per_class_accuracy(before, after, class_names=["a", "b", "c"])
    assert [(r["class"], r["name"], r["n"]) for r in rows] == [(0, "a", 2), (1, "b", 3), (2, "c", 1)]
    assert [r["acc_before"] for r in rows] == pytest.approx([1.0, 2 / 3, 1.0])
    assert [r["acc_after"] for r in rows] == pytest.approx([0.5, 1.0, 0.0])
    assert [r["change"] for r in rows] == pytest.approx([-0.5, 1 / 3, -1.0])
    four = Predictions(torch.eye(4)[[0, 1]], torch.tensor([0, 1]))
    assert per_class_accuracy(four)[3] == {"class": 3, "name": None, "n": 0, "acc_before": None,
                                           "acc_after": None, "change": None}
    with pytest.raises(DataError, match="different samples"):
        per_class_accuracy(before, Predictions(eye[[0]], torch.tensor([0])))


def test_write_audit_page_is_atomic_and_default_path(tmp_path, report):
    p = write_audit_page(report, tmp_path / "sub" / "page.html")
    assert p.read_text(encoding="utf-8") == render_audit_page(report)
    assert not [q for q in p.parent.iterdir() if q.name.endswith(".partial")]
    assert default_page_path("x/OUT.report.json") == Path("x/OUT.report.html")
    assert default_page_path("r.JSON") == Path("r.html") and default_page_path("r.txt") == Path("r.txt.html")


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def audit_cli(monkeypatch):
    """``l2ul audit`` through ``l2ul.cli.main`` (registered here until l2ul.cli lists it)."""
    import l2ul.cli as cli
    from l2ul.cli import audit

    monkeypatch.setitem(cli._COMMANDS, "audit", (audit, "write the HTML audit page of an unlearn report",
                                                 "Write the HTML audit page of an `l2ul unlearn` report."))

    def run_cli(capsys, *argv):
        rc = main(["audit", *map(str, argv)])
        cap = capsys.readouterr()
        return rc, cap.out, cap.err

    return run_cli


def test_cli_audit(audit_cli, capsys, tmp_path, rich_report):
    src = tmp_path / "OUT.report.json"
    src.write_text(json.dumps(rich_report))
    rc, out, err = audit_cli(capsys, src)
    page = tmp_path / "OUT.report.html"
    assert rc == 0, err
    assert page.is_file() and str(page) in out and "converged" in out
    html = page.read_text(encoding="utf-8")
    assert html == render_audit_page(rich_report) and html.count('<img class="thumb"') == 3
    assert audit_cli(capsys, src)[0] == 0            # an audit page is replaced without --overwrite
    other = tmp_path / "notes.html"
    other.write_text("mine")
    rc, _, err = audit_cli(capsys, src, "--out", other)
    assert rc == 2 and "already exists" in err and other.read_text() == "mine"
    assert audit_cli(capsys, src, "--out", other, "--overwrite")[0] == 0 and GENERATOR_MARKER in other.read_text()
    rc, _, err = audit_cli(capsys, src, "--out", src, "--overwrite")
    assert rc == 2 and "input" in err and json.loads(src.read_text()) == rich_report
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    rc, _, err = audit_cli(capsys, bad)
    assert rc == 2 and "not a report of `l2ul unlearn`" in err
    bad.write_text("{trunc")
    assert audit_cli(capsys, bad)[0] == 2
    rc, _, err = audit_cli(capsys, tmp_path / "missing.json")
    assert rc == 2 and "does not exist" in err


# -------------------------------------------------------------------------------------------- the browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _no_network_prefix():
    """``unshare -rn`` (a network namespace with no interfaces) where the kernel allows it, else nothing: the
    page's Content-Security-Policy and Chromium's flags then keep it offline."""
    unshare = shutil.which("unshare")
    if unshare:
        try:
            if subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=20).returncode == 0:
                return [unshare, "-rn"]
        except (OSError, subprocess.SubprocessError):
            pass
    return []


def test_page_in_headless_chromium(tmp_path, rich_report):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary found (install the Debian package `chromium`; .ci/run does)")
    page = write_audit_page(rich_report, tmp_path / "OUT.report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    cmd = [*_no_network_prefix(), browser, *flags]
    url = page.resolve().as_uri()
    dom = subprocess.run([*cmd, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = text_of(dom.stdout)
    assert "Done: all 3 instance(s) are forgotten" in text
    verdict = re.search(r'id="verdict"[^>]*>([^<]+)<', dom.stdout)
    assert verdict and verdict.group(1).startswith("Done")
    assert "D_test" in text and re.search(r"\b17\b", text) and "calibrated percentile" in text
    shot = tmp_path / "page.png"
    res = subprocess.run([*cmd, "--window-size=1200,2400", f"--screenshot={shot}", url], capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400) and shot.stat().st_size > 20_000
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50      # text, tables, thumbnails, chart: not a blank page
    if any((r["change"] or 0) < 0 for r in rich_report["per_class_test"]):
        red = np.asarray(img)[..., 0].astype(int) - np.asarray(img)[..., 1]
        assert (red > 100).sum() > 50                      # the chart's red bars were drawn


def test_the_verdict_of_a_deletion_that_does_not_hold_says_so(raw_report):
    """A converged run whose forgetting lives in drifted batch-norm statistics is not "Done" on the page."""
    from l2ul.audit.page import verdict

    report = {**raw_report, "holds_with_original_bn_stats": False, "score_with_original_bn_stats": 2 / 3}
    cls, line = verdict(report)
    assert cls == "bad" and line.startswith("Does not hold: all 3 instance(s) met the request")
    assert "2 of 3 instance(s) would be predicted as their label again" in line and "Done" not in line


def test_the_verdict_counts_earlier_requests_instances_back_on_their_label(raw_report):
    """A converged request with --keep-forgotten: the page says whether the earlier instances stay forgotten,
    and a report with one back on its label is not "Done"."""
    from l2ul.audit.page import verdict

    report = {**raw_report, "holds_with_original_bn_stats": True}
    cls, line = verdict({**report, "kept_forgotten": {"n": 5, "back_on_label": 0}})
    assert cls == "ok" and line.endswith("the 5 instance(s) of earlier requests stay off their label")
    cls, line = verdict({**report, "kept_forgotten": {"n": 5, "back_on_label": 2}})
    assert cls == "bad" and line.startswith("Does not hold") and "2 of 5 instance(s) of earlier requests" in line
    assert "Done" not in line
