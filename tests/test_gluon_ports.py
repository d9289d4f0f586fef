"""The seed-2 Gluon ports: the right one matches Keras, each wrong one fails the way the seed did.

Framework work runs in workers; the functions prefixed `in_keras_` / `in_mxnet_` below are
what the workers run (this module imports no framework at import time)."""
import json

import numpy as np
import pytest

from xvalidate.errors import ConversionError, OptionError
from xvalidate.worker import get_worker

HERE = "test_gluon_ports"


def in_keras_predict(h5: str, x: np.ndarray) -> np.ndarray:
    from tensorflow import keras

    return keras.models.load_model(h5, compile=False)(x).numpy()


def in_mxnet_predict(symbol: str, x: np.ndarray) -> np.ndarray:
    import mxnet as mx

    net = mx.gluon.SymbolBlock.imports(symbol, ["data"], symbol.replace("-symbol.json", "-0000.params"))
    return net(mx.nd.array(x)).asnumpy()


def in_mxnet_shapes(symbol: str, x_shape: tuple) -> dict:
    """Output shapes of every internal tensor, and the shapes of the stored parameters."""
    import mxnet as mx

    internals = mx.sym.load(symbol).get_internals()
    _, out_shapes, _ = internals.infer_shape(data=x_shape)
    params = mx.nd.load(symbol.replace("-symbol.json", "-0000.params"))
    return {"outputs": dict(zip(internals.list_outputs(), out_shapes)),
            "params": {k.split(":", 1)[1]: v.asnumpy() for k, v in params.items()}}


def in_mxnet_transfer_nhwc_shape(h5: str) -> str:
    """The seed's layout mistake: the port run on an NHWC-shaped input."""
    from xvalidate.models.gluon_ports import architecture
    from xvalidate.transfer import transfer_weights

    try:
        transfer_weights(h5, architecture("right"), input_shape=(1, 80, 120, 3))
    except ConversionError as exc:
        return str(exc)
    return ""


@pytest.fixture(scope="module")
def seed2(tmp_path_factory):
    """The seed-2 Keras model as .h5, a batch of inputs (NHWC) and Keras's output on it."""
    h5 = str(tmp_path_factory.mktemp("seed2") / "seed2_cnn.h5")
    get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", h5)
    x = np.random.default_rng(0).uniform(0, 1, (2, 80, 120, 3)).astype("float32")
    return h5, x, get_worker("keras").call(f"{HERE}:in_keras_predict", h5, x)


@pytest.fixture(scope="module")
def ports(seed2, tmp_path_factory):
    """Symbol path and output (on the NCHW batch) of every port."""
    h5, x, _ = seed2
    out_dir = tmp_path_factory.mktemp("ports")
    mxnet = get_worker("mxnet")
    result = {}
    for kind in ("right", "pad0", "nosoftmax", "noperm"):
        symbol = mxnet.call("xvalidate.models.gluon_ports:save_port", kind, h5, str(out_dir / kind))
        result[kind] = symbol, mxnet.call(f"{HERE}:in_mxnet_predict", symbol, x.transpose(0, 3, 1, 2))
    return result


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_right_port_matches_keras(seed2, ports):
    _, _, expected = seed2
    out = ports["right"][1]
    assert out.shape == expected.shape == (2, 2)
    assert np.abs(out - expected).max() < 1e-5


def test_nosoftmax_port_gives_logits_whose_softmax_matches(seed2, ports):
    _, _, expected = seed2
    logits = ports["nosoftmax"][1]
    assert not np.allclose(logits.sum(axis=1), 1.0, atol=1e-3)
    assert np.abs(softmax(logits) - expected).max() < 1e-5


def test_noperm_port_differs(seed2, ports):
    _, _, expected = seed2
    assert np.abs(ports["noperm"][1] - expected).max() > 1e-3


def test_pad0_port_shrinks_the_maps_and_keeps_the_conv_weights(seed2, ports):
    _, _, expected = seed2
    mxnet = get_worker("mxnet")
    right = mxnet.call(f"{HERE}:in_mxnet_shapes", ports["right"][0], (1, 3, 80, 120))
    pad0 = mxnet.call(f"{HERE}:in_mxnet_shapes", ports["pad0"][0], (1, 3, 80, 120))
    conv0, pool1 = "hybridsequential0_conv0_fwd_output", "hybridsequential0_pool1_fwd_output"
    assert right["outputs"][conv0] == (1, 128, 80, 120) and right["outputs"][pool1] == (1, 256, 20, 30)
    assert pad0["outputs"][conv0] == (1, 128, 78, 118) and pad0["outputs"][pool1] == (1, 256, 18, 28)
    for name in ("hybridsequential0_conv0_weight", "hybridsequential0_conv1_bias"):
        np.testing.assert_array_equal(pad0["params"][name], right["params"][name])
    assert pad0["params"]["hybridsequential0_dense0_weight"].shape == (2, 18 * 28 * 256)
    assert right["params"]["hybridsequential0_dense0_weight"].shape == (2, 20 * 30 * 256)
    assert np.abs(ports["pad0"][1] - expected).max() > 1e-3


def test_ports_use_default_names_and_are_deterministic(seed2, ports, tmp_path):
    h5 = seed2[0]
    again = get_worker("mxnet").call("xvalidate.models.gluon_ports:save_port", "pad0", h5, str(tmp_path / "pad0"))
    first = ports["pad0"][0]
    assert open(again, "rb").read() == open(first, "rb").read()
    assert (open(again.replace("-symbol.json", "-0000.params"), "rb").read()
            == open(first.replace("-symbol.json", "-0000.params"), "rb").read())
    names = [node["name"] for node in json.load(open(ports["right"][0]))["nodes"]]
    assert names[0] == "data" and "hybridsequential0_dense0_fwd" in names
    assert not any("block1_conv1" in n or "final_fully_connected" in n for n in names)


def test_unknown_port_kind_is_refused(seed2, tmp_path):
    with pytest.raises(OptionError, match="'pad2'.*right, pad0, nosoftmax, noperm"):
        get_worker("mxnet").call("xvalidate.models.gluon_ports:save_port", "pad2", seed2[0], str(tmp_path / "p"))


def test_nhwc_input_shape_is_refused_with_the_failed_check(seed2):
    message = get_worker("mxnet").call(f"{HERE}:in_mxnet_transfer_nhwc_shape", seed2[0])
    assert "\n" not in message
    assert "(1, 80, 120, 3)" in message and "kernel size (2) exceeds input (1 padded to 1)" in message
