"""Reports of a conversion through an intermediate model (hops) and of saved sides, in the text
summary and the HTML: one line or table row per comparison, the hop where it diverges, each half's
layers; reports built by hand."""
from xvalidate.core.report import METRIC_NAMES, LayerResult, Report
from xvalidate.report.html import hops_section, report_body
from xvalidate.report.text import hop_lines, summary_text


def metrics(max_abs):
    m = {name: 0.0 for name in METRIC_NAMES}
    m.update(max_abs=max_abs, mismatched=0, size=4)
    return m


def through_onnx(located=True):
    ok = LayerResult(0, "conv", "c0", "name", metrics=metrics(0.0))
    bad = LayerResult(1, "fc", "f0", "name", metrics=metrics(2.0), passed=False, cause="weights: X")
    export = Report("keras", "onnx", "a.h5", "a.onnx", [ok], hop="export")
    imp = Report("onnx", "mxnet", "a.onnx", "b.json", [ok, bad], unmatched={"src": ["flat"], "dst": []},
                 passed=False, first_divergence=bad, roots=[bad], hop="import")
    saved = {"src": {"path": "s.xvr", "adapter": "keras", "samples": 2, "created": "2026-01-01",
                     "environment": {"hostname": "h", "machine": "x86_64", "python": "3.11"},
                     "versions": {"tensorflow": "2.12", "numpy": "1.24"}}}
    return Report("keras", "mxnet", "a.h5", "b.json", [ok, bad], passed=False, first_divergence=bad, roots=[bad],
                  via="mmdnn", hops=[export, imp], meta={"saved": saved},
                  located={"text": "the import half diverges", "hop": "import"} if located else {})


def test_the_summary_has_a_line_per_comparison_and_the_hop():
    assert hop_lines(through_onnx()) == [
        "three comparisons through onnx (the intermediate model):",
        "  keras -> mxnet (whole): FAIL, 2 of 2 paired, first divergence fc -> f0",
        "  keras -> onnx (export half): PASS, 1 of 1 paired",
        "  onnx -> mxnet (import half): FAIL, 2 of 3 paired, first divergence fc -> f0",
        "hop: the import half diverges"]
    assert hop_lines(through_onnx(located=False))[-1].startswith("  onnx -> mxnet (import half)")
    assert hop_lines(Report("a", "b", "x", "y", [])) == []
    text = summary_text(through_onnx())
    assert "\n".join(hop_lines(through_onnx())) in text
    assert ("src saved: s.xvr (keras, 2 samples, captured 2026-01-01 on h, x86_64, python 3.11; tensorflow 2.12, "
            "numpy 1.24)") in text.splitlines()


def test_the_html_has_a_row_per_comparison_the_hop_and_each_half():
    html = hops_section(through_onnx())
    assert html.startswith('<h3>Through the intermediate model (onnx)</h3><table><tr><th class="l">comparison</th>'
                           '<th class="l">models</th><th class="l">verdict</th><th class="l">paired</th>'
                           '<th class="l">unmatched source</th><th class="l">first divergence</th>'
                           '<th class="l">cause</th></tr>')
    rows = html.split("</tr>")[1:4]
    assert rows[0] == ('<tr class="bad"><td class="l">whole</td><td class="l">keras \u2192 mxnet</td>'
                       '<td class="l">FAIL</td><td class="l">2</td><td class="l">0</td><td class="l">fc \u2192 f0</td>'
                       '<td class="l">weights: X</td>')
    assert rows[1] == ('<tr class=""><td class="l">export half</td><td class="l">keras \u2192 onnx</td>'
                       '<td class="l">PASS</td><td class="l">1</td><td class="l">0</td><td class="l">-</td>'
                       '<td class="l"></td>')
    assert rows[2].startswith('<tr class="bad"><td class="l">import half</td>') and '<td class="l">1</td>' in rows[2]
    assert '<p class="cause"><b>Where:</b> the import half diverges</p>' in html
    assert "<details><summary>export half: keras &rarr; onnx (1 pairs)</summary><table>" in html
    assert "<details><summary>import half: onnx &rarr; mxnet (2 pairs)</summary><table>" in html
    assert "Where:" not in hops_section(through_onnx(located=False))
    body = report_body(through_onnx())
    assert html in body and body.index("<h1") < body.index(html) < body.index("error against depth")
