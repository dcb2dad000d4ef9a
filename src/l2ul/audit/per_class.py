"""Per-class accuracy before and after (``report["per_class_test"]``) and its inline SVG bar chart."""
from __future__ import annotations

import html
import math
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DataError

#: the chart draws at most this many classes (those whose accuracy changed most) and says so
MAX_CHART_CLASSES = 40


def per_class_accuracy(predictions_before, predictions_after=None, class_names: Optional[Sequence[str]] = None
                       ) -> List[Dict[str, Any]]:
    """One dict per class of the split: ``class`` (index), ``name`` (from ``class_names``; ``None`` without
    one), ``n`` (samples of that class), ``acc_before``, ``acc_after`` (in [0, 1]; ``None`` without samples, or
    ``acc_after`` when ``predictions_after`` is ``None``, e.g. a diverged run) and ``change`` (after - before).

    ``predictions_before`` / ``predictions_after``: :class:`l2ul.evaluation.Predictions` of the original and
    the unlearned model on the same split (e.g. D_test). This is what ``report["per_class_test"]`` holds and
    what the audit page draws.
    """
    labels = predictions_before.labels
    if predictions_after is not None:
        if len(predictions_after) != len(predictions_before) or not bool((predictions_after.labels == labels).all()):
            raise DataError("the before and after predictions cover different samples; predict both models on "
                            "the same split")
    num_classes = predictions_before.num_classes
    names = list(class_names or [])
    ok_before = predictions_before.preds == labels
    ok_after = None if predictions_after is None else predictions_after.preds == labels
    rows = []
    for c in range(num_classes):
        mask = labels == c
        n = int(mask.sum())
        before = float(ok_before[mask].float().mean()) if n else None
        after = float(ok_after[mask].float().mean()) if (n and ok_after is not None) else None
        rows.append({"class": c, "name": str(names[c]) if c < len(names) else None, "n": n,
                     "acc_before": before, "acc_after": after,
                     "change": None if before is None or after is None else after - before})
    return rows


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _nice_limit(x: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, 100 percentage points at least ``x``."""
    for lim in (1, 2, 5, 10, 20, 50, 100):
        if x <= lim:
            return float(lim)
    return 100.0


def class_label(row: Dict[str, Any]) -> str:
    name = row.get("name")
    c = row.get("class")
    return f"{c} {name}" if name not in (None, "", str(c)) else str(c)


def per_class_chart_svg(rows: Sequence[Any]) -> Optional[str]:
    """An inline SVG (HTML fragment; no namespace URL, the page must hold no address) with one horizontal bar per class: its accuracy change in percentage points (red = lost,
    green = gained), labelled with before → after; ``None`` when no row has both accuracies. At most
    :data:`MAX_CHART_CLASSES` classes are drawn: those whose accuracy changed most, in class order."""
    usable = [r for r in rows if isinstance(r, dict) and _num(r.get("acc_before")) is not None
              and _num(r.get("acc_after")) is not None]
    if not usable:
        return None
    shown = usable
    if len(usable) > MAX_CHART_CLASSES:
        order = sorted(range(len(usable)), key=lambda i: -abs(_num(usable[i]["acc_after"]) - _num(usable[i]["acc_before"])))
        shown = [usable[i] for i in sorted(order[:MAX_CHART_CLASSES])]
    changes = [100 * (_num(r["acc_after"]) - _num(r["acc_before"])) for r in shown]
    lim = _nice_limit(max(abs(c) for c in changes) if changes else 1.0)
    row_h, top, label_w, bar_w, text_w = 20, 28, 150, 360, 280
    width, height = label_w + bar_w + text_w, top + row_h * len(shown) + 8
    mid = label_w + bar_w / 2
    esc = html.escape
    parts = [f'<svg class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="accuracy change per class on D_test">',
             f'<text x="{label_w}" y="14" class="axis">-{lim:g} pp</text>',
             f'<text x="{mid}" y="14" class="axis" text-anchor="middle">0</text>',
             f'<text x="{label_w + bar_w}" y="14" class="axis" text-anchor="end">+{lim:g} pp</text>',
             f'<line x1="{mid}" y1="{top - 6}" x2="{mid}" y2="{height - 4}" class="zero"/>']
    for i, (r, ch) in enumerate(zip(shown, changes)):
        y = top + i * row_h
        w = abs(ch) / lim * (bar_w / 2)
        x = mid - w if ch < 0 else mid
        cls = "neg" if ch < -1e-9 else ("pos" if ch > 1e-9 else "none")
        before, after = 100 * _num(r["acc_before"]), 100 * _num(r["acc_after"])
        n = r.get("n")
        label = esc(class_label(r))
        detail = esc(f"{before:.1f}% → {after:.1f}% ({ch:+.1f} pp" + (f", n = {n}" if _num(n) is not None else "")
                     + ")")
        parts.append(f'<g><title>class {label}: {detail}</title>'
                     f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" class="lab">{label}</text>'
                     f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1.0):.1f}" height="{row_h - 6}" class="{cls}"/>'
                     f'<text x="{label_w + bar_w + 8}" y="{y + 14}" class="val">{detail}</text></g>')
    parts.append("</svg>")
    note = ""
    if len(shown) < len(usable):
        note = (f'<p class="note">The {len(shown)} of {len(usable)} classes whose accuracy changed most are drawn.'
                "</p>")
    return "".join(parts) + note
