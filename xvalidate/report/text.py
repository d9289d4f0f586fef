"""Terminal output of a Report: a plain summary and a rich table."""
from __future__ import annotations

import math
from typing import Any

from xvalidate.core.report import LayerResult, Report


def fmt(value: Any) -> str:
    """A metric value, compactly: 2.3e-10, 0.9999, inf, -."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.2e}".replace("e-0", "e-").replace("e+0", "e+")
    return str(value)


def mismatch_text(row: LayerResult) -> str:
    m, n = row.metrics.get("mismatched"), row.metrics.get("size")
    return "-" if m is None or n is None else f"{m} / {n}"


def _route(report: Report) -> str:
    return f"{report.src} -> {report.dst}" + (f" via {report.via}" if report.via else "")


def _saved_lines(report: Report) -> list[str]:
    """Where each saved side (.xvr) was captured: host, time, Python and its versions."""
    lines = []
    for side, saved in (report.meta.get("saved") or {}).items():
        env = saved.get("environment") or {}
        versions = ", ".join(f"{k} {v}" for k, v in (saved.get("versions") or {}).items())
        lines.append(f"{side} saved: {saved.get('path')} ({saved.get('adapter')}, {saved.get('samples')} samples, "
                     f"captured {saved.get('created')} on {env.get('hostname')}, {env.get('machine')}, "
                     f"python {env.get('python')}; {versions})")
    return lines


def summary_text(report: Report) -> str:
    """A few plain lines: verdict, layers paired, first divergence and its cause, worst layer."""
    lines = [f"{'PASS' if report.passed else 'FAIL'}: {_route(report)} ({report.src_model} vs {report.dst_model})"]
    total = len(report.layers) + len(report.unmatched.get("src", []))
    failed = sum(not r.passed for r in report.layers)
    lines.append(f"layers paired: {len(report.layers)} of {total} source layers; {failed} outside tolerance; "
                 f"unmatched: {len(report.unmatched.get('src', []))} source, {len(report.unmatched.get('dst', []))} destination")
    lines += _saved_lines(report)
    first = report.first_divergence
    if not report.layers:
        lines.append("no layer could be paired: give a layer_map (--layer-map) to say which tensors correspond")
    if first is not None:
        where = f"{first.src} -> {first.dst}"
        detail = first.note or f"max_abs {fmt(first.metrics.get('max_abs'))}, mismatched {mismatch_text(first)}"
        lines.append(f"first divergence: {where} ({detail})")
        lines.append(f"likely cause: {first.cause}")
    if any(row.isolated is not None for row in report.layers):
        bad = sum(row.isolated_passed is False for row in report.layers)
        lines.append(f"isolated: {bad} layer(s) fail on the source's values of their own inputs (the roots)")
    others = [root for root in report.roots if root is not first]
    if others:
        lines.append(f"other roots of divergence ({len(others)}; each fails while its paired inputs pass):")
        lines += [f"  {root.src} -> {root.dst or '-'}: {root.cause}" for root in others]
    lines += hop_lines(report)
    worst = report.worst(1)
    if worst and worst[0].metrics.get("max_abs") is not None:
        lines.append(f"largest error: {worst[0].src} max_abs {fmt(worst[0].metrics['max_abs'])}")
    if report.layers:
        last = report.layers[-1]
        lines.append(f"final layer {last.src}: max_abs {fmt(last.metrics.get('max_abs'))}, "
                     f"diff_var {fmt(last.metrics.get('diff_var'))}")
    if report.timings:
        lines.append("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items()))
    return "\n".join(lines)


def hop_lines(report: Report) -> list[str]:
    """Through an intermediate model: one line per comparison (whole, then each half), then where it diverges."""
    if not report.hops:
        return []
    lines = [f"three comparisons through {report.hops[0].dst} (the intermediate model):"]
    for label, rep in [("whole", report)] + [(f"{hop.hop} half", hop) for hop in report.hops]:
        total = len(rep.layers) + len(rep.unmatched.get("src", []))
        first = rep.first_divergence
        where = f", first divergence {first.src} -> {first.dst or '-'}" if first is not None else ""
        lines.append(f"  {rep.src} -> {rep.dst} ({label}): {'PASS' if rep.passed else 'FAIL'}, "
                     f"{len(rep.layers)} of {total} paired{where}")
    if report.located.get("text"):
        lines.append(f"hop: {report.located['text']}")
    return lines


def render(report: Report, console, all_rows: bool = False, top: int = 15) -> None:
    """Print the verdict, the first divergence up front, then the worst rows (or all rows)."""
    from rich.table import Table
    from rich.text import Text

    style = "bold green" if report.passed else "bold red"
    verdict, *lines = summary_text(report).split("\n")
    console.print(Text(verdict, style=style))
    for line in lines:
        if line.startswith(("likely cause", "  ")) or (line.startswith("hop:") and report.located.get("hop")):
            console.print(Text(line, style="yellow"))
        elif line.startswith("first divergence"):
            console.print(Text(line, style="red"))
        else:
            console.print(line)
    rows = report.layers if all_rows else _interesting(report, top)
    title = "all layers" if all_rows else f"worst {len(rows)} of {len(report.layers)} layers (--all for every one)"
    table = Table(title=title, title_justify="left", header_style="bold")
    isolated = any(row.isolated is not None for row in report.layers)
    numbers = ("#", "max_abs", "isolated", "mean_abs", "cosine", "mismatched")
    columns = ("#", "layer", "destination", "match", "max_abs", *(("isolated",) if isolated else ()), "mean_abs",
               "cosine", "mismatched", "")
    for column in columns:
        table.add_column(column, justify="right" if column in numbers else "left", overflow="fold")
    for row in rows:
        status = Text("ok", style="green") if row.passed else Text("FAIL", style="bold red")
        if row.isolated_passed is False:
            status = Text("ROOT", style="bold red")
        iso = (fmt((row.isolated or {}).get("max_abs")),) if isolated else ()
        table.add_row(str(row.index), row.src, row.dst or "-", row.match, fmt(row.metrics.get("max_abs")), *iso,
                      fmt(row.metrics.get("mean_abs")), fmt(row.metrics.get("cosine")), mismatch_text(row), status,
                      style=None if row.passed else "red")
    console.print(table)
    for side in ("src", "dst"):
        names = report.unmatched.get(side, [])
        if names:
            shown = ", ".join(names[:12]) + (f" ... (+{len(names) - 12})" if len(names) > 12 else "")
            console.print(f"unmatched {'source' if side == 'src' else 'destination'} layers ({len(names)}): {shown}")
    for name, reason in list(report.unmatched_reasons.items())[:8]:
        console.print(f"  not paired: {name}: {reason}", style="dim")


def _interesting(report: Report, top: int) -> list[LayerResult]:
    """The roots of divergence and the worst rows, in source order."""
    chosen = {id(r): r for r in report.worst(top)}
    for root in report.roots:
        chosen[id(root)] = root
    return sorted(chosen.values(), key=lambda r: r.index)
