"""The hand-port seed: a Keras CNN and Gluon ports carrying its weights, with Gluon's default names."""
import pytest

import xvalidate
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def seed2(tmp_path_factory):
    d = tmp_path_factory.mktemp("seed2")
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(d / "seed2.h5"))
    ports = {kind: get_worker("mxnet").call("xvalidate.models.gluon_ports:save_port", kind, h5, str(d / kind))
             for kind in ("right", "pad0", "nosoftmax", "noperm")}
    return h5, ports


def test_the_right_port_passes_with_every_layer_paired(seed2):
    h5, ports = seed2
    report = xvalidate.compare(h5, ports["right"], src="keras", dst="mxnet", batch=2)
    assert report.passed, report.summary()
    assert [r.src for r in report.layers] == ["block1_conv1", "max_pooling2d", "block2_conv1", "max_pooling2d_1",
                                              "flatten", "final_fully_connected"]
    assert report.unmatched["src"] == []
    assert {r.match for r in report.layers} == {"structural"}  # Gluon's default names give no help
    assert report.layers[0].transform == "NCHW->NHWC"
    assert report.layers[4].transform == "flatten:NCHW->NHWC"
    assert report.layers[-1].metrics["max_abs"] < 1e-5 and report.layers[-1].metrics["top1"] == 1.0


def test_padding_zero_fails_at_the_first_conv(seed2):
    h5, ports = seed2
    report = xvalidate.compare(h5, ports["pad0"], src="keras", dst="mxnet")
    first = report.first_divergence
    assert not report and first.src == "block1_conv1"
    assert first.cause.startswith("padding") and "78x118" in first.cause and "80x120" in first.cause


def test_missing_softmax_fails_at_the_dense(seed2):
    h5, ports = seed2
    report = xvalidate.compare(h5, ports["nosoftmax"], src="keras", dst="mxnet", batch=2)
    first = report.first_divergence
    assert first.src == "final_fully_connected" and first.dst.endswith("dense0_fwd")
    assert "lacks the softmax" in first.cause
    assert all(r.passed for r in report.layers[:-1])


def test_unpermuted_dense_weights_fail_at_the_dense_with_flatten_order(seed2):
    h5, ports = seed2
    report = xvalidate.compare(h5, ports["noperm"], src="keras", dst="mxnet", batch=2)
    first = report.first_divergence
    assert first.src == "final_fully_connected"
    assert first.cause.startswith("flatten order")
    assert report.layers[4].passed and report.layers[4].transform == "flatten:NCHW->NHWC"


def test_inputs_are_given_in_the_source_layout_from_npy_and_images(seed2, tmp_path):
    import numpy as np
    from PIL import Image

    h5, ports = seed2
    x = np.random.default_rng(3).uniform(0, 1, (3, 80, 120, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    report = xvalidate.compare(h5, ports["right"], src="keras", dst="mxnet", inputs=str(tmp_path / "x.npy"))
    assert report.passed and report.inputs["shape"] == [3, 80, 120, 3]
    for i in range(2):
        Image.fromarray((x[i] * 255).astype(np.uint8)).resize((60, 40)).save(tmp_path / f"img{i}.png")
    report = xvalidate.compare(h5, ports["right"], src="keras", dst="mxnet", inputs=str(tmp_path))
    assert report.passed and report.inputs["shape"] == [2, 80, 120, 3] and report.inputs["preprocess"] == "unit"


def test_layer_map_and_per_layer_tolerances(seed2, tmp_path):
    import json

    h5, ports = seed2
    (tmp_path / "map.json").write_text(json.dumps({"final_fully_connected": "hybridsequential0_dense0_fwd"}))
    report = xvalidate.compare(h5, ports["nosoftmax"], src="keras", dst="mxnet", layer_map=str(tmp_path / "map.json"),
                               tolerances={"final_*": {"atol": 10.0}})
    assert report.passed and report.layers[-1].match == "layer_map" and report.layers[-1].atol == 10.0


def test_html_and_json_reports(seed2, tmp_path):
    h5, ports = seed2
    report = xvalidate.compare(h5, ports["noperm"], src="keras", dst="mxnet")
    html = open(report.to_html(str(tmp_path / "r.html"))).read()
    assert "flatten order" in html and "<svg" in html
    assert '"first_divergence": "final_fully_connected"' in open(report.to_json(str(tmp_path / "r.json"))).read()
