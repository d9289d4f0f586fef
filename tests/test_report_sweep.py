"""The sweep's matrix page (report/sweep.py), read back with the standard html.parser: one row per
(model, input set), one column per route, each cell its verdict, link and detail."""
from html.parser import HTMLParser

from xvalidate.report.sweep import write_matrix


class Table(HTMLParser):
    """Rows of cells as text, the class of each cell and the links inside them; the title and summary."""

    def __init__(self):
        super().__init__()
        self.rows, self.classes, self.links, self.text, self.stray = [], [], [], [], []
        self._cell = None
        self._in = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append(tag)
        if tag == "tr":
            self.rows.append([])
            self.classes.append([])
            self.links.append([])
        elif tag in ("td", "th"):
            self._cell = []
            self.classes[-1].append(attrs.get("class", ""))
        elif tag == "a":
            self.links[-1].append(attrs["href"])
        elif tag == "br" and self._cell is not None:
            self._cell.append(" | ")

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._in and self._in[-1] in ("h1", "p", "title"):
            self.text.append(data.strip())
        elif not (self._in and self._in[-1] == "style") and data.strip():
            self.stray.append(data.strip())  # text between the table's tags


def _record(model, via, status, input_set="seed 0", **extra):
    return {"model": model, "src": "keras", "dst": "mxnet", "via": via, "input_set": input_set, "status": status,
            **extra}


def _read(tmp_path, records, **kw):
    path = write_matrix(records, tmp_path / "index.html", **kw)
    table = Table()
    table.feed((tmp_path / "index.html").read_text())
    return path, table


def test_rows_by_model_and_input_set_columns_by_route(tmp_path):
    records = [
        _record("/m/a.h5", "mmdnn", "PASS", final_max_abs=2.5e-7, paired=12, report_html="cells/a-mmdnn.html"),
        _record("/m/a.h5", "onnx", "FAIL", final_max_abs=0.5, paired=11, reason="conv1: padding <b>",
                report_html="cells/a-onnx.html"),
        _record("/m/b.h5", "onnx", "ERROR", error="b.h5: layer X unsupported", error_file="cells/b-onnx.txt"),
        _record("/m/a.h5", "mmdnn", "PASS", input_set="seed 1", final_max_abs=0.0, paired=12),
    ]
    path, table = _read(tmp_path, records, title="nightly & more")
    assert path == str(tmp_path / "index.html")
    assert "nightly & more" in table.text and "4 cells: 2 PASS, 1 FAIL, 1 ERROR." in table.text
    assert table.rows[0] == ["model", "input", "mmdnn -> mxnet", "onnx -> mxnet"]
    a, b, a1 = table.rows[1:]
    assert a[:2] == ["a.h5 | keras", "seed 0"] and b[:2] == ["b.h5 | keras", "seed 0"] and a1[1] == "seed 1"
    assert a[2] == "PASS | final max|diff| 2.50e-7, 12 pairs"
    assert a[3] == "FAIL | final max|diff| 0.5, 11 pairs | conv1: padding <b>"  # escaped, shown as text
    assert b[2] == "-" and b[3] == "ERROR | b.h5: layer X unsupported"
    assert a1[2] == "PASS | final max|diff| 0, 12 pairs" and a1[3] == "-"
    assert table.classes[1][2:] == ["cell PASS", "cell FAIL"] and table.classes[2][2:] == ["cell", "cell ERROR"]
    assert table.links[1] == ["cells/a-mmdnn.html", "cells/a-onnx.html"] and table.links[2] == ["cells/b-onnx.txt"]
    assert table.links[3] == []  # a cell without a report has no link
    assert table.stray == []


def test_an_error_without_a_message_shows_its_status_only(tmp_path):
    _, table = _read(tmp_path, [_record("a.h5", "onnx", "ERROR"), _record("b.h5", "mmdnn", "PASS", paired=1,
                                                                         final_max_abs=0.0)])
    assert table.rows[1][2:] == ["ERROR |", "-"] and table.rows[2][2:] == ["-", "PASS | final max|diff| 0, 1 pairs"]
    assert table.stray == [] and table.links[1] == []


def test_a_pass_shows_no_reason_and_the_default_title(tmp_path):
    _, table = _read(tmp_path, [_record("a.h5", "mmdnn", "PASS", final_max_abs=1e-6, paired=3, reason="unused")])
    assert table.text[0] == "xvalidate sweep" and "1 cells: 1 PASS, 0 FAIL, 0 ERROR." in table.text
    assert table.rows[1][2] == "PASS | final max|diff| 1.00e-6, 3 pairs"
