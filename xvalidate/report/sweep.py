"""The sweep's matrix page: one row per (model, input set), one column per route, each cell its
verdict and final max|diff| linking the cell's report (or its error). Renders records, computes nothing."""
from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path
from typing import Any, Sequence

from xvalidate.report.files import write_atomic
from xvalidate.report.html import page
from xvalidate.report.text import fmt

MATRIX_CSS = ("td.PASS{background:#e3f4e6} td.FAIL{background:#fde8e6} td.ERROR{background:#fff0c2}"
              "td.cell{text-align:left;vertical-align:top;max-width:28em} td.cell small{color:#555}")


def write_matrix(records: Sequence[dict[str, Any]], path: str | Path, title: str = "xvalidate sweep") -> str:
    """Write the matrix of `records` (the sweep's cell records) as one HTML page at `path`; links
    are relative to the page's folder, where the records' report paths start."""
    routes = list(dict.fromkeys(f"{r['via']} -> {r['dst']}" for r in records))
    rows: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["model"], r["src"], r["input_set"]), {})[f"{r['via']} -> {r['dst']}"] = r
    counts = Counter(r["status"] for r in records)
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("PASS", "FAIL", "ERROR"))
    head = "".join(f'<th class="l">{escape(route)}</th>' for route in routes)
    body = []
    for (model, src, input_set), by_route in rows.items():
        cells = "".join(_cell(by_route.get(route)) for route in routes)
        body.append(f'<tr><td class="l">{escape(Path(model).name)}<br><small>{escape(src)}</small></td>'
                    f'<td class="l">{escape(input_set)}</td>{cells}</tr>')
    html = (f"<style>{MATRIX_CSS}</style><h1>{escape(title)}</h1><p>{len(records)} cells: {summary}.</p>"
            f'<table><tr><th class="l">model</th><th class="l">input</th>{head}</tr>{"".join(body)}</table>')
    return write_atomic(path, page(title, html))


def _cell(record: dict | None) -> str:
    if record is None:
        return '<td class="cell">-</td>'
    status = record["status"]
    target = record.get("report_html") or record.get("error_file")
    label = escape(status) if not target else f'<a href="{escape(target)}">{escape(status)}</a>'
    if status == "ERROR":
        detail = escape(record.get("error") or "")
    else:
        detail = f"final max|diff| {escape(fmt(record.get('final_max_abs')))}, {record.get('paired')} pairs"
        if status == "FAIL" and record.get("reason"):
            detail += f"<br>{escape(record['reason'])}"
    return f'<td class="cell {escape(status)}"><b>{label}</b><br><small>{detail}</small></td>'
