import io
import json
import math

import numpy as np
import pytest
from rich.console import Console

from xvalidate.core.comparison import RouteComparison
from xvalidate.core.report import METRIC_NAMES, LayerResult, Report
from xvalidate.errors import OptionError
from xvalidate.report.json import report_from_dict, report_to_dict
from xvalidate.report.routes import render_comparison
from xvalidate.report.text import fmt, render, summary_text


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
    assert data["schema_version"] == 3 and data["first_divergence"] == "fc"
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


# ---------------------------------------------------------------- values, summary, JSON, route comparisons


@pytest.mark.parametrize("value, text", [
    (None, "-"), (True, "True"), (7, "7"), (0.0, "0"), (float("nan"), "nan"), (float("inf"), "inf"),
    (float("-inf"), "-inf"), (0.5, "0.5"), (1e-3, "0.001"), (9999.0, "9999"), (1e4, "1.00e+4"),
    (2.3e-10, "2.30e-10"), (-0.25, "-0.25"), (-2e-5, "-2.00e-5"), (123456.0, "1.23e+5"), ("x", "x"),
])
def test_fmt(value, text):
    assert fmt(value) == text


def rows_of(errors, passed):
    return [LayerResult(i, f"l{i}", f"d{i}", "name", metrics=metrics(e, 0 if ok else 2), passed=ok)
            for i, (e, ok) in enumerate(zip(errors, passed))]


def test_summary_lines():
    rows = rows_of([1e-7, 0.5, 0.25, 1e-6], [True, False, False, True])
    rows[1].cause, rows[2].cause = "weights: w", "padding: p"
    report = Report("keras", "mxnet", "a.h5", "b.json", rows, unmatched={"src": ["s1", "s2"], "dst": ["d9"]},
                    via="onnx", passed=False, first_divergence=rows[1], roots=[rows[1], rows[2]],
                    timings={"convert": 1.5, "src_run": 0.25})
    lines = summary_text(report).splitlines()
    assert lines[0] == "FAIL: keras -> mxnet via onnx (a.h5 vs b.json)"
    assert lines[1] == "layers paired: 4 of 6 source layers; 2 outside tolerance; unmatched: 2 source, 1 destination"
    assert lines[2] == "first divergence: l1 -> d1 (max_abs 0.5, mismatched 2 / 10)"
    assert lines[3] == "likely cause: weights: w"
    assert lines[4].startswith("other roots of divergence (1;") and lines[5] == "  l2 -> d2: padding: p"
    assert lines[6] == "largest error: l1 max_abs 0.5"
    assert lines[7] == "final layer l3: max_abs 1.00e-6, diff_var 0"
    assert lines[8] == "time: convert 1.50 s, src_run 0.25 s"


def test_summary_without_pairs_and_with_a_shape_note():
    empty = Report("toy", "toy", "a", "b", [], unmatched={"src": ["x"], "dst": []}, passed=False)
    text = summary_text(empty)
    assert "layers paired: 0 of 1 source layers" in text and "give a layer_map (--layer-map)" in text
    assert "final layer" not in text and "largest error" not in text
    row = LayerResult(0, "c", "d", "name", metrics={n: None for n in METRIC_NAMES}, passed=False,
                      note="shapes cannot agree: source (1, 3), destination (1, 4)", cause="shape: s")
    report = Report("a", "b", "m", "n", [row], passed=False, first_divergence=row, roots=[row])
    lines = summary_text(report).splitlines()
    assert lines[0].startswith("FAIL: a -> b (m vs n)")
    assert lines[2] == "first divergence: c -> d (shapes cannot agree: source (1, 3), destination (1, 4))"
    assert "other roots" not in summary_text(report) and "largest error" not in summary_text(report)


def test_worst_rows_first_and_uncomparable_rows_ahead():
    rows = rows_of([0.1, 0.3, 0.2], [True] * 3)
    rows.append(LayerResult(3, "broken", "d", "name", metrics={"max_abs": None}, passed=False))
    report = Report("a", "b", "m", "n", rows)
    assert [r.src for r in report.worst(3)] == ["broken", "l1", "l2"] and len(report.worst()) == 4
    assert len(Report("a", "b", "m", "n", rows_of([0.1] * 12, [True] * 12)).worst()) == 10
    assert bool(report) and not Report("a", "b", "m", "n", rows, passed=False)


def test_table_shows_worst_rows_or_all_and_truncates_unmatched():
    rows = rows_of([10.0 ** -k for k in range(20)], [True] * 20)
    report = Report("a", "b", "m", "n", rows, unmatched={"src": [f"u{i}" for i in range(14)], "dst": []},
                    unmatched_reasons={"u0": "no destination tensor of shape (1, 3)"})
    out = io.StringIO()
    render(report, Console(file=out, width=200), top=3)
    text = out.getvalue()
    assert "worst 3 of 20 layers" in text and " l2 " in text and " l3 " not in text
    assert "unmatched source layers (14): u0, u1" in text and "u11 ... (+2)" in text and "u12" not in text
    assert "not paired: u0: no destination tensor of shape (1, 3)" in text
    out = io.StringIO()
    render(report, Console(file=out, width=200), all_rows=True)
    assert "all layers" in out.getvalue() and " l19 " in out.getvalue()


def test_json_encodes_numpy_and_non_finite_values_and_keeps_roots():
    report = make_report()
    report.roots = [report.layers[1]]
    report.layers[0].metrics.update(max_abs=np.float32(0.5), mismatched=np.int64(3), cosine=float("nan"),
                                    snr_db=float("-inf"))
    report.layers[0].src_shape = (1, 3)
    report.meta = {"versions": {"numpy": "1.23.5"}, "shape": (2, 2)}
    data = json.loads(json.dumps(report_to_dict(report)))  # plain JSON: no numpy, no NaN literals
    m = data["layers"][0]["metrics"]
    assert (m["max_abs"], m["mismatched"], m["cosine"], m["snr_db"]) == (0.5, 3, "nan", "-inf")
    assert data["meta"]["shape"] == [2, 2] and data["roots"][0]["src"] == "fc"
    back = report_from_dict(data)
    assert back.layers[0].src_shape == (1, 3) and math.isnan(back.layers[0].metrics["cosine"])
    assert back.roots[0] is back.layers[1] and back.first_divergence is back.layers[1]
    assert back.layers[0].metrics["snr_db"] == -math.inf


def test_route_comparison_summary_and_table():
    good = Report("keras", "mxnet", "m", "n", rows_of([1e-7, 2e-6], [True, True]), timings={"convert": 2.0},
                  meta={"cache_hit": True})
    bad_rows = rows_of([1e-7, 0.5], [True, False])
    bad = Report("keras", "mxnet", "m", "n", bad_rows, passed=False, first_divergence=bad_rows[1])
    comparison = RouteComparison("m.h5", "keras", "mxnet", ["mmdnn", "onnx", "tvm"], reports={"mmdnn": good, "onnx": bad},
                                 errors={"tvm": "unknown route 'tvm'"})
    rows = {r["route"]: r for r in comparison.summary()}
    assert rows["mmdnn"]["status"] == "pass" and rows["mmdnn"]["convert_s"] == 2.0 and rows["mmdnn"]["cache_hit"]
    assert rows["mmdnn"]["worst_layer"] == "l1" and rows["mmdnn"]["final_max_abs"] == 2e-6
    assert rows["onnx"]["status"] == "fail" and rows["onnx"]["first_divergence"] == "l1"
    assert rows["tvm"] == {"route": "tvm", "status": "error", "error": "unknown route 'tvm'"}
    assert comparison.table() == [{"layer": "l0", "index": 0, "mmdnn": 1e-7, "onnx": 1e-7},
                                  {"layer": "l1", "index": 1, "mmdnn": 2e-6, "onnx": 0.5}]
    assert not comparison
    assert RouteComparison("m", "a", "b", ["mmdnn"], reports={"mmdnn": good})
    assert not RouteComparison("m", "a", "b", ["mmdnn"])  # nothing ran: not a pass


def comparison_of(n_layers=30):
    """Two routes over n layers: mmdnn's error grows with depth, onnx fails at layer 7 only."""
    def report(errors, passed):
        rows = rows_of(errors, passed)
        first = next((r for r in rows if not r.passed), None)
        return Report("keras", "mxnet", "m", "n", rows, passed=first is None, first_divergence=first)
    mmdnn = report([1e-9 * (i + 1) for i in range(n_layers)], [True] * n_layers)
    onnx = report([0.5 if i == 7 else 1e-8 for i in range(n_layers)], [i != 7 for i in range(n_layers)])
    return RouteComparison("m.h5", "keras", "mxnet", ["mmdnn", "onnx"], reports={"mmdnn": mmdnn, "onnx": onnx})


def test_route_comparison_table_keeps_the_worst_rows_in_layer_order():
    out = io.StringIO()
    render_comparison(comparison_of(), Console(file=out, width=250), top=4)
    text = out.getvalue()
    assert text.startswith("FAIL: m.h5 keras -> mxnet via mmdnn, onnx")
    assert "max_abs per source layer (4 of 30)" in text
    cells = [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]
    assert [c for c in cells if c.startswith("l")] == ["l7", "l27", "l28", "l29"]  # onnx's failure, mmdnn's deepest
    routes = [line.split("│")[1].strip() for line in text.splitlines()[:12] if line.startswith("│")]
    assert routes == ["mmdnn", "onnx"]
    out = io.StringIO()
    render_comparison(comparison_of(5), Console(file=out, width=250))
    assert "max_abs per source layer (5 of 5)" in out.getvalue()


def test_report_from_an_older_document_and_a_root_without_a_partner():
    report = make_report()
    data = report_to_dict(report)
    data.pop("schema_version")
    data.pop("roots")
    back = report_from_dict(data)
    assert back.roots == [] and back.first_divergence.src == "fc"
    orphan = LayerResult(5, "dense_softmax", None, "none", passed=False, cause="activation: gone",
                         src_shape=(1, 2), dst_shape=(1, 2))
    report.roots, report.first_divergence = [orphan], orphan
    back = report_from_dict(json.loads(json.dumps(report_to_dict(report))))
    assert back.first_divergence.src == "dense_softmax" and back.first_divergence.dst is None
    assert back.roots[0].dst_shape == (1, 2) and back.first_divergence is back.roots[0]
    assert report.to_dict() == report_to_dict(report) and report.summary() == summary_text(report)


def test_atomic_writers(tmp_path):
    from xvalidate.report.files import save_npz_atomic, write_atomic_bytes

    assert write_atomic_bytes(tmp_path / "b.bin", b"\x00\x01") == str(tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    save_npz_atomic(tmp_path / "o.npz", {"a": np.arange(3)})
    assert np.load(tmp_path / "o.npz")["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "o.npz"]


def test_route_comparison_document(tmp_path):
    comparison = comparison_of(10)
    comparison.reports["mmdnn"].timings = {"convert": 1.0, "src_run": 0.25, "dst_run": 0.5}
    comparison.reports["empty"] = Report("keras", "mxnet", "m", "n", [], passed=False)
    comparison.routes.append("empty")
    data = json.loads(open(comparison.to_json(str(tmp_path / "c.json"))).read())
    assert set(data) == {"model", "src", "dst", "routes", "passed", "errors", "summary", "reports"}
    assert (data["model"], data["src"], data["dst"], data["routes"]) == ("m.h5", "keras", "mxnet", ["mmdnn", "onnx", "empty"])
    assert data["passed"] is False and data["errors"] == {}
    assert data["reports"]["onnx"]["first_divergence"] == "l7" and data["reports"]["mmdnn"]["passed"] is True
    mmdnn, _, empty = data["summary"]
    assert (mmdnn["convert_s"], mmdnn["src_run_s"], mmdnn["dst_run_s"]) == (1.0, 0.25, 0.5)
    assert mmdnn["final_layer"] == "l9" and mmdnn["final_max_abs"] == 1e-8
    comparison.reports["onnx"].unmatched = {"src": ["a", "b"], "dst": []}
    assert [row["unmatched_src"] for row in comparison.summary()] == [0, 2, 0]
    assert empty["final_layer"] is None and empty["worst_layer"] is None and empty["paired"] == 0
    broken = comparison.reports["onnx"].layers[3]
    broken.metrics, broken.passed = {n: None for n in METRIC_NAMES}, False  # shapes that cannot agree
    onnx = comparison.summary()[1]
    assert onnx["worst_layer"] == "l3" and onnx["worst_max_abs"] == float("inf")
