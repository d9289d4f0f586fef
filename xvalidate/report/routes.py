"""Rendering a RouteComparison: terminal table, JSON, and HTML with every route's error curve."""
from __future__ import annotations

import json
from html import escape

from xvalidate.core.comparison import RouteComparison
from xvalidate.report.files import write_atomic
from xvalidate.report.html import page, report_body, svg_plot
from xvalidate.report.json import _encode
from xvalidate.report.text import fmt

SUMMARY_COLUMNS = (("route", "route"), ("status", "status"), ("convert_s", "convert s"), ("src_run_s", "src run s"),
                   ("dst_run_s", "dst run s"), ("paired", "paired"), ("unmatched_src", "unpaired src"),
                   ("final_max_abs", "final max_abs"), ("worst_layer", "worst layer"), ("worst_max_abs", "worst max_abs"),
                   ("first_divergence", "first divergence"), ("error", "error"))


def render_comparison(comparison: RouteComparison, console, top: int = 25) -> None:
    """Per-route summary, then the per-layer error of every route side by side."""
    from rich.table import Table
    from rich.text import Text

    verdict = "PASS" if comparison.passed else "FAIL"
    console.print(Text(f"{verdict}: {comparison.model} {comparison.src} -> {comparison.dst} via "
                       f"{', '.join(comparison.routes)}", style="bold green" if comparison.passed else "bold red"))
    summary = Table(title="routes", title_justify="left", header_style="bold")
    for _, label in SUMMARY_COLUMNS:
        summary.add_column(label, overflow="fold")
    for row in comparison.summary():
        summary.add_row(*[fmt(row.get(key)) if key != "status" else row.get(key, "") for key, _ in SUMMARY_COLUMNS],
                        style="red" if row["status"] != "pass" else None)
    console.print(summary)
    table_rows = comparison.table()
    routes = [r for r in comparison.routes if r in comparison.reports]
    shown = table_rows if len(table_rows) <= top else _worst(table_rows, routes, top)
    side = Table(title=f"max_abs per source layer ({len(shown)} of {len(table_rows)})", title_justify="left",
                 header_style="bold")
    side.add_column("#", justify="right")
    side.add_column("layer")
    for route in routes:
        side.add_column(route, justify="right")
    for row in shown:
        side.add_row(str(row["index"]), row["layer"], *[fmt(row.get(route)) for route in routes])
    console.print(side)


def _worst(rows, routes, top):
    def key(row):
        return max((row.get(r) or 0.0) for r in routes)
    chosen = sorted(rows, key=key, reverse=True)[:top]
    return sorted(chosen, key=lambda r: r["index"])


def write_comparison_json(comparison: RouteComparison, path: str) -> str:
    """Write the comparison as JSON, atomically."""
    return write_atomic(path, json.dumps(_encode(comparison.to_dict()), indent=1) + "\n")


def write_comparison_html(comparison: RouteComparison, path: str) -> str:
    """One self-contained page: the routes' summary, both error curves on one plot, then each report."""
    verdict = "PASS" if comparison.passed else "FAIL"
    parts = [f'<h1 class="{verdict.lower()}">{verdict}: {escape(comparison.src)} &rarr; {escape(comparison.dst)} '
             f"via {escape(', '.join(comparison.routes))}</h1><p>{escape(comparison.model)}</p><table><tr>"]
    parts += [f"<th>{escape(label)}</th>" for _, label in SUMMARY_COLUMNS] + ["</tr>"]
    for row in comparison.summary():
        parts.append("<tr>" + "".join(f"<td>{escape(fmt(row.get(k)) if k != 'status' else row.get(k, ''))}</td>"
                                      for k, _ in SUMMARY_COLUMNS) + "</tr>")
    parts.append("</table>")
    series = [(route, [r.index for r in rep.layers], [r.metrics.get("max_abs") for r in rep.layers])
              for route, rep in comparison.reports.items()]
    parts.append(svg_plot(series, title="max_abs against depth, per route"))
    for route, rep in comparison.reports.items():
        parts.append(f"<hr><h2>Route {escape(route)}</h2>{report_body(rep)}")
    return write_atomic(path, page(f"xvalidate routes: {comparison.model}", "".join(parts)))
