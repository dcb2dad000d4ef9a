"""``l2ul audit``: the self-contained HTML audit page of an ``l2ul unlearn`` report (:mod:`l2ul.audit`)."""
from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("report", metavar="REPORT.json", help="the report of `l2ul unlearn` (OUT.report.json)")
    p.add_argument("--out", metavar="PAGE.html",
                   help="where to write the page (default: the report's path with .html for .json)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow replacing an existing file that is not an l2ul audit page (one is always replaced)")


def _is_audit_page(path: Path) -> bool:
    from ..audit import GENERATOR_MARKER

    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return GENERATOR_MARKER.encode() in head


def cmd_audit(args) -> int:
    from ..audit import default_page_path, write_audit_page
    from ..errors import L2ULError
    from ..reports import read_json
    from ..safety import check_output_path, check_writable

    report_path = Path(args.report)
    report = read_json(report_path)
    if not isinstance(report, dict) or ("per_instance" not in report and "status" not in report):
        raise L2ULError(f"{report_path} is not a report of `l2ul unlearn` (no status, no per-instance outcome); "
                        "give the OUT.report.json that it wrote")
    out = Path(args.out) if args.out else default_page_path(report_path)
    overwrite = args.overwrite or (out.is_file() and _is_audit_page(out))
    check_output_path(out, overwrite=overwrite, inputs=(str(report_path),))
    check_writable(out)
    write_audit_page(report, out)
    status = report.get("status") or "status unknown"
    print(f"{report_path}: {status}; wrote {out}")
    return 0
