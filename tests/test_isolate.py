"""Isolated checks: each destination layer run on the source's values of its paired inputs, so that
every faulty layer shows on its own instead of spoiling everything after it."""
import json
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

import xvalidate
from xvalidate.cache import convert_cached
from xvalidate.cli import main
from xvalidate.errors import OptionError
from xvalidate.worker import get_worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import plant_onnx as plant  # noqa: E402


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    return get_worker("keras").call("xvalidate.models.keras_zoo:save", "resnet_block",
                                    str(tmp_path_factory.mktemp("iso") / "resnet_block.h5"))


@pytest.fixture(scope="module")
def two_faults_onnx(h5, tmp_path_factory):
    """The ONNX conversion with the stem's kernel transposed and block_conv2's channels 0/1 swapped:
    the second fault sits downstream of the first."""
    conversion = convert_cached("onnx", h5, "keras", "onnx", {})
    model = onnx.load(conversion.dst_source)
    plant.kernel_transposed(model, plant.node_by_name(model, "resnet_block/stem_conv/Conv2D"))
    plant.channels_swapped(model, plant.node_by_name(model, "resnet_block/block_conv2/Conv2D"))
    path = str(tmp_path_factory.mktemp("iso") / "two_faults.onnx")
    onnx.save(model, path)
    return path, conversion.hints


def test_isolate_names_every_faulty_layer_and_only_them(h5, two_faults_onnx):
    path, hints = two_faults_onnx
    plain = xvalidate.compare(h5, path, src="keras", dst="onnx", hints=hints)
    assert [r.src for r in plain.roots] == ["stem_bn"] and all(r.isolated is None for r in plain.layers)
    report = xvalidate.compare(h5, path, src="keras", dst="onnx", hints=hints, isolate=True)
    assert [r.src for r in report.roots] == ["stem_bn", "block_bn2"], report.summary()
    causes = [r.cause for r in report.roots]
    assert causes[0].startswith("kernel transposed") and causes[1].startswith("channel order")
    rows = {r.src: r for r in report.layers}
    assert not rows["block_bn1"].passed and rows["block_bn1"].isolated_passed  # spoiled, but right on its own
    assert rows["block_bn1"].isolated["max_abs"] < 1e-4 < rows["block_bn1"].metrics["max_abs"]
    assert "isolated: 2 layer(s) fail" in report.summary()
    assert "dst_isolated_run" in report.timings


def test_isolated_metrics_do_not_depend_on_the_chunking(h5, two_faults_onnx):
    path, hints = two_faults_onnx
    whole = xvalidate.compare(h5, path, src="keras", dst="onnx", hints=hints, isolate=True, batch=4)
    chunked = xvalidate.compare(h5, path, src="keras", dst="onnx", hints=hints, isolate=True, batch=4,
                                memory_budget=200_000)
    assert chunked.inputs["chunk"] < 4
    for a, b in zip(whole.layers, chunked.layers):
        assert a.isolated["max_abs"] == pytest.approx(b.isolated["max_abs"], rel=1e-6)
        assert a.isolated["mismatched"] == b.isolated["mismatched"]


def test_isolate_on_an_mmdnn_conversion_with_two_batchnorms_changed(h5, tmp_path):
    conversion = convert_cached("mmdnn", h5, "keras", "mxnet", {})
    symbol = conversion.dst_source
    for i, bn in enumerate(("stem_bn", "block_bn2")):
        symbol = get_worker("mxnet").call("plant_mxnet:plant", "batchnorm", symbol, bn, str(tmp_path / f"p{i}"), i)
    report = xvalidate.compare(h5, symbol, src="keras", dst="mxnet", hints=conversion.hints, isolate=True)
    assert [r.src for r in report.roots] == ["stem_bn", "block_bn2"]
    assert all(r.cause.startswith("batchnorm") for r in report.roots)


def test_a_destination_that_cannot_isolate_is_refused(h5):
    with pytest.raises(OptionError, match="isolate is not supported for destination keras"):
        xvalidate.compare(h5, h5, src="keras", dst="keras", isolate=True)


def test_cli_isolate_writes_both_errors(h5, two_faults_onnx, tmp_path):
    path, _ = two_faults_onnx
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    result = CliRunner().invoke(main, ["compare", h5, path, "--src", "keras", "--dst", "onnx", "--isolate",
                                       "--json", str(out), "--html", str(page)])
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    assert all("isolated" in row and "isolated_passed" in row for row in data["layers"])
    assert len(data["roots"]) >= 2
    assert "isolated max_abs" in page.read_text()
