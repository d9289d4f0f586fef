"""The parts of the HTML report on their own: the layer table cell by cell, the SVG plot's geometry
(log scale, ticks, tolerance line, marks), and the sections of the body a report may have."""
import re

from xvalidate.core.report import METRIC_NAMES, LayerResult, Report
from xvalidate.report.html import layer_table, report_body, svg_plot


def metrics(max_abs, mismatched=0):
    m = {name: None for name in METRIC_NAMES}
    m.update(max_abs=max_abs, mean_abs=None if max_abs is None else max_abs / 2, rmse=0.1, max_rel=0.2, cosine=0.99,
             diff_var=0.01, snr_db=float("inf"), mismatched=mismatched, size=10)
    return m


def table_rows(html):
    """[(row class, [(cell class, text)])] of an HTML table."""
    return [(cls, re.findall(r'<t[dh] class="([^"]*)">(.*?)</t[dh]>', body))
            for cls, body in re.findall(r'<tr(?: class="([^"]*)")?>(.*?)</tr>', html)]


def rows():
    ok = LayerResult(0, "conv<1>", "c0", "name", transform="NCHW->NHWC", metrics=metrics(1e-7))
    noted = LayerResult(1, "pad", None, "none", metrics=metrics(None), passed=False, note="shapes cannot agree")
    bad = LayerResult(2, "fc", "f0", "structural", metrics=metrics(0.5, mismatched=3), passed=False, cause="x")
    return ok, noted, bad


def test_the_layer_table_cell_by_cell():
    ok, noted, bad = rows()
    report = Report("a", "b", "m", "n", [ok, noted, bad], passed=False, roots=[bad], first_divergence=bad)
    [head, *body] = table_rows(layer_table(report))
    assert [c for _, c in head[1]] == ["#", "source layer", "destination", "match", "transform", "max_abs", "mean_abs",
                                       "rmse", "max_rel", "cosine", "diff_var", "snr_db", "mismatched", "status"]
    assert [cls for cls, _ in head[1]] == ["", "l", "l", "l", "l", "", "", "", "", "", "", "", "", "l"]
    assert body[0] == ("", [("", "0"), ("l", "conv&lt;1&gt;"), ("l", "c0"), ("l", "name"), ("l", "NCHW-&gt;NHWC"),
                            ("", "1.00e-7"), ("", "5.00e-8"), ("", "0.1"), ("", "0.2"), ("", "0.99"), ("", "0.01"),
                            ("", "inf"), ("", "0 / 10"), ("l", "ok")])
    assert body[1][0] == "bad" and [c for _, c in body[1][1]][:5] == ["1", "pad", "-", "none", ""]
    assert body[1][1][5] == ("", "-") and body[1][1][-1] == ("l", "shapes cannot agree")
    assert body[2][0] == "root" and body[2][1][-1] == ("l", "ROOT") and body[2][1][-2] == ("", "3 / 10")
    bad.note = None
    report.roots = []
    assert table_rows(layer_table(report))[3][1][-1] == ("l", "FAIL")


def test_the_layer_table_has_an_isolated_column_when_isolated():
    ok, _, bad = rows()
    ok.isolated, bad.isolated = metrics(0.0), metrics(0.25)
    [head, *body] = table_rows(layer_table(Report("a", "b", "m", "n", [ok, bad])))
    assert [c for _, c in head[1]][5:8] == ["max_abs", "isolated max_abs", "mean_abs"]
    assert [c for _, c in body[1][1]][5:8] == ["0.5", "0.25", "0.25"]


def test_the_plot_is_a_log_scale_of_the_finite_positive_errors():
    svg = svg_plot([("max_abs", [0, 1, 2, 3], [1e-3, 0.0, float("nan"), 1e-1]), ("other", [0, 3], [None, 1e-2])],
                   title="t<1>", marks=[(3, 1e-1), (1, 0.0)], hline=1e-2, width=900, height=320)
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="900" height="320" role="img">'
                          '<text x="70" y="18" font-weight="bold">t&lt;1&gt;</text>')
    # decades 1e-3..1e-1 from y=275 (bottom) to y=30 (top); x from 70 to 880
    for e, y in ((-3, "275.0"), (-2, "152.5"), (-1, "30.0")):
        assert (f'<line x1="70" y1="{y}" x2="880" y2="{y}" stroke="#eee"/><text x="64" y="{float(y) + 4:.1f}" '
                f'text-anchor="end" font-size="11">1e{e}</text>') in svg
    assert '<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="70.0,275.0 880.0,30.0"/>' in svg
    assert '<polyline fill="none" stroke="#e07b00" stroke-width="1.5" points="880.0,152.5"/>' in svg
    assert ('<line x1="70" y1="152.5" x2="880" y2="152.5" stroke="#b3261e" stroke-dasharray="5,4"/><text x="880" '
            'y="148.5" text-anchor="end" font-size="11" fill="#b3261e">tolerance 1e-02</text>') in svg
    assert re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="4" fill="#b3261e"/>', svg) == [("880.0", "30.0")]
    assert ('<rect x="80" y="28" width="10" height="10" fill="#1f5fbf"/><text x="94" y="37" font-size="11">'
            'max_abs</text>') in svg
    assert ('<rect x="240" y="28" width="10" height="10" fill="#e07b00"/><text x="254" y="37" font-size="11">other'
            '</text>') in svg
    ticks = re.findall(r'<text x="([\d.]+)" y="291" text-anchor="middle" font-size="11">(\d+)</text>', svg)
    assert ticks == [("70.0", "0"), ("340.0", "1"), ("610.0", "2"), ("880.0", "3")]  # whole layer indices, once each
    assert ('<text x="485" y="312" text-anchor="middle" font-size="12">layer (source order)</text><text x="14" '
            'y="160" transform="rotate(-90 14 160)" text-anchor="middle" font-size="12">error (log scale)</text>') in svg
    assert svg.endswith("</svg>")


def test_the_plot_of_one_point_and_of_nothing():
    svg = svg_plot([("e", [5], [1e-4])], width=400, height=200)
    assert "1e-4</text>" in svg and "1e-3</text>" in svg        # one decade at least
    assert 'points="70.0,155.0"' in svg                         # x spans [5, 6], y spans [1e-4, 1e-3]
    assert svg_plot([("e", [0, 1], [0.0, None])]) == ('<svg width="900" height="60"><text x="10" y="35">no finite '
                                                       'nonzero errors to plot</text></svg>')
    assert "tolerance 1e-05" in svg_plot([("e", [0], [0.0])], hline=1e-5)  # the tolerance alone is plotted
    assert "tolerance" not in svg_plot([("e", [0], [1.0])], hline=0.0)


def test_the_body_has_a_section_for_each_part_of_the_report():
    ok, noted, bad = rows()
    bad.isolated, ok.isolated = metrics(0.3), metrics(0.0)
    report = Report("keras", "onnx", "m.h5", "m.onnx", [ok, noted, bad], passed=False, roots=[noted, bad],
                    first_divergence=noted, via="tf2onnx", unmatched={"src": ["u1", "u2"], "dst": ["d<1>"]},
                    unmatched_reasons={"u1": "why <not>"}, timings={"convert": 1.23456},
                    artifacts={"model": "/tmp/m.onnx"}, inputs={"shape": [1, 4]}, tolerances={"atol": 1e-4})
    body = report_body(report)
    assert body.startswith('<h1 class="fail">FAIL: keras &rarr; onnx via tf2onnx</h1><pre>FAIL: keras -&gt; onnx')
    assert ('<p class="cause"><b>First divergence:</b> pad &rarr; None<br><b>Likely cause:</b> </p>') in body
    assert ('<div class="roots"><h3>Roots of divergence (2)</h3><p>Each fails while every paired input of it passes.'
            '</p><ol><li><b>pad</b> &rarr; -: </li><li><b>fc</b> &rarr; f0: x</li></ol></div>') in body
    assert ">isolated max_abs</text>" in body and "tolerance 1e-04" in body
    assert "<h3>Unmatched source layers (2)</h3><p>u1, u2</p>" in body
    assert "<h3>Unmatched destination layers (1)</h3><p>d&lt;1&gt;</p>" in body
    assert ('<h3>Why these source layers are not paired</h3><table><tr><td class="l">u1</td><td class="l">why '
            '&lt;not&gt;</td></tr></table>') in body
    assert '<h3>Timings</h3><table><tr><td class="l">convert</td><td>1.235 s</td></tr></table>' in body
    assert '<h3>Artifacts</h3><table><tr><td class="l">model</td><td class="l">/tmp/m.onnx</td></tr></table>' in body
    assert body.endswith("<h3>Inputs and tolerances</h3><pre>{&#x27;shape&#x27;: [1, 4]}\n{&#x27;atol&#x27;: "
                         "0.0001}</pre>")
    plain = report_body(Report("keras", "onnx", "m.h5", "m.onnx", [rows()[0]]))
    assert plain.startswith('<h1 class="pass">PASS: keras &rarr; onnx</h1>')
    for absent in ("First divergence", "Roots of divergence", "Unmatched", "Why these", "Timings", "Artifacts",
                   "isolated max_abs", "tolerance 1e"):
        assert absent not in plain
