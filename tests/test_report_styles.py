"""The terminal report as a colour terminal shows it: which lines are red, yellow or dim, the status
of each row (ok, FAIL, ROOT), numbers right-aligned, how many rows and unmatched names are shown.
Rendered by rich into a recording console; styles read back from its HTML export."""
import io
import re

from rich.console import Console

from xvalidate.core.report import METRIC_NAMES, LayerResult, Report
from xvalidate.report.text import render

RED, GREEN, YELLOW, DIM = "color: #800000", "color: #008000", "color: #808000", "color: #7f7f7f"


def metrics(max_abs, mismatched=0):
    m = {name: 0.0 for name in METRIC_NAMES}
    m.update(max_abs=max_abs, mean_abs=max_abs / 2, mismatched=mismatched, size=10)
    return m


def styled(draw, width: int):
    """[(style, text)] of the styled spans, and the plain text, of what `draw(console)` prints on a
    recording colour console `width` columns wide."""
    console = Console(file=io.StringIO(), record=True, width=width, force_terminal=True, color_system="standard")
    draw(console)
    html = console.export_html(inline_styles=True, code_format="{code}", clear=False)
    spans = [(m.group(1), m.group(2).replace("&gt;", ">")) for m in
             re.finditer(r'<span style="([^"]*)">(.*?)</span>', html, re.S)]
    return spans, console.export_text()


def shown(report, **kwargs):
    """[(style, text)] of the styled spans, and the plain text."""
    return styled(lambda console: render(report, console, **kwargs), 160)


def style_of(spans, start):
    return next(style for style, text in spans if text.startswith(start))


def failing(n=2, isolated=False):
    rows = [LayerResult(i, f"l{i}", f"d{i}", "name", metrics=metrics(0.0)) for i in range(n)]
    bad = rows[-1]
    bad.metrics, bad.passed, bad.cause = metrics(0.5, 3), False, "weights: something"
    if isolated:
        for row in rows:
            row.isolated, row.isolated_passed = metrics(0.25 if row is bad else 0.0), row is not bad
    return Report("keras", "onnx", "a.h5", "b.onnx", rows, passed=False, first_divergence=bad, roots=[bad])


def test_the_verdict_and_the_divergence_lines_are_coloured():
    spans, _ = shown(failing())
    assert style_of(spans, "FAIL: keras -> onnx") == f"{RED}; text-decoration-{RED}; font-weight: bold"
    assert style_of(spans, "first divergence: l1 -> d1") == f"{RED}; text-decoration-{RED}"
    assert style_of(spans, "likely cause: weights") == f"{YELLOW}; text-decoration-{YELLOW}"
    passing = Report("keras", "onnx", "a.h5", "b.onnx", [LayerResult(0, "l0", "d0", "name", metrics=metrics(0.0))])
    spans, _ = shown(passing)
    assert style_of(spans, "PASS: keras -> onnx") == f"{GREEN}; text-decoration-{GREEN}; font-weight: bold"


def test_other_roots_and_the_hop_that_diverges_are_yellow():
    report = failing(3)
    other = report.layers[0]
    other.passed, other.cause = False, "numerical: x"
    report.roots = [other, report.layers[2]]
    report.hops = [Report("keras", "onnx", "a", "b", [], hop="export"), Report("onnx", "mx", "b", "c", [], hop="import")]
    report.located = {"text": "the import half diverges", "hop": "import"}
    spans, _ = shown(report)
    assert style_of(spans, "  l0 -> d0: numerical: x") == f"{YELLOW}; text-decoration-{YELLOW}"
    assert style_of(spans, "hop: the import half diverges") == f"{YELLOW}; text-decoration-{YELLOW}"
    report.located = {"text": "no half diverges on its own", "hop": None}
    spans, text = shown(report)
    assert "hop: no half diverges on its own" in text
    assert not any(t.startswith("hop:") for _, t in spans)


def test_rows_show_their_status_and_failing_rows_are_red():
    spans, text = shown(failing())
    assert ("color: #008000; text-decoration-color: #008000", "ok  ") in spans
    assert (f"{RED}; text-decoration-{RED}; font-weight: bold", "FAIL") in spans
    assert (f"{RED}; text-decoration-{RED}", " l1 ") in [(s, t[:4]) for s, t in spans]
    assert "worst 2 of 2 layers (--all for every one)" in text
    header = next(line for line in text.splitlines() if "┃ max_abs" in line)
    assert re.search(r"# +┃ layer +┃ destination +┃ match +┃ max_abs ┃ mean_abs ┃ cosine ┃ mismatched ┃", header)
    row = next(line for line in text.splitlines() if "│ l1 " in line)
    assert re.search(r"│ +1 │ l1 +│ d1 +│ name +│ +0\.5 │ +0\.25 │ +0 │ +3 / 10 │ FAIL │", row), row


def test_isolated_runs_add_a_column_and_mark_roots():
    spans, text = shown(failing(isolated=True))
    assert (f"{RED}; text-decoration-{RED}; font-weight: bold", "ROOT") in spans
    header = next(line for line in text.splitlines() if "┃ max_abs" in line)
    assert "┃ max_abs ┃ isolated ┃ mean_abs ┃" in header
    assert re.search(r"│ +0\.5 │ +0\.25 │ +0\.25 │", text)
    _, text = shown(failing())
    assert "isolated" not in text


def test_how_many_rows_and_names_are_shown():
    report = failing(20)
    _, text = shown(report)
    assert "worst 15 of 20 layers (--all for every one)" in text
    _, text = shown(report, top=3)
    assert "worst 3 of 20 layers" in text
    _, text = shown(report, all_rows=True)
    assert "all layers" in text and " l0 " in text and " l10 " in text
    report.unmatched = {"src": [f"s{i}" for i in range(14)], "dst": ["x"]}
    report.unmatched_reasons = {f"s{i}": f"reason {i}" for i in range(10)}
    spans, text = shown(report)
    assert ("unmatched source layers (14): s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11 ... (+2)"
            in text.replace("\n", " "))
    assert "unmatched destination layers (1): x" in text
    assert [line for line in text.splitlines() if line.startswith("  not paired:")] == [
        f"  not paired: s{i}: reason {i}" for i in range(8)]
    assert style_of(spans, "  not paired: s0") == f"{DIM}; text-decoration-{DIM}"
