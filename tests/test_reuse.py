"""Layers and blocks called more than once: every call is captured under its own name (name, name@1)
with its inputs wired right, and a correct conversion of such a model passes with every call paired."""
import numpy as np
import pytest

import xvalidate
from xvalidate.worker import get_worker

HERE = "test_reuse"


def in_keras_save_siamese(path: str) -> str:
    """Two branches through one shared Conv2D, then through one shared nested model."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(0)
    x_in = keras.Input((16, 16, 3), name="image")
    a = layers.Conv2D(8, 3, padding="same", name="pre_a")(x_in)
    b = layers.Conv2D(8, 3, strides=1, padding="same", name="pre_b")(x_in)
    shared = layers.Conv2D(8, 3, padding="same", activation="relu", name="shared")
    t_in = keras.Input((16, 16, 8))
    tower = keras.Model(t_in, layers.Conv2D(4, 1, activation="sigmoid", name="proj")(t_in), name="tower")
    ta, tb = tower(shared(a)), tower(shared(b))
    x = layers.Concatenate(name="join")([ta, tb])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(x_in, layers.Dense(3, name="logits")(x), name="siamese")
    model.save(path)
    return path


def in_mxnet_export_reused_activation(prefix: str) -> str:
    """A Gluon net that calls one Activation block after each of its two convolutions."""
    import mxnet as mx
    from mxnet.gluon import nn

    class Net(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.conv1 = nn.Conv2D(8, 3, padding=1)
                self.conv2 = nn.Conv2D(8, 3, padding=1)
                self.act = nn.Activation("relu")
                self.out = nn.Dense(3)

        def hybrid_forward(self, F, x):
            return self.out(self.act(self.conv2(self.act(self.conv1(x)))))

    mx.random.seed(0)
    with mx.name.NameManager():
        net = Net(prefix="net_")
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, 12, 12)))
    net.export(prefix)
    return prefix + "-symbol.json"


@pytest.fixture(scope="module")
def siamese(tmp_path_factory):
    return get_worker("keras").call(f"{HERE}:in_keras_save_siamese", str(tmp_path_factory.mktemp("reuse") / "s.h5"))


def test_shared_layer_and_shared_nested_model_are_captured_per_call(siamese):
    layers = {info.name: info for info in get_worker("keras").layers(siamese)}
    assert layers["shared"].inputs == ["pre_a"] and layers["shared@1"].inputs == ["pre_b"]
    assert layers["tower/proj"].inputs == ["shared"] and layers["tower@1/proj"].inputs == ["shared@1"]
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype("float32")
    out = xvalidate.run("keras", siamese, x)
    assert not np.allclose(out["shared"], out["shared@1"])
    np.testing.assert_allclose(out["join"], np.concatenate([out["tower/proj"], out["tower@1/proj"]], -1), rtol=1e-6)


def test_siamese_model_passes_keras_to_onnx_with_every_call_paired(siamese):
    report = xvalidate.validate(siamese, src="keras", dst="onnx", via="onnx", batch=2)
    assert report.passed, report.summary()
    paired = {row.src: row.dst for row in report.layers}
    for name in ("shared", "shared@1", "tower/proj", "tower@1/proj"):
        assert name in paired, (name, report.unmatched_reasons.get(name))
    assert paired["shared"] != paired["shared@1"] and paired["tower/proj"] != paired["tower@1/proj"]


def test_siamese_model_against_itself_pairs_every_layer(siamese):
    report = xvalidate.compare(siamese, siamese, src="keras", dst="keras")
    assert report.passed and not report.unmatched["src"] and len(report.layers) == 9


def test_reused_gluon_activation_block(tmp_path):
    symbol = get_worker("mxnet").call(f"{HERE}:in_mxnet_export_reused_activation", str(tmp_path / "net"))
    x = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype("float32")
    out = xvalidate.run("mxnet", symbol, x)
    assert {"net_relu0_fwd", "net_relu0_fwd@1"} <= set(out)
    np.testing.assert_array_equal(out["net_relu0_fwd@1"], np.maximum(out["net_conv1_fwd"], 0))
    layers = {info.name: info for info in get_worker("mxnet").layers(symbol)}
    assert layers["net_conv1_fwd"].inputs == ["net_relu0_fwd"] and layers["net_relu0_fwd@1"].inputs == ["net_conv1_fwd"]
    report = xvalidate.compare(symbol, symbol, src="mxnet", dst="mxnet", inputs=x)
    assert report.passed and not report.unmatched["src"] and len(report.layers) == len(out)
