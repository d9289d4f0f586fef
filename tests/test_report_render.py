import io
import json

import pytest
from rich.console import Console

from xvalidate.core.comparison import RouteComparison
from xvalidate.core.report import METRIC_NAMES, LayerResult, Report
from xvalidate.errors import OptionError
from xvalidate.report.json import report_from_dict
from xvalidate.report.routes import render_comparison
from xvalidate.report.text import render


def metrics(max_abs, mismatched=0):
    m = {name: 0.0 for name in METRIC_NAMES}
    m.update(max_abs=max_abs, mean_abs=max_abs / 2, snr_db=float("inf"), mismatched=mismatched, size=10, top1=None)
    return m


def make_report():
    rows = [LayerResult(0, "conv<script>", "conv0_fwd", "structural", metrics=metrics(1e-7)),
            LayerResult(1, "fc", "dense0_fwd", "structural", metrics=metrics(0.5, 3), passed=False,
                        cause="activation: the destination lacks the softmax the source applies here")]
    return Report("keras", "mxnet", "a.h5", "b-symbol.json", rows, unmatched={"src": ["flatten"], "dst": ["x"]},
                  passed=False, first_divergence=rows[1], tolerances={"atol": 1e-4, "rtol": 1e-3},
                  timings={"src_run": 0.1})


def test_text_puts_the_first_divergence_and_cause_up_front():
    out = io.StringIO()
    render(make_report(), Console(file=out, width=200))
    text = out.getvalue()
    assert text.startswith("FAIL: keras -> mxnet")
    assert text.index("first divergence: fc -> dense0_fwd") < text.index("lacks the softmax") < text.index("worst 2 of 2")
    assert "3 / 10" in text and "unmatched source layers (1): flatten" in text


def test_json_round_trips_and_encodes_infinity(tmp_path):
    report = make_report()
    path = report.to_json(str(tmp_path / "r.json"))
    data = json.loads(open(path).read())
    assert data["schema_version"] == 2 and data["first_divergence"] == "fc"
    assert data["layers"][0]["metrics"]["snr_db"] == "inf"
    back = report_from_dict(data)
    assert back.layers[1].cause == report.layers[1].cause and back.first_divergence.src == "fc"
    assert back.layers[0].metrics["snr_db"] == float("inf") and not back.passed


def test_html_is_one_self_contained_escaped_file(tmp_path):
    path = make_report().to_html(str(tmp_path / "r.html"))
    html = open(path).read()
    assert "<svg" in html and "<script>" not in html and "conv&lt;script&gt;" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert "lacks the softmax" in html
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left behind


def test_writing_into_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(OptionError, match="does not exist"):
        make_report().to_html(str(tmp_path / "no" / "r.html"))


def test_route_comparison_renders_errors_beside_reports(tmp_path):
    comparison = RouteComparison("m.h5", "keras", "mxnet", ["mmdnn", "onnx"], reports={"onnx": make_report()},
                                 errors={"mmdnn": "block: Lambda layer not supported"})
    out = io.StringIO()
    render_comparison(comparison, Console(file=out, width=250))
    assert "Lambda layer not supported" in out.getvalue() and not comparison.passed
    html = open(comparison.to_html(str(tmp_path / "c.html"))).read()
    assert html.count("<svg") >= 2
    data = json.loads(open(comparison.to_json(str(tmp_path / "c.json"))).read())
    assert data["errors"]["mmdnn"].startswith("block") and data["summary"][1]["status"] == "fail"
