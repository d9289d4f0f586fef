"""The HTML report, parsed with the standard html.parser: the first-divergence block, the
highlighted failing rows, the unmatched lists and the plot's series."""
from html.parser import HTMLParser

import pytest

from xvalidate.core.report import METRIC_NAMES, LayerResult, Report

VOID = {"meta", "br", "rect", "line", "polyline", "circle", "hr", "img", "input", "link"}


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, dict(attrs), parent, [], []

    def text(self):
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def find_all(self, tag, cls=None):
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                found.append(child)
            found += child.find_all(tag, cls)
        return found


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = self.node = Node("root", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.node)
        self.node.children.append(node)
        self.node.parts.append(node)
        if tag not in VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, attrs, self.node)
        self.node.children.append(node)
        self.node.parts.append(node)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.node.tag == tag, f"</{tag}> closes <{self.node.tag}>"
        self.node = self.node.parent

    def handle_data(self, data):
        self.node.parts.append(data)


def parse(html):
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.node is builder.root, "unclosed elements"
    return builder.root


def metrics(max_abs, mismatched=0):
    m = {name: None for name in METRIC_NAMES}
    m.update(max_abs=max_abs, mean_abs=max_abs / 4, mismatched=mismatched, size=100)
    return m


ERRORS = [1e-7, 3e-6, 0.2, 0.5, 2e-7]          # layers 2 and 3 fail


def make_report():
    rows = [LayerResult(i, f"layer{i}", f"dst{i}", "name", metrics=metrics(e, 40 if e > 1e-4 else 0),
                        passed=e <= 1e-4) for i, e in enumerate(ERRORS)]
    rows[2].cause = "activation: the destination lacks the softmax the source applies here"
    return Report("keras", "mxnet", "a.h5", "b-symbol.json", rows,
                  unmatched={"src": ["flatten", "dropout<1>"], "dst": ["reshape0"]}, passed=False,
                  first_divergence=rows[2], tolerances={"atol": 1e-4, "rtol": 1e-3}, timings={"src_run": 0.1})


@pytest.fixture
def page(tmp_path):
    return parse(open(make_report().to_html(str(tmp_path / "r.html"))).read())


def test_verdict_and_first_divergence_block(page):
    (h1,) = page.find_all("h1")
    assert "fail" in h1.attrs["class"] and h1.text().startswith("FAIL: keras \u2192 mxnet")
    (cause,) = page.find_all("p", "cause")
    text = " ".join(cause.text().split())
    assert "First divergence: layer2 \u2192 dst2" in text
    assert "Likely cause: activation: the destination lacks the softmax" in text


def test_failing_rows_and_only_those_are_highlighted(page):
    tables = [t for t in page.find_all("table") if t.find_all("th") and t.find_all("th")[1].text() == "source layer"]
    assert len(tables) == 1
    rows = tables[0].find_all("tr")[1:]
    assert [r.find_all("td")[1].text() for r in rows] == [f"layer{i}" for i in range(5)]
    bad = [r.find_all("td")[1].text() for r in rows if "bad" in r.attrs.get("class", "").split()]
    assert bad == ["layer2", "layer3"]
    for r in rows:
        status = r.find_all("td")[-1].text()
        assert (status == "ok") == ("bad" not in r.attrs.get("class", ""))


def test_unmatched_lists(page):
    headings = {h.text(): h for h in page.find_all("h3") if h.text().startswith("Unmatched")}
    assert set(headings) == {"Unmatched source layers (2)", "Unmatched destination layers (1)"}
    body = page.text()
    src_part = body[body.index("Unmatched source layers (2)"):body.index("Unmatched destination layers (1)")]
    assert "flatten" in src_part and "dropout<1>" in src_part and "reshape0" not in src_part
    assert "reshape0" in body[body.index("Unmatched destination layers (1)"):]


def test_plot_series_follow_the_errors(page):
    (svg,) = page.find_all("svg")
    legend = [t.text() for t in svg.find_all("text")]
    assert "max_abs" in legend and "mean_abs" in legend and "tolerance 1e-04" in legend
    lines = svg.find_all("polyline")
    assert len(lines) == 2
    for line, scale in zip(lines, (1.0, 0.25)):           # max_abs, then mean_abs = max_abs / 4
        points = [tuple(map(float, p.split(","))) for p in line.attrs["points"].split()]
        assert len(points) == len(ERRORS)
        xs, ys = zip(*points)
        assert list(xs) == sorted(xs) and len(set(xs)) == len(xs)  # one point per layer, in source order
        # SVG y grows downwards: a larger error is drawn higher
        order = sorted(range(len(ERRORS)), key=lambda i: ERRORS[i] * scale)
        assert sorted(range(len(ys)), key=lambda i: -ys[i]) == order
    circles = svg.find_all("circle")
    assert len(circles) == 2  # the failing layers are marked
    max_points = {float(p.split(",")[0]): float(p.split(",")[1]) for p in lines[0].attrs["points"].split()}
    for c in circles:
        assert max_points[float(c.attrs["cx"])] == float(c.attrs["cy"])


def test_passing_report_has_no_cause_block_nor_highlight(tmp_path):
    rows = [LayerResult(i, f"layer{i}", f"dst{i}", "name", metrics=metrics(1e-7)) for i in range(3)]
    report = Report("keras", "mxnet", "a.h5", "b", rows, passed=True, tolerances={"atol": 1e-4})
    page = parse(open(report.to_html(str(tmp_path / "r.html"))).read())
    assert page.find_all("h1")[0].text().startswith("PASS") and not page.find_all("p", "cause")
    assert not page.find_all("tr", "bad") and not page.find_all("circle")
    assert not [h for h in page.find_all("h3") if h.text().startswith("Unmatched")]


def test_route_comparison_page(tmp_path):
    from xvalidate.core.comparison import RouteComparison

    good = Report("keras", "mxnet", "a.h5", "b", [LayerResult(i, f"layer{i}", f"d{i}", "name", metrics=metrics(1e-7 * (i + 1)))
                                                  for i in range(3)], passed=True, tolerances={"atol": 1e-4})
    bad = make_report()
    comparison = RouteComparison("m.h5", "keras", "mxnet", ["mmdnn", "onnx", "tvm"], reports={"mmdnn": good, "onnx": bad},
                                 errors={"tvm": "unknown route <tvm>"})
    page = parse(open(comparison.to_html(str(tmp_path / "c.html"))).read())
    h1 = page.find_all("h1")[0]
    assert "fail" in h1.attrs["class"] and h1.text() == "FAIL: keras \u2192 mxnet via mmdnn, onnx, tvm"
    summary = page.find_all("table")[0]
    header = [th.text() for th in summary.find_all("th")]
    assert header[:3] == ["route", "status", "convert s"] and header[-1] == "error"
    cells = [[td.text() for td in tr.find_all("td")] for tr in summary.find_all("tr")[1:]]
    assert [(c[0], c[1]) for c in cells] == [("mmdnn", "pass"), ("onnx", "fail"), ("tvm", "error")]
    assert cells[2][-1] == "unknown route <tvm>" and cells[1][header.index("first divergence")] == "layer2"
    plot = page.find_all("svg")[0]
    assert len(plot.find_all("polyline")) == 2 and {"mmdnn", "onnx"} <= {t.text() for t in plot.find_all("text")}
    assert [h.text() for h in page.find_all("h2")] == ["Route mmdnn", "Route onnx"]
    assert len(page.find_all("svg")) == 3 and len(page.find_all("p", "cause")) == 1  # each report's body follows
