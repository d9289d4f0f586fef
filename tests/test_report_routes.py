"""A comparison of routes as the terminal (colour console) and the HTML page show it: the verdict's
colour, the summary's columns and failing rows, how many layers the side-by-side table keeps, and
the page's parts."""
import re

from xvalidate.core.comparison import RouteComparison
from xvalidate.core.report import METRIC_NAMES, LayerResult, Report
from xvalidate.report.routes import SUMMARY_COLUMNS, render_comparison, write_comparison_html

from test_report_styles import styled

RED, GREEN = "color: #800000; text-decoration-color: #800000", "color: #008000; text-decoration-color: #008000"


def report(errors):
    rows = []
    for i, e in enumerate(errors):
        m = {name: 0.0 for name in METRIC_NAMES}
        m.update(max_abs=e, mismatched=int(e > 0.1), size=4)
        rows.append(LayerResult(i, f"l{i}", f"d{i}", "name", metrics=m, passed=e <= 0.1))
    first = next((r for r in rows if not r.passed), None)
    return Report("keras", "mxnet", "m", "n", rows, passed=first is None, first_divergence=first)


def comparison(n=30, onnx_fails=True):
    reports = {"mmdnn": report([1e-9 * (i + 1) for i in range(n)]),
               "onnx": report([0.5 if onnx_fails and i == 7 else 1e-8 for i in range(n)])}
    return RouteComparison("m.h5", "keras", "mxnet", ["mmdnn", "onnx"], reports=reports)


def shown(comp, **kwargs):
    return styled(lambda console: render_comparison(comp, console, **kwargs), 250)


def test_the_terminal_comparison_colours_the_verdict_and_failing_routes():
    spans, text = shown(comparison())
    assert (f"{RED}; font-weight: bold", "FAIL: m.h5 keras -> mxnet via mmdnn, onnx") in spans
    header = next(line for line in text.splitlines() if "┃ route" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [label for _, label in SUMMARY_COLUMNS]
    assert any(style == RED and text.strip() == "onnx" for style, text in spans)       # the failing route's row
    assert not any(style == RED and text.strip() == "mmdnn" for style, text in spans)
    assert "max_abs per source layer (25 of" in text                                    # 25 rows by default
    assert len([line for line in text.splitlines() if re.match(r"│ +\d+ │ l\d+ ", line)]) == 25
    row = next(line for line in text.splitlines() if re.match(r"│ +7 │ l7 ", line))
    assert re.search(r"│ +7 │ l7 +│ +8\.00e-9 │ +0\.5 │", row), row                    # numbers right-aligned
    spans, _ = shown(comparison(5, onnx_fails=False))
    assert (f"{GREEN}; font-weight: bold", "PASS: m.h5 keras -> mxnet via mmdnn, onnx") in spans


def test_the_comparison_page(tmp_path):
    page = open(write_comparison_html(comparison(10), str(tmp_path / "c.html"))).read()
    assert "<title>xvalidate routes: m.h5</title>" in page
    assert ('<h1 class="fail">FAIL: keras &rarr; mxnet via mmdnn, onnx</h1><p>m.h5</p><table><tr>'
            + "".join(f"<th>{label}</th>" for _, label in SUMMARY_COLUMNS) + "</tr>") in page
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", page)
    assert [r.split("</td><td>")[:2] for r in rows[:2]] == [["mmdnn", "pass"], ["onnx", "fail"]]
    assert '<text x="70" y="18" font-weight="bold">max_abs against depth, per route</text>' in page
    assert page.index("<hr><h2>Route mmdnn</h2><h1") < page.index("<hr><h2>Route onnx</h2><h1")
    good = open(write_comparison_html(comparison(3, onnx_fails=False), str(tmp_path / "g.html"))).read()
    assert '<h1 class="pass">PASS: keras &rarr; mxnet via mmdnn, onnx</h1>' in good
