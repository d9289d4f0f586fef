"""Through the ONNX hub, validate compares three pairs on one capture of each model: source vs
destination, source vs ONNX (the export half) and ONNX vs destination (the import half), and says
in which half a divergence appears."""
import json

import pytest

import xvalidate
from xvalidate import registry
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub_hops")
    return get_worker("keras").call("xvalidate.models.keras_zoo:save", "resnet_block", str(d / "block.h5"))


def test_keras_to_mxnet_through_onnx_compares_both_halves(block, tmp_path):
    report = xvalidate.validate(block, src="keras", dst="mxnet", via="onnx", cache=False, batch=2)
    assert report.passed, report.summary()
    export, imported = report.hops
    assert (export.hop, export.src, export.dst) == ("export", "keras", "onnx")
    assert (imported.hop, imported.src, imported.dst) == ("import", "onnx", "mxnet")
    assert export.passed and imported.passed and report.located["hop"] is None
    assert export.dst_model == imported.src_model == report.artifacts["onnx"]
    # the folded BatchNorms pair as in the whole; every ONNX tensor the importer kept pairs by its map
    assert [r.src for r in export.layers] == [r.src for r in report.layers]
    assert len(imported.layers) >= 9 and not imported.unmatched["src"]
    assert "intermediate_run" in report.timings
    text = report.summary()
    assert "onnx -> mxnet (import half): PASS" in text and "every half passes on its own" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema_version"] == 3 and [h["hop"] for h in data["hops"]] == ["export", "import"]
    assert "Through the intermediate model" in open(report.to_html(str(tmp_path / "r.html"))).read()
    assert xvalidate.validate(block, src="keras", dst="mxnet", via="onnx", batch=2, hops=False).hops == []


def test_a_fault_planted_in_the_import_half_is_located_there(block, monkeypatch):
    monkeypatch.setitem(registry._registered["routes"], "hubfault", "hub_fault:FaultyImport")
    report = xvalidate.validate(block, src="keras", dst="mxnet", via="hubfault", cache=False)
    assert not report.passed and report.first_divergence.src == "block_bn1"  # conv1 with its folded BatchNorm
    export, imported = report.hops
    assert export.passed, export.summary()
    assert not imported.passed and imported.first_divergence.dst == "convolution1"
    assert [r.src for r in imported.roots] == [imported.first_divergence.src]
    assert report.located["hop"] == "import"
    assert report.located["text"].startswith("diverges in the import half (onnx -> mxnet), first at ")
    assert "the export half (keras -> onnx) passes" in report.located["text"]
