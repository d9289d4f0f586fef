"""One self-contained HTML page per report: inline CSS and SVG, no scripts, no external assets."""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

from xvalidate.core.report import Report
from xvalidate.report.files import write_atomic
from xvalidate.report.text import fmt, mismatch_text, summary_text

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} .pass{color:#176f2c} .fail{color:#b3261e}
table{border-collapse:collapse;font-size:12px} td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}
td.l,th.l{text-align:left} tr.bad td{background:#fde8e6} tr.root td{background:#f6c4bf;font-weight:600}
.cause{background:#fff6d6;padding:.6em;border-left:4px solid #e0a800}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap} svg{background:#fff;border:1px solid #ccc}
"""
COLORS = ("#1f5fbf", "#e07b00", "#2a9d3f", "#8e44ad", "#555555")


def svg_plot(series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]], *, title: str = "",
             x_label: str = "layer (source order)", y_label: str = "error (log scale)",
             marks: Sequence[tuple[float, float]] = (), hline: float | None = None,
             width: int = 900, height: int = 320) -> str:
    """A log-scale line plot of several (label, xs, ys) series as inline SVG. `marks` are
    highlighted points (failing layers), `hline` a horizontal reference (the tolerance)."""
    left, right, top, bottom = 70, 20, 30, 45
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys) if y is not None and y > 0 and math.isfinite(y)]
    if hline is not None and hline > 0:
        pts.append((pts[0][0] if pts else 0, hline))
    if not pts:
        return f'<svg width="{width}" height="60"><text x="10" y="35">no finite nonzero errors to plot</text></svg>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    lo = math.floor(math.log10(min(p[1] for p in pts)))
    hi = math.ceil(math.log10(max(p[1] for p in pts)))
    hi = hi if hi > lo else lo + 1
    x1 = x1 if x1 > x0 else x0 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (hi - math.log10(y)) / (hi - lo) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<text x="{left}" y="18" font-weight="bold">{escape(title)}</text>']
    for e in range(lo, hi + 1):
        y = sy(10.0 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">1e{e}</text>')
    out.append(f'<text x="{(left + width) / 2:.0f}" y="{height - 8}" text-anchor="middle" font-size="12">{escape(x_label)}</text>'
               f'<text x="14" y="{height / 2:.0f}" transform="rotate(-90 14 {height / 2:.0f})" text-anchor="middle" '
               f'font-size="12">{escape(y_label)}</text>')
    for xv in sorted({round(x0 + (x1 - x0) * tick / 4) for tick in range(5)}):  # layer indices: whole, each once
        out.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{xv}</text>')
    if hline is not None and hline > 0:
        y = sy(hline)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#b3261e" '
                   f'stroke-dasharray="5,4"/><text x="{width - right}" y="{y - 4:.1f}" text-anchor="end" '
                   f'font-size="11" fill="#b3261e">tolerance {hline:.0e}</text>')
    for i, (label, xs, ys) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys)
                        if y is not None and y > 0 and math.isfinite(y))
        if path:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<rect x="{left + 10 + 160 * i}" y="{top - 2}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + 24 + 160 * i}" y="{top + 7}" font-size="11">{escape(label)}</text>')
    for x, y in marks:
        if y is not None and y > 0 and math.isfinite(y):
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#b3261e"/>')
    out.append("</svg>")
    return "".join(out)


def page(title: str, body: str) -> str:
    """A complete HTML document around `body`."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def report_body(report: Report) -> str:
    """The report's verdict, cause, plot and tables as an HTML fragment."""
    verdict = "PASS" if report.passed else "FAIL"
    parts = [f'<h1 class="{verdict.lower()}">{verdict}: {escape(report.src)} &rarr; {escape(report.dst)}'
             f'{" via " + escape(report.via) if report.via else ""}</h1>',
             f"<pre>{escape(summary_text(report))}</pre>"]
    first = report.first_divergence
    if first is not None:
        parts.append(f'<p class="cause"><b>First divergence:</b> {escape(first.src)} &rarr; {escape(str(first.dst))}'
                     f"<br><b>Likely cause:</b> {escape(first.cause or '')}</p>")
    if len(report.roots) > 1:
        items = "".join(f"<li><b>{escape(r.src)}</b> &rarr; {escape(str(r.dst or '-'))}: {escape(r.cause or '')}</li>"
                        for r in report.roots)
        parts.append(f'<div class="roots"><h3>Roots of divergence ({len(report.roots)})</h3>'
                     f"<p>Each fails while every paired input of it passes.</p><ol>{items}</ol></div>")
    if report.hops:
        parts.append(hops_section(report))
    xs = [r.index for r in report.layers]
    series = [("max_abs", xs, [r.metrics.get("max_abs") for r in report.layers]),
              ("mean_abs", xs, [r.metrics.get("mean_abs") for r in report.layers])]
    if any(r.isolated is not None for r in report.layers):
        series.append(("isolated max_abs", xs, [(r.isolated or {}).get("max_abs") for r in report.layers]))
    marks = [(r.index, r.metrics.get("max_abs")) for r in report.layers if not r.passed]
    parts.append(svg_plot(series, title="error against depth", marks=marks,
                          hline=report.tolerances.get("atol")))
    parts.append(layer_table(report))
    for side, label in (("src", "source"), ("dst", "destination")):
        names = report.unmatched.get(side, [])
        if names:
            parts.append(f"<h3>Unmatched {label} layers ({len(names)})</h3><p>{escape(', '.join(names))}</p>")
    if report.unmatched_reasons:
        parts.append("<h3>Why these source layers are not paired</h3><table>" + "".join(
            f'<tr><td class="l">{escape(k)}</td><td class="l">{escape(v)}</td></tr>'
            for k, v in report.unmatched_reasons.items()) + "</table>")
    if report.timings:
        parts.append("<h3>Timings</h3><table>" + "".join(
            f'<tr><td class="l">{escape(k)}</td><td>{v:.3f} s</td></tr>' for k, v in report.timings.items()) + "</table>")
    if report.artifacts:
        parts.append("<h3>Artifacts</h3><table>" + "".join(
            f'<tr><td class="l">{escape(k)}</td><td class="l">{escape(v)}</td></tr>'
            for k, v in report.artifacts.items()) + "</table>")
    parts.append(f"<h3>Inputs and tolerances</h3><pre>{escape(str(report.inputs))}\n"
                 f"{escape(str(report.tolerances))}</pre>")
    return "".join(parts)


def hops_section(report: Report) -> str:
    """The three comparisons through an intermediate model: a table (whole, then each half), the hop where
    it diverges, and each half's roots and layers in a collapsed block."""
    head = ("comparison", "models", "verdict", "paired", "unmatched source", "first divergence", "cause")
    rows = []
    for label, rep in [("whole", report)] + [(f"{hop.hop} half", hop) for hop in report.hops]:
        first = rep.first_divergence
        cells = (label, f"{rep.src} \u2192 {rep.dst}", "PASS" if rep.passed else "FAIL", str(len(rep.layers)),
                 str(len(rep.unmatched.get("src", []))),
                 "-" if first is None else f"{first.src} \u2192 {first.dst or '-'}",
                 "" if first is None else first.cause or "")
        rows.append(f'<tr class="{"" if rep.passed else "bad"}">' +
                    "".join(f'<td class="l">{escape(c)}</td>' for c in cells) + "</tr>")
    parts = [f"<h3>Through the intermediate model ({escape(report.hops[0].dst)})</h3><table><tr>",
             "".join(f'<th class="l">{h}</th>' for h in head), "</tr>", *rows, "</table>"]
    if report.located.get("text"):
        parts.append(f'<p class="{"cause" if report.located.get("hop") else ""}"><b>Where:</b> '
                     f'{escape(report.located["text"])}</p>')
    for hop in report.hops:
        parts.append(f"<details><summary>{escape(hop.hop or '')} half: {escape(hop.src)} &rarr; {escape(hop.dst)} "
                     f"({len(hop.layers)} pairs)</summary>{layer_table(hop)}</details>")
    return "".join(parts)


def layer_table(report: Report) -> str:
    isolated = any(r.isolated is not None for r in report.layers)
    roots = {id(r) for r in report.roots}
    head = ("#", "source layer", "destination", "match", "transform", "max_abs",
            *(("isolated max_abs",) if isolated else ()), "mean_abs", "rmse", "max_rel", "cosine", "diff_var",
            "snr_db", "mismatched", "status")
    left = {"source layer", "destination", "match", "transform", "status"}
    rows = ["<table><tr>" + "".join(f'<th class="{"l" if h in left else ""}">{h}</th>' for h in head) + "</tr>"]
    for r in report.layers:
        m = r.metrics
        status = "ROOT" if id(r) in roots else "ok" if r.passed else (r.note or "FAIL")
        cells = [str(r.index), r.src, r.dst or "-", r.match, r.transform or "", fmt(m.get("max_abs")),
                 *((fmt((r.isolated or {}).get("max_abs")),) if isolated else ()), fmt(m.get("mean_abs")),
                 fmt(m.get("rmse")), fmt(m.get("max_rel")), fmt(m.get("cosine")), fmt(m.get("diff_var")),
                 fmt(m.get("snr_db")), mismatch_text(r), status]
        kind = "root" if id(r) in roots else "" if r.passed else "bad"
        rows.append(f'<tr class="{kind}">' + "".join(
            f'<td class="{"l" if h in left else ""}">{escape(c)}</td>' for h, c in zip(head, cells)) + "</tr>")
    return "".join(rows) + "</table>"


def write_html(report: Report, path: str) -> str:
    """Write the report as one self-contained HTML file, atomically."""
    title = f"xvalidate: {report.src} -> {report.dst}"
    return write_atomic(path, page(title, report_body(report)))
