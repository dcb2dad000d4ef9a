"""Checks of l2ul.reports: JSON, tables, the paper table and plots."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from l2ul.errors import L2ULError
from l2ul.reports import (
    format_table,
    markdown_table,
    paper_table,
    plot_continual,
    plot_phase_times,
    plot_vs_k,
    read_json,
    to_jsonable,
    write_json,
)


def _records():
    """2 methods x 2 k x 2 seeds with hand-chosen values."""
    recs = []
    for k in (8, 32):
        for method in ("l2ul", "neggrad"):
            for seed in (0, 1):
                recs.append({
                    "method": method, "k": k, "seed": seed,
                    "acc_forget": 0.0 if method == "l2ul" else 0.25 * seed,
                    "acc_retain": 0.95 - 0.02 * seed,
                    "acc_test": (0.90, 0.80)[seed] if method == "l2ul" else 0.70,
                    "acc_forget_before": 1.0,
                    "acc_retain_before": (0.99, 0.97)[seed],
                    "acc_test_before": 0.91,
                    "mia_efficacy": 0.5, "mia_efficacy_before": 0.1,
                    "loss_auc": 0.6, "loss_auc_before": 0.9,
                    "steps": (10, 20)[seed], "converged": seed == 0,
                    "time_adversarial": (1.0, 2.0)[seed] if method == "l2ul" else None,
                    "time_importance": 0.5 if method == "l2ul" else None,
                    "time_optimization": 3.0 + k / 8,
                })
    return recs


def _row(block: str, name: str) -> list:
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in\n{block}")


def test_paper_table_mean_std():
    text = paper_table(_records())
    blocks = text.split("### ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["k = 8 (2 seeds)", "k = 32 (2 seeds)"]
    b8 = blocks[0]
    header = [c.strip() for c in b8.splitlines()[2].strip("|").split("|")]
    assert header[:4] == ["Method", "D_f (%)", "D_r (%)", "D_test (%)"]
    l2ul = _row(b8, "l2ul")
    assert l2ul[1] == "0.00 ± 0.00"
    assert l2ul[2] == "94.00 ± 1.41"  # 95, 93: sample std = sqrt(2)
    assert l2ul[3] == "85.00 ± 7.07"  # 90, 80: sample std = 5 * sqrt(2)
    assert l2ul[4] == "50.00 ± 0.00"  # MIA efficacy in %
    assert l2ul[5] == "0.600 ± 0.000"
    assert l2ul[6] == "15.0 ± 7.1"  # steps
    assert l2ul[7] == "1/2"  # converged
    assert l2ul[8:11] == ["1.50 ± 0.71", "0.50 ± 0.00", "4.00 ± 0.00"]
    assert l2ul[12] == "none"                      # data used: the model and the forget set only
    neg = _row(b8, "neggrad")
    assert neg[1] == "12.50 ± 17.68"  # 0 and 25
    assert neg[8:10] == ["-", "-"]  # no adversarial / importance phase
    before = _row(b8, "before")
    assert before[1:6] == ["100.00 ± 0.00", "98.00 ± 1.41", "91.00 ± 0.00", "10.00 ± 0.00", "0.900 ± 0.000"]
    assert before[6:] == ["-"] * 7
    # rows: before first, then methods in order of appearance
    names = [ln.strip("|").split("|")[0].strip() for ln in b8.splitlines()[4:] if ln.startswith("|")]
    assert names == ["before", "l2ul", "neggrad"]
    assert _row(blocks[1], "l2ul")[10] == "7.00 ± 0.00"


def test_paper_table_says_what_data_each_method_used_and_puts_remaining_data_methods_last():
    recs = _records()
    for r in recs:
        r["time_total"] = 10.0
    extra = [dict(r, method="oracle") for r in recs if r["method"] == "l2ul"]
    extra += [dict(r, method="repair", proxy="500 test images") for r in recs if r["method"] == "l2ul"]
    extra += [dict(r, method="repair_free", proxy="data-free: deepinversion") for r in recs if r["method"] == "l2ul"]
    text = paper_table(extra + recs)                # the oracle first in the records
    b8 = text.split("### ")[1]
    names = [ln.strip("|").split("|")[0].strip() for ln in b8.splitlines()[4:] if ln.startswith("|")]
    assert names == ["before", "repair", "repair_free", "l2ul", "neggrad", "oracle"]
    assert _row(b8, "oracle")[12] == "remaining data" and _row(b8, "repair")[12] == "unlabeled proxy"
    assert _row(b8, "repair_free")[12] == "-"       # not a registered method: unknown
    assert _row(b8, "neggrad")[11] == "10.00 ± 0.00"
    from l2ul.reports import _data_used

    assert _data_used("repair", [{"proxy": "data-free: deepinversion (1024 images)"}]) == "none"


def test_paper_table_marks_uninformative_mia():
    recs = _records()
    assert "†" not in paper_table(recs)  # no attack accuracy stored: nothing to judge, nothing marked
    for r in recs:
        r["mia_n_per_class"] = r["mia_n_per_class_before"] = 5000
        r["mia_attack_train_acc_before"] = 0.53  # z = 6: informative
        # neggrad at k = 8, seed 1: 0.51 -> z = 2 < 3, flagged; everything else informative
        r["mia_attack_train_acc"] = 0.51 if (r["method"], r["k"], r["seed"]) == ("neggrad", 8, 1) else 0.54
    text = paper_table(recs)
    b8, b32 = text.split("### ")[1:]
    assert _row(b8, "neggrad")[4] == "50.00 ± 0.00 †1/2"
    assert _row(b8, "l2ul")[4] == "50.00 ± 0.00" and _row(b8, "before")[4] == "10.00 ± 0.00"
    assert "†" not in b32.split("\n\n†")[0]
    assert text.rstrip().endswith("read the loss AUC instead.")


def test_paper_table_single_seed_and_missing():
    recs = [r for r in _records() if r["seed"] == 0]
    del recs[0]["loss_auc"]
    text = paper_table(recs)
    assert "(1 seed)" in text
    row = _row(text.split("### ")[1], "l2ul")
    assert row[3] == "90.00" and row[5] == "-"
    with pytest.raises(L2ULError):
        paper_table([])
    with pytest.raises(L2ULError, match="lacks"):
        paper_table([{"method": "x"}])


def test_format_and_markdown_table():
    rows = [{"name": "a", "acc": 0.5, "n": 3, "ok": True}, {"name": "long-name", "acc": 0.125, "n": None}]
    text = format_table(rows, ["name", ("acc", "accuracy"), "n", "ok"], floatfmt=".2f")
    assert text.splitlines() == [
        "name       accuracy  n   ok",
        "---------  --------  -  ---",
        "a              0.50  3  yes",
        "long-name      0.12  -    -",
    ]
    md = markdown_table([["a|b", 1.0]], {"x": "X", "y": "Y"}, floatfmt=".1f")
    assert md.splitlines() == ["| X | Y |", "|:---|---:|", "| a\\|b | 1.0 |"]


def test_write_json_roundtrip(tmp_path):
    obj = {
        "f32": np.float32(0.5), "i64": np.int64(3), "b": np.bool_(True), "arr": np.arange(3),
        "t": torch.tensor(2.5), "tv": torch.tensor([1, 2]), "p": Path("/x/y"), "nan": float("nan"),
        "tup": (1, 2), 4: "int key",
    }
    path = tmp_path / "sub" / "r.json"
    assert write_json(path, obj) == path
    back = read_json(path)
    assert back == {"f32": 0.5, "i64": 3, "b": True, "arr": [0, 1, 2], "t": 2.5, "tv": [1, 2], "p": "/x/y",
                    "nan": None, "tup": [1, 2], "4": "int key"}
    assert json.loads(path.read_text()) == back  # strict JSON
    # a failed write leaves the previous file intact and no temporary files
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert read_json(path) == back
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]
    assert to_jsonable(np.float64("inf")) is None


def test_read_json_errors(tmp_path):
    with pytest.raises(L2ULError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(L2ULError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def _check_png(path: Path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] > 100 and im.size[1] > 100
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".partial.png")] == []


def test_plots(tmp_path):
    recs = _records()
    _check_png(plot_vs_k(recs, tmp_path / "vs_k.png"))
    _check_png(plot_phase_times(recs, tmp_path / "times.png"))
    cont = []
    for method in ("l2ul", "neggrad"):
        for seed in (0, 1):
            for req in (1, 2, 3):
                cont.append({"method": method, "seed": seed, "request": req,
                             "acc_retain": 0.95 - 0.01 * req * (method == "neggrad"),
                             "acc_test": 0.9 - 0.02 * req, "acc_retain_before": 0.96, "acc_test_before": 0.91})
    _check_png(plot_continual(cont, tmp_path / "continual.png"))
    with pytest.raises(L2ULError):
        plot_vs_k([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
