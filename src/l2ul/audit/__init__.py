"""The audit page of one deletion request: a self-contained HTML file rendered from ``OUT.report.json``.

It reads top to bottom: the verdict and what was asked; one row per forgotten instance (thumbnail, predictions
before and after, membership percentiles, verdict); the model before and after (accuracy on D_f / D_r /
D_test, agreement with the original, the accuracy change per class); the privacy figures with their plain
meaning; provenance (sha256 of the models, versions, configuration, timings, machine). It loads nothing: no
network, no scripts, images inlined as ``data:`` URIs, charts as inline SVG (a Content-Security-Policy in the
page enforces it). ``l2ul audit REPORT.json`` writes it.

Optional report fields that the page draws when present (the pipeline adds them; older reports render
without them): ``thumbnails`` (``{str(id): base64 PNG}``, :func:`report_thumbnails`), ``per_class_test``
(:func:`per_class_accuracy`) and per-instance ``loss_percentile`` / ``loss_percentile_before`` /
``calibrated_percentile`` (:func:`l2ul.membership.add_membership_evidence`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .images import encode_png, report_thumbnails, thumbnail_png, thumbnails_png
from .page import GENERATOR_MARKER, verdict
from .per_class import per_class_accuracy, per_class_chart_svg

__all__ = ["render_audit_page", "write_audit_page", "default_page_path", "per_class_accuracy",
           "per_class_chart_svg", "thumbnails_png", "thumbnail_png", "report_thumbnails", "encode_png",
           "verdict", "GENERATOR_MARKER"]


def render_audit_page(report: Mapping[str, Any], *, thumbnails: Optional[Mapping[Any, Any]] = None) -> str:
    """The audit page of ``report`` (an ``l2ul unlearn`` report dict) as one self-contained HTML string.

    ``thumbnails``: ``{id: PNG bytes, base64 PNG string, uint8 [H, W, C] array or float [C, H, W] image}``,
    matched to ``report["per_instance"]`` ids by value or by ``str(id)``; default: ``report["thumbnails"]``.
    Every string is escaped; missing optional keys (older reports, diverged runs with ``None`` metrics) leave
    their part of the page out or show "–".
    """
    from .page import render

    return render(report, thumbnails)


def write_audit_page(report: Mapping[str, Any], path: Union[str, Path], thumbnails: Optional[Mapping[Any, Any]] = None
                     ) -> Path:
    """Render :func:`render_audit_page` and write it to ``path`` atomically (UTF-8); returns the path."""
    from ..safety import atomic_write

    text = render_audit_page(report, thumbnails=thumbnails)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path


def default_page_path(report_path: Union[str, Path]) -> Path:
    """``OUT.report.json`` -> ``OUT.report.html`` (any other name: ``.html`` appended)."""
    p = Path(report_path)
    return p.with_suffix(".html") if p.suffix.lower() == ".json" else p.with_name(p.name + ".html")
