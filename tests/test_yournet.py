"""The seed-2 answer's `YourNet`, verbatim (one MaxPool2D block called twice), against the Keras CNN."""
import numpy as np
import pytest

import xvalidate
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def seed2_h5(tmp_path_factory):
    h5 = str(tmp_path_factory.mktemp("yournet") / "seed2_cnn.h5")
    get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", h5)
    return h5


def _port(variant: str, h5: str, tmp_path) -> str:
    return get_worker("mxnet").call("seed2_yournet:export", variant, h5, str(tmp_path / variant))


def test_reused_pool_block_is_captured_once_per_call(seed2_h5, tmp_path):
    symbol = _port("right", seed2_h5, tmp_path)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 80, 120)).astype("float32")
    out = xvalidate.run("mxnet", symbol, x)
    assert out["yournet0_pool0_fwd"].shape == (1, 128, 40, 60)
    assert out["yournet0_pool0_fwd@1"].shape == (1, 256, 20, 30)
    relu1 = out["yournet0_relu1"]
    np.testing.assert_array_equal(out["yournet0_pool0_fwd@1"], relu1.reshape(1, 256, 20, 2, 30, 2).max(axis=(3, 5)))
    layers = {info.name: info for info in get_worker("mxnet").layers(symbol)}
    assert layers["yournet0_pool0_fwd@1"].inputs == ["yournet0_relu1"]
    assert layers["yournet0__block2_conv2fwd"].inputs == ["yournet0_pool0_fwd"]


def test_verbatim_port_passes_with_every_layer_paired(seed2_h5, tmp_path):
    report = xvalidate.compare(seed2_h5, _port("right", seed2_h5, tmp_path), src="keras", dst="mxnet", batch=2)
    assert report.passed, report.summary()
    assert not report.unmatched["src"] and len(report.layers) == 6
    pairs = {row.src: row.dst for row in report.layers}
    assert pairs["max_pooling2d"] == "yournet0_pool0_fwd" and pairs["max_pooling2d_1"] == "yournet0_pool0_fwd@1"


@pytest.mark.parametrize("variant, layer, cause", [
    ("pad0", "block1_conv1", "padding:"),
    ("nosoftmax", "final_fully_connected", "activation: the destination lacks the softmax"),
    ("noperm", "final_fully_connected", "flatten order:"),
])
def test_the_seeds_mistakes_fail_at_the_right_layer(seed2_h5, tmp_path, variant, layer, cause):
    report = xvalidate.compare(seed2_h5, _port(variant, seed2_h5, tmp_path), src="keras", dst="mxnet")
    assert not report.passed
    assert report.first_divergence.src == layer
    assert report.first_divergence.cause.startswith(cause), report.first_divergence.cause
