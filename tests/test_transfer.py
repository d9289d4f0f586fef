"""transfer_weights: Keras conv / depthwise / BatchNorm / Dense weights into a Gluon port, and its refusals.

The functions prefixed `in_keras_` / `in_mxnet_` run in the framework workers."""
import numpy as np
import pytest

from xvalidate.errors import ConversionError, InputFileError
from xvalidate.transfer import read_keras_weights
from xvalidate.worker import get_worker

HERE = "test_transfer"
INPUT = (6, 10, 3)  # H != W, so a wrong flatten order cannot pass by symmetry


def in_keras_bn_model(h5: str, x: np.ndarray):
    """Build, save and run a conv-BN-relu-depthwise-conv-BN-relu-flatten-dense model; also return its
    weights read from memory."""
    from tensorflow import keras
    from tensorflow.keras import layers

    from xvalidate.models.keras_zoo import randomize_batchnorm
    from xvalidate.transfer import read_keras_weights

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv_a", input_shape=INPUT),
        layers.BatchNormalization(name="bn_a"),
        layers.Activation("relu", name="relu_a"),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw"),
        layers.Conv2D(5, 3, name="conv_b"),
        layers.BatchNormalization(scale=False, center=False, name="bn_b"),
        layers.Activation("relu", name="relu_b"),
        layers.Flatten(name="flatten"),
        layers.Dense(3, activation="softmax", name="predictions"),
    ])
    randomize_batchnorm(model, seed=1)
    model.save(h5)
    return model(x).numpy(), read_keras_weights(model)


def _bn_port(first_padding: int = 1, with_second_bn: bool = True):
    import mxnet as mx
    from mxnet.gluon import nn

    with mx.name.NameManager():
        net = nn.HybridSequential()
        with net.name_scope():
            net.add(nn.Conv2D(4, 3, padding=first_padding, use_bias=False), nn.BatchNorm(epsilon=1e-3),
                    nn.Activation("relu"), nn.Conv2D(8, 3, padding=1, groups=4), nn.Conv2D(5, 3))
            if with_second_bn:
                net.add(nn.BatchNorm(epsilon=1e-3, scale=False, center=False))
            net.add(nn.Activation("relu"), nn.Flatten(), nn.Dense(3), nn.HybridLambda("softmax"))
    return net


def in_mxnet_transfer_and_run(src, x_nchw: np.ndarray, prepare: str):
    """Transfer into the Gluon port prepared as `prepare` ("fresh": never initialized; "hybridized": initialized,
    hybridized and run once), then run it. Returns (pairs, output)."""
    import mxnet as mx

    from xvalidate.transfer import transfer_weights

    mx.random.seed(0)
    net = _bn_port()
    if prepare == "hybridized":
        net.initialize()
        net.hybridize()
        net(mx.nd.zeros((1, 3) + INPUT[:2]))
    pairs = transfer_weights(src, net)
    return pairs, net(mx.nd.array(x_nchw)).asnumpy()


def in_mxnet_refusal(h5: str, port: str) -> tuple[str, str, bool]:
    """Transfer into a mismatched port; return (error type, message, whether the port kept its own weights)."""
    import mxnet as mx

    from xvalidate.transfer import transfer_weights

    net = _bn_port(first_padding=0) if port == "pad0" else _bn_port(with_second_bn=False)
    net.initialize()
    net(mx.nd.zeros((1, 3) + INPUT[:2]))
    before = net[0].weight.data().asnumpy().copy()
    try:
        transfer_weights(h5, net)
    except ConversionError as exc:
        return type(exc).__name__, str(exc), bool(np.array_equal(before, net[0].weight.data().asnumpy()))
    return "", "", False


@pytest.fixture(scope="module")
def bn_model(tmp_path_factory):
    h5 = str(tmp_path_factory.mktemp("bn") / "bn_model.h5")
    x = np.random.default_rng(2).normal(0, 1, (4, *INPUT)).astype("float32")
    expected, in_memory = get_worker("keras").call(f"{HERE}:in_keras_bn_model", h5, x)
    return h5, x, expected, in_memory


def test_read_keras_h5_without_frameworks(bn_model):
    h5 = bn_model[0]
    weights = read_keras_weights(h5)
    assert [(l.name, l.kind) for l in weights.layers] == [
        ("conv_a", "conv"), ("bn_a", "bn"), ("dw", "dwconv"), ("conv_b", "conv"), ("bn_b", "bn"),
        ("predictions", "dense")]
    assert sorted(weights.layers[4].arrays) == ["moving_mean", "moving_variance"]
    assert "bias" not in weights.layers[0].arrays
    assert weights.layers[5].flatten == "flatten" and weights.layers[5].arrays["kernel"].shape == (4 * 8 * 5, 3)
    assert weights.input_shape == (None, *INPUT) and weights.nchw_input_shape == (1, 3, 6, 10)


@pytest.mark.parametrize("prepare", ["fresh", "hybridized"])
def test_bn_model_transfer_matches_keras(bn_model, prepare):
    h5, x, expected, _ = bn_model
    pairs, out = get_worker("mxnet").call(f"{HERE}:in_mxnet_transfer_and_run", h5, x.transpose(0, 3, 1, 2), prepare)
    assert [k for k, _ in pairs] == ["conv_a", "bn_a", "dw", "conv_b", "bn_b", "predictions"]
    assert [g for _, g in pairs] == ["hybridsequential0_conv0", "hybridsequential0_batchnorm0",
                                     "hybridsequential0_conv1", "hybridsequential0_conv2",
                                     "hybridsequential0_batchnorm1", "hybridsequential0_dense0"]
    assert np.abs(out - expected).max() < 1e-5


def test_in_memory_keras_weights_match_the_h5(bn_model):
    _, x, expected, in_memory = bn_model
    assert in_memory.layers[5].flatten_input == (4, 8, 5)
    _, out = get_worker("mxnet").call(f"{HERE}:in_mxnet_transfer_and_run", in_memory, x.transpose(0, 3, 1, 2),
                                      "fresh")
    assert np.abs(out - expected).max() < 1e-5


def test_dense_in_features_mismatch_is_refused_before_copying(bn_model):
    kind, message, untouched = get_worker("mxnet").call(f"{HERE}:in_mxnet_refusal", bn_model[0], "pad0")
    assert kind == "ConversionError" and "\n" not in message
    assert "'predictions'" in message and "'hybridsequential0_dense0'" in message
    assert "(160, 3)" in message and "(3, 60)" in message
    assert untouched


def test_layer_count_mismatch_is_refused(bn_model):
    kind, message, _ = get_worker("mxnet").call(f"{HERE}:in_mxnet_refusal", bn_model[0], "no_bn")
    assert kind == "ConversionError" and "\n" not in message
    assert "6 weight-bearing layers" in message and "has 5" in message


def test_non_keras_file_is_refused(tmp_path):
    bad = tmp_path / "model.h5"
    bad.write_text("not hdf5")
    with pytest.raises(InputFileError, match="model.h5: not an HDF5 file"):
        read_keras_weights(str(bad))
    with pytest.raises(InputFileError, match="no such file"):
        read_keras_weights(str(tmp_path / "missing.h5"))
