"""The audit page: one self-contained HTML file that reads top to bottom (verdict, request, instances, model,
privacy, provenance). Every value from the report is escaped; every optional key may be missing."""
from __future__ import annotations

import html
import math
import shlex
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .images import lookup_thumbnail, png_data_uri
from .per_class import per_class_chart_svg

#: in the <head> of every page (``l2ul audit`` replaces an existing file only if it carries it)
GENERATOR_MARKER = '<meta name="generator" content="l2ul audit">'

#: percentiles flagged on the page: an instance like unseen data lands outside [5, 95] one time in ten
FLAG_LOW, FLAG_HIGH = 5.0, 95.0


# no network: the page may load nothing but its own inline styles and data: images
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;
max-width:1100px;margin:0 auto;padding:20px 28px 48px;background:#fff}
h1{font-size:22px;margin:4px 0 12px}h3{font-size:15px;margin:18px 0 6px}h2{font-size:18px;margin:30px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{font-size:17px;padding:12px 16px;border-radius:6px;border-left:6px solid;margin:8px 0}
.ok{background:#e8f5e9;border-color:#2e7d32}.warn{background:#fff8e1;border-color:#f9a825}
.bad{background:#fdecea;border-color:#c62828}.unknown{background:#f1f1f1;border-color:#888}
.warning{color:#8a5300;font-weight:600}
table{border-collapse:collapse;margin:6px 0 10px}th,td{padding:4px 10px;border-bottom:1px solid #e6e6e6;
text-align:left;vertical-align:middle}th{background:#f6f6f6;font-weight:600}td.n{text-align:right;
font-variant-numeric:tabular-nums}dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;margin:6px 0}
dt{font-weight:600;color:#444}dd{margin:0}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;
word-break:break-all}.note{color:#555;font-size:13.5px;margin:4px 0 8px}.yes{color:#1b5e20;font-weight:600}
.no{color:#b71c1c;font-weight:600}img.thumb{image-rendering:pixelated;width:64px;height:auto;display:block;
border:1px solid #ccc}.chart .neg{fill:#c62828}.chart .pos{fill:#2e7d32}.chart .none{fill:#999}
.chart .zero{stroke:#333;stroke-width:1}.chart text{font-size:12px;fill:#333}.chart .axis{fill:#777}
.cfg{column-width:250px;column-gap:24px;font-size:14px}.cfg div{break-inside:avoid;padding:1px 0}
.id{word-break:normal;white-space:nowrap}footer{margin-top:36px;color:#777;font-size:12.5px}
"""


# ---------------------------------------------------------------------------------------------- formatting
def e(x: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape("" if x is None else str(x), quote=True)


def num(v: Any) -> Optional[float]:
    """``v`` as a finite float, else ``None`` (missing, null, NaN, a string, a bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def pct(v: Any, digits: int = 1) -> str:
    v = num(v)
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def fixed(v: Any, digits: int = 3) -> str:
    v = num(v)
    return "–" if v is None else f"{v:.{digits}f}"


def pp(after: Any, before: Any) -> str:
    a, b = num(after), num(before)
    return "–" if a is None or b is None else f"{100 * (a - b):+.1f} pp"


def d(x: Any) -> Dict[str, Any]:
    return x if isinstance(x, Mapping) else {}


def lst(x: Any) -> List[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table from pre-escaped cell HTML; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>"
                                    for j, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _dl(items: Sequence[tuple]) -> str:
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items if v is not None) + "</dl>"


# ------------------------------------------------------------------------------------------------- verdict
def _instances(report: Mapping[str, Any]) -> List[Dict[str, Any]]:
    return [r for r in lst(report.get("per_instance")) if isinstance(r, Mapping)]


def verdict(report: Mapping[str, Any]) -> tuple:
    """``(css class, plain-text verdict line)`` from the status and the batch-norm check."""
    status = report.get("status")
    rows = _instances(report)
    k = len(rows) or num(d(report.get("request")).get("k")) or 0
    k = int(k)
    done = sum(1 for r in rows if r.get("forgotten") is True)
    steps = report.get("steps")
    steps_txt = f" after {int(steps)} steps" if num(steps) is not None else ""
    task = report.get("task") or d(report.get("request")).get("task")
    if status == "converged":
        what = {"relabel": "each is predicted as its target",
                "unseen": "each one's loss lies in its band of the losses of data the model never saw"}.get(
            task, "none of them is predicted as its label any more")
        cls, line = "ok", f"Done: all {k} instance(s) are forgotten{steps_txt}; {what}"
        holds = report.get("holds_with_original_bn_stats")
        if holds is True:
            line += "; the forgetting holds with the original batch-norm statistics"
        elif holds is False:
            cls = "bad"
            score = num(report.get("score_with_original_bn_stats"))
            if score is not None and k:
                bad = round(score * k) if task != "relabel" else round((1 - score) * k)
                which = f"{bad} of {k} instance(s) would "
            else:
                which = "some instances would "
            line = (f"Does not hold: all {k} instance(s) met the request{steps_txt}, but only through drifted "
                    "batch-norm statistics (not a deletion: exit code 5, no model written unless kept on purpose)")
            line += (f". With the original batch-norm running statistics, {which}"
                     + ("be predicted as their label again" if task != "relabel" else "miss their target")
                     + ": the forgetting lives in drifted running statistics, and recalibrating batch norm on "
                       "clean data would undo it")
        kept = d(report.get("kept_forgotten"))
        n_kept, back = num(kept.get("n")), num(kept.get("back_on_label"))
        if n_kept is not None and back is not None:
            if back > 0:
                cls = "bad"
                line = (f"Does not hold: all {k} instance(s) met the request{steps_txt}, but {int(back)} of "
                        f"{int(n_kept)} instance(s) of earlier requests (kept forgotten) are predicted as their "
                        "label again (exit code 5, no model written unless kept on purpose)")
            elif cls == "ok":
                line += f"; the {int(n_kept)} instance(s) of earlier requests stay off their label"
    elif status == "budget_exhausted":
        cls = "bad"
        line = (f"Not done: the step budget ran out{steps_txt} before the request was met"
                + (f" ({done} of {k} instance(s) forgotten)" if rows else ""))
    elif status == "diverged":
        cls = "bad"
        line = (f"Diverged{steps_txt}: the optimisation produced non-finite values; do not use its model"
                + ("" if d(report.get("output_model")).get("path") else " (none was written)"))
    elif report.get("command") == "evaluate":
        cls, line = "unknown", "Evaluation only: this report measures a model; no unlearning ran"
    else:
        cls = "unknown"
        line = ("Status unknown: the report does not say whether the request was met" if status is None
                else f"Status {status}: not a status this page knows")
    return cls, line


def membership_summary(rows: List[Dict[str, Any]]) -> Optional[str]:
    """One plain line on the per-instance membership percentiles after unlearning, or ``None`` without them."""
    key = "calibrated_percentile" if any(num(r.get("calibrated_percentile")) is not None for r in rows) \
        else "loss_percentile"
    vals = [num(r.get(key)) for r in rows if num(r.get(key)) is not None]
    raw = [num(r.get("loss_percentile")) for r in rows if num(r.get("loss_percentile")) is not None]
    if not vals:
        return None
    low, high = sum(v < FLAG_LOW for v in vals), sum(v > FLAG_HIGH for v in vals)
    line = (f"Membership evidence: mean loss percentile among unseen data {sum(raw) / len(raw):.0f}" if raw else
            "Membership evidence:")
    line += " (about 50 = like data the model never saw)"
    flags = [f"{low} still known" if low else "", f"{high} over-forgotten" if high else ""]
    what = "calibrated percentile" if key == "calibrated_percentile" else "loss percentile"
    line += (f"; flagged by the {what}: " + " and ".join(f for f in flags if f) + f" of {len(vals)}"
             if low or high else f"; no instance flagged by the {what}")
    return line + "."


def _data_used(report: Mapping[str, Any]) -> str:
    ref = d(report.get("unseen")).get("reference")
    ref_txt = f"; held-out reference (labeled, never the training split): {e(ref)}" if ref else ""
    if report.get("proxy"):
        return f"proxy images: {e(report['proxy'])} (unlabeled; never the training data of the request){ref_txt}"
    if report.get("note_retain"):
        return f"the remaining training data: {e(report['note_retain'])}"
    if ref_txt:
        return "data-free repair (no proxy images)" + ref_txt
    return "none: only the model and the instances to forget"


def _asked(report: Mapping[str, Any], rows: List[Dict[str, Any]]) -> str:
    req = d(report.get("request"))
    ids = [r.get("id") for r in rows] or lst(req.get("ids"))
    k = len(ids) or req.get("k")
    shown = ", ".join(e(i) for i in ids[:30]) + (f", … and {len(ids) - 30} more" if len(ids) > 30 else "")
    task = report.get("task") or req.get("task")
    task_txt = {"misclassify": "misclassify: no forget instance may be predicted as its label",
                "relabel": "relabel: each forget instance must be predicted as its target",
                "unseen": "unseen: each forget instance must look like data the model never saw (its loss in a "
                          "band of the losses of a held-out reference set)"}.get(task, task)
    ds = d(report.get("dataset"))
    ds_txt = None
    if ds:
        ds_txt = e(ds.get("spec") or ds.get("name"))
        if num(ds.get("n_train")) is not None:
            ds_txt += f" ({int(ds['n_train'])} training, {e(ds.get('n_test'))} test images)"
    inp = d(report.get("input_model"))
    model_txt = None
    if inp:
        paths = lst(inp.get("paths"))
        model_txt = (", ".join(f"<code>{e(p)}</code>" for p in paths) or "(given in memory)") + (
            f" (arch {e(inp['arch'])})" if inp.get("arch") else "")
    return _dl([
        ("Forget", f"{e(k)} instance(s): <span class=\"mono\">{shown or '–'}</span>"),
        ("Selected by", f"<code>{e(req['source'])}</code>" if req.get("source") else None),
        ("Task", e(task_txt) if task_txt else None),
        ("Method", e(report.get("method")) if report.get("method") else None),
        ("Data used", _data_used(report)),
        ("Dataset", ds_txt),
        ("Model", model_txt),
    ])


# ----------------------------------------------------------------------------------------------- instances
def _class_names(report: Mapping[str, Any]) -> Dict[int, str]:
    names = {}
    for r in lst(report.get("per_class_test")):
        if isinstance(r, Mapping) and num(r.get("class")) is not None and r.get("name") not in (None, ""):
            names[int(r["class"])] = str(r["name"])
    return names


def _cls(v: Any, names: Dict[int, str]) -> str:
    if v is None:
        return "–"
    n = names.get(v) if isinstance(v, int) and not isinstance(v, bool) else None
    return e(v) + (f" <span class=\"note\">{e(n)}</span>" if n and n != str(v) else "")


def _pred(pred: Any, conf: Any, names: Dict[int, str]) -> str:
    return "–" if pred is None else f"{_cls(pred, names)} ({pct(conf)})"


def _percentile(v: Any, flag: bool = False) -> str:
    v = num(v)
    if v is None:
        return "–"
    mark = ""
    if flag and v < FLAG_LOW:
        mark = ' <span class="warning">still known</span>'
    elif flag and v > FLAG_HIGH:
        mark = ' <span class="warning">over-forgotten</span>'
    return f"{v:.0f}{mark}"


def _instance_table(report: Mapping[str, Any], rows: List[Dict[str, Any]], thumbnails) -> str:
    from ..membership import PERCENTILE_NOTE

    if not rows:
        return '<p class="note">The report lists no per-instance outcome.</p>'
    names = _class_names(report)
    thumbs = thumbnails if thumbnails else d(report.get("thumbnails"))
    has_thumbs = any(lookup_thumbnail(thumbs, r.get("id")) is not None for r in rows)
    has_target = any(r.get("target") is not None for r in rows)
    has_lp = any(num(r.get("loss_percentile")) is not None or num(r.get("loss_percentile_before")) is not None
                 for r in rows)
    has_cal = any(num(r.get("calibrated_percentile")) is not None for r in rows)
    headers = (["image"] if has_thumbs else []) + ["id", "label"] + (["target"] if has_target else []) + [
        "before: predicted (confidence)", "after: predicted (confidence)"]
    if has_lp:
        headers.append("loss percentile among unseen data: before → after")
    if has_cal:
        headers.append("calibrated percentile")
    has_band = any(r.get("loss_band") is not None for r in rows)
    if has_band:
        headers.append("loss after (its band of unseen-data losses); percentile among the reference (target)")
    headers.append("verdict")
    body = []
    for r in rows:
        cells = []
        if has_thumbs:
            thumb = lookup_thumbnail(thumbs, r.get("id"))
            uri = None if thumb is None else png_data_uri(thumb)
            cells.append(f'<img class="thumb" alt="instance {e(r.get("id"))}" src="{e(uri)}">' if uri else "")
        cells += [f'<span class="mono id">{e(r.get("id"))}</span>', _cls(r.get("label"), names)]
        if has_target:
            cells.append(_cls(r.get("target"), names))
        cells += [_pred(r.get("pred_before"), r.get("confidence_before"), names),
                  _pred(r.get("pred_after"), r.get("confidence_after"), names)]
        if has_lp:
            cells.append(f"{_percentile(r.get('loss_percentile_before'))} → "
                         f"{_percentile(r.get('loss_percentile'), flag=not has_cal)}")
        if has_cal:
            cells.append(_percentile(r.get("calibrated_percentile"), flag=True))
        if has_band:
            band, loss = lst(r.get("loss_band")), num(r.get("loss_after"))
            pct, qb = num(r.get("reference_percentile")), lst(r.get("quantile_band"))
            where = (f"; {pct:.0f} ({num(qb[0]):.0f}–{num(qb[1]):.0f})"
                     if pct is not None and len(qb) == 2 and None not in map(num, qb) else "")
            cells.append(f"{loss:.3g} ({num(band[0]):.3g} – {num(band[1]):.3g}){where}"
                         if loss is not None and len(band) == 2 and None not in map(num, band) else "–")
        f = r.get("forgotten")
        cells.append('<span class="yes">forgotten</span>' if f is True else
                     '<span class="no">NOT forgotten</span>' if f is False else "–")
        body.append(cells)
    numeric = [i for i, h in enumerate(headers) if "percentile" in h]
    out = _table([e(h) for h in headers], body, numeric)
    if has_lp or has_cal:
        lp = [num(r.get("loss_percentile")) for r in rows if num(r.get("loss_percentile")) is not None]
        mean = f" Mean after unlearning: {sum(lp) / len(lp):.0f}." if lp else ""
        out += (f'<p class="note">Loss percentile: where the instance\'s loss falls among the losses on unseen test '
                f"data (0–100): {e(PERCENTILE_NOTE)}.{mean} Flagged: below {FLAG_LOW:g} or above {FLAG_HIGH:g} "
                "after unlearning (an instance like unseen data lands there one time in ten)."
                + (" Calibrated percentile: the same after removing what the original model says about how easy "
                   "the image is (an offline likelihood-ratio test with the original as reference); more telling "
                   "than the raw percentile on a model whose training and test losses are close." if has_cal else "")
                + "</p>")
    return out


# ---------------------------------------------------------------------------------------- model, privacy
def _model_section(report: Mapping[str, Any]) -> str:
    m = d(report.get("metrics"))
    ds = d(report.get("dataset"))
    n_r, total = m.get("n_retain") or ds.get("retain_eval_size"), ds.get("retain_total")
    r_note = ""
    if num(n_r) is not None:
        r_note = f"{int(n_r)}" + (f" random of {int(total)}" if num(total) is not None and total > n_r else "")
    rows = []
    n_f = m.get("n_forget") or len(_instances(report)) or None
    for label, key, n in (("D_f (forget)", "forget", n_f), ("D_r (remaining)", "retain", r_note),
                          ("D_test", "test", m.get("n_test") or ds.get("n_test"))):
        rows.append([e(label), e(n if n not in (None, "") else "–"), pct(m.get(f"acc_{key}_before"), 2),
                     pct(m.get(f"acc_{key}"), 2), pp(m.get(f"acc_{key}"), m.get(f"acc_{key}_before"))])
    out = _table(["accuracy", "instances", "before", "after", "change"], rows, numeric=(1, 2, 3, 4))
    out += ('<p class="note">D_f: lower = more forgotten (misclassify). D_r and D_test: higher = better preserved; '
            "a model never trained on D_f would score about its D_test accuracy on D_f.</p>")
    if num(m.get("agreement_test")) is not None:
        out += (f"<p>Agreement with the original on D_test: <b>{pct(m['agreement_test'])}</b> of the test "
                "predictions are unchanged.</p><p class=\"note\">Higher = less collateral change; a model retrained "
                "without D_f typically agrees with the original on about its test accuracy's worth, not on all.</p>")
    chart = per_class_chart_svg(lst(report.get("per_class_test")))
    if chart:
        out += "<h3>Accuracy change per class on D_test</h3>" + chart
    return out


def _privacy_section(report: Mapping[str, Any]) -> str:
    from ..evaluation import MIA_MIN_SIGNAL_Z, mia_signal_z

    m = d(report.get("metrics"))
    if num(m.get("mia_efficacy")) is None and num(m.get("loss_auc")) is None and \
            num(m.get("mia_efficacy_before")) is None and num(m.get("loss_auc_before")) is None:
        return '<p class="note">No membership-inference figures in this report.</p>'
    z = num(m.get("mia_signal_z"))
    if z is None and num(m.get("mia_attack_train_acc")) is not None and num(m.get("mia_n_per_class")):
        z = num(mia_signal_z(m["mia_attack_train_acc"], int(m["mia_n_per_class"])))  # reports without the field
    tnr = num(m.get("mia_tnr_test"))
    mia_note = ("share of D_f that a membership attack (fitted on D_r vs D_test confidences) calls non-member; "
                "higher = more forgotten" + (f"; data the model never saw gets about {pct(tnr)}" if tnr is not None
                                             else ""))
    if z is not None and z < MIA_MIN_SIGNAL_Z:
        mia_note += (f'. <span class="warning">Uninformative: the attack is at chance on D_r vs D_test (z = {z:.1f} '
                     f"&lt; {MIA_MIN_SIGNAL_Z:g}), so the model's confidence carries no membership signal and this "
                     "figure says nothing; read the loss AUC and the per-instance percentiles.</span>")
    auc_note = ("how well a D_f loss tells itself apart from D_test losses: 0.5 = like unseen data (the target); "
                "1 = still recognisable as training data; well below 0.5 = over-forgotten, itself a membership signal")
    rows = [["MIA efficacy", pct(m.get("mia_efficacy_before")), pct(m.get("mia_efficacy")), mia_note],
            ["loss AUC", fixed(m.get("loss_auc_before")), fixed(m.get("loss_auc")), e(auc_note)]]
    return _table(["figure", "before", "after", "what it means"], rows, numeric=(1, 2))


# ---------------------------------------------------------------------------------------------- provenance
def _provenance(report: Mapping[str, Any]) -> str:
    inp, outm = d(report.get("input_model")), d(report.get("output_model"))
    sha_in = d(inp.get("sha256"))
    rows = [[e("input"), f"<code>{e(p)}</code>", f"<code>{e(h)}</code>"] for p, h in sha_in.items()]
    rows.append([e("output"), f"<code>{e(outm.get('path'))}</code>" if outm.get("path") else "(not written)",
                 f"<code>{e(outm.get('sha256'))}</code>" if outm.get("sha256") else "–"])
    out = "<h3>Models (sha256)</h3>" + _table(["model", "path", "sha256"], rows)
    argv = report.get("argv")
    cmd = None
    if isinstance(argv, (list, tuple)) and argv:
        cmd = f"<code>l2ul {e(shlex.join(str(a) for a in argv))}</code>"
    vers = d(report.get("versions"))
    machine = d(report.get("machine"))
    out += "<h3>Run</h3>" + _dl([
        ("Created", e(report["created"]) if report.get("created") else None),
        ("Command", cmd),
        ("Engine message", e(report["message"]) if report.get("message") else None),
        ("Steps", e(report["steps"]) if report.get("steps") is not None else None),
        ("Versions", ", ".join(f"{e(k)} <code>{e(v)}</code>" for k, v in vers.items() if k != "platform") or None),
        ("Machine", ", ".join(x for x in (
            f"device <code>{e(report['device'])}</code>" if report.get("device") else "",
            f"<code>{e(vers['platform'])}</code>" if vers.get("platform") else "",
            *(f"{e(k)} <code>{e(v)}</code>" for k, v in machine.items())) if x) or None),
        ("Adversarial success", pct(report.get("adversarial_success"))
         if num(report.get("adversarial_success")) is not None else None),
        ("Report format", e(report.get("l2ul_report")) if report.get("l2ul_report") is not None else None),
    ])
    timings = d(report.get("timings_s"))
    if timings:
        out += "<h3>Time per phase</h3>" + _table(
            ["phase", "seconds"], [[e(k), fixed(v, 2)] for k, v in timings.items()], numeric=(1,))
    stages = d(report.get("request_timings_s"))
    if stages:
        out += "<h3>Time per stage of the request</h3>" + _table(
            ["stage", "seconds"], [[e(k), fixed(v, 2)] for k, v in stages.items()], numeric=(1,))
    phases = [p for p in lst(report.get("phases")) if isinstance(p, Mapping)]
    if phases:
        out += "<h3>Phases</h3>" + _table(
            ["name", "kind", "steps", "seconds", "status", "message"],
            [[e(p.get("name")), e(p.get("kind")), e(p.get("steps")), fixed(p.get("seconds"), 2), e(p.get("status")),
              e(p.get("message"))] for p in phases], numeric=(2, 3))
    cfg = d(report.get("config"))
    if cfg:
        out += '<h3>Configuration</h3><div class="cfg">' + "".join(
            f"<div><b>{e(k)}</b> <code>{e(v) if v is not None else 'none'}</code></div>" for k, v in cfg.items())
        out += "</div>"
    return out


# -------------------------------------------------------------------------------------------------- page
def render(report: Mapping[str, Any], thumbnails: Optional[Mapping[Any, Any]] = None) -> str:
    from .. import __version__

    report = d(report)
    rows = _instances(report)
    cls, line = verdict(report)
    summary = membership_summary(rows)
    method, ds = report.get("method"), d(report.get("dataset")).get("name")
    title = "l2ul audit" + (f": {method}" if method else "") + (f" on {ds}" if ds else "")
    sections = [
        f'<h1>{e(title)}</h1><p class="verdict {cls}" id="verdict">{e(line)}</p>'
        + (f'<p class="summary">{e(summary)}</p>' if summary else ""),
        "<h2>What was asked</h2>" + _asked(report, rows),
        "<h2>The forgotten instances</h2>" + _instance_table(report, rows, thumbnails),
        "<h2>The model before and after</h2>" + _model_section(report),
        "<h2>Privacy</h2>" + _privacy_section(report),
        "<h2>Provenance</h2>" + _provenance(report),
        f"<footer>Written by l2ul {e(__version__)} (<code>l2ul audit</code>) from the run's report. "
        "The page is self-contained: it loads nothing.</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">{GENERATOR_MARKER}'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(sections)
            + "\n</body></html>\n")
