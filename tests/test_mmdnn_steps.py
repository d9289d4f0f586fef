"""The MMdnn route's steps called directly: keras_to_ir (keras worker), ir_to_mxnet (mxnet worker),
mxnet_name_hints (pure Python). Small models built in code are converted and the MXNet checkpoint
is run against Keras on the same input, at the final output and at every hinted layer.

Framework code runs in workers: the steps, and the helpers at the top of this module."""
import json

import numpy as np
import pytest

from xvalidate.errors import InputFileError, UnsupportedLayerError
from xvalidate.routes.mmdnn_steps import mxnet_name_hints
from xvalidate.worker import get_worker

STEPS = "xvalidate.routes.mmdnn_steps"
HERE = "test_mmdnn_steps"


# ---------------------------------------------------------------- run in the keras worker
def _randomize(model, seed):
    """Random biases (Keras starts them at zero, which would hide a lost bias) and BatchNorm statistics."""
    from xvalidate.models.keras_zoo import randomize_batchnorm

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization" and layer.weights:
            layer.set_weights([w + rng.normal(0.0, 0.1, w.shape).astype("float32") if "bias" in v.name else w
                               for v, w in zip(layer.weights, layer.get_weights())])
    randomize_batchnorm(model, seed)


def save_tiny(kind: str, path: str) -> str:
    """Save a small Keras model exercising one group of shims (or a layer the route cannot convert)."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3), name="input_1")
    if kind == "separable":  # Xception's layer: with a bias, a depth multiplier, asymmetric 'same' padding
        x = layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, name="sep1")(inp)
        x = layers.BatchNormalization(name="sep1_bn")(x)
        x = layers.SeparableConv2D(6, 3, strides=2, padding="same", activation="relu", name="sep2")(x)
        x = layers.SeparableConv2D(4, 3, dilation_rate=2, use_bias=False, name="sep3")(x)
    elif kind == "efficient":  # EfficientNet's layers, plus the pooling, merge and ReLU6 shims
        x = layers.Rescaling([1 / 255.0, 2 / 255.0, 1 / 128.0], offset=-0.5, name="rescaling")(inp)
        x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.5, 2.0, 0.5], name="normalization")(x)
        x = layers.Normalization(mean=[0.5, -0.2, 0.0], variance=[0.25, 4.0, 1.0], invert=True, name="denorm")(x)
        x = layers.Conv2D(8, 3, padding="same", activation="swish", name="stem")(x)
        se = layers.GlobalAveragePooling2D(name="se_squeeze")(x)
        se = layers.Reshape((1, 1, 8), name="se_reshape")(se)
        se = layers.Conv2D(4, 1, activation="swish", name="se_reduce")(se)
        se = layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
        x = layers.Multiply(name="se_excite")([x, se])
        x = layers.Activation(keras.activations.swish, name="act_fn")(x)
        a = layers.AveragePooling2D(3, strides=1, padding="same", name="avg_sym")(x)
        b = layers.AveragePooling2D(2, strides=1, padding="same", name="avg_asym")(x)
        c = layers.ReLU(6.0, name="relu6")(layers.Conv2D(8, 1, name="c_conv")(x))
        x = layers.Add(name="add3")([a, b, c])
    elif kind == "lambda":
        x = layers.Conv2D(4, 3, name="conv")(inp)
        x = layers.Lambda(lambda t: t * 2.0, name="double")(x)
    elif kind == "tf_op":
        import tensorflow as tf

        x = tf.math.floormod(layers.Conv2D(4, 3, name="conv")(inp), 2.0)
    elif kind == "selu":
        x = layers.Conv2D(4, 3, activation="selu", name="conv_selu")(inp)
    elif kind == "bn_axis":
        x = layers.BatchNormalization(axis=1, name="bn_rows")(inp)
    elif kind == "maximum":
        x = layers.Maximum(name="max")([layers.Conv2D(4, 1, name="c1")(inp), layers.Conv2D(4, 1, name="c2")(inp)])
    else:
        raise ValueError(kind)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out, name=kind)
    _randomize(model, 3)
    model.save(path)
    return path


def keras_run(h5: str, x_path: str, out_path: str) -> tuple[str, list[str]]:
    """The model's output on the batch at x_path (saved to out_path), and its layer names."""
    from tensorflow import keras

    model = keras.models.load_model(h5, compile=False)
    np.save(out_path, model(np.load(x_path), training=False).numpy())
    return out_path, [layer.name for layer in model.layers]


# ---------------------------------------------------------------- run in the mxnet worker
def mxnet_run(symbol: str, x_path: str, out_path: str) -> dict:
    """Load the checkpoint as mx.model.load_checkpoint and as a Gluon SymbolBlock, run both on the batch."""
    import mxnet as mx

    prefix = symbol[: -len("-symbol.json")]
    sym, args, aux = mx.model.load_checkpoint(prefix, 0)
    inputs = [name for name in sym.list_arguments() if name not in args]
    x = mx.nd.array(np.load(x_path))
    exe = sym.bind(mx.cpu(), args={**args, inputs[0]: x}, aux_states=aux, grad_req="null")
    y = exe.forward(is_train=False)[0].asnumpy()
    block = mx.gluon.SymbolBlock.imports(symbol, inputs, prefix + "-0000.params")
    np.save(out_path, y)
    return {"inputs": inputs, "same_in_gluon": bool(np.array_equal(block(x).asnumpy(), y))}


# ---------------------------------------------------------------- helpers
def keras(func, *args):
    return get_worker("keras").call(func, *args)


def mxnet(func, *args):
    return get_worker("mxnet").call(func, *args)


def convert(h5: str, work) -> tuple[dict, dict]:
    ir = keras(f"{STEPS}:keras_to_ir", h5, str(work / "ir"))
    built = mxnet(f"{STEPS}:ir_to_mxnet", ir["ir_pb"], ir["ir_npy"], str(work / "mxnet"))
    return ir, built


def check_against_keras(h5: str, built: dict, work, scale: float = 1.0) -> tuple[float, list[str], dict]:
    """Final max |diff| of the checkpoint vs Keras; asserts every hinted MXNet tensor equals its Keras layer."""
    x = np.random.default_rng(0).normal(0.0, scale, (2, 16, 16, 3)).astype("float32")
    np.save(work / "x.npy", x)
    np.save(work / "x_nchw.npy", x.transpose(0, 3, 1, 2))
    k_out, names = keras(f"{HERE}:keras_run", h5, str(work / "x.npy"), str(work / "k.npy"))
    loaded = mxnet(f"{HERE}:mxnet_run", built["symbol"], str(work / "x_nchw.npy"), str(work / "m.npy"))
    assert loaded == {"inputs": ["input_1"], "same_in_gluon": True}
    hints = mxnet_name_hints(built["symbol"], names)
    k_all = get_worker("keras").run(h5, x)
    m_all = get_worker("mxnet").run(built["symbol"], x.transpose(0, 3, 1, 2))
    for mx_name, layer in hints.items():
        got = m_all[mx_name]
        got = got.transpose(0, 2, 3, 1) if got.ndim == 4 else got
        want = k_all[layer]
        assert got.shape == want.shape, (layer, mx_name)
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max())), (layer, mx_name)
    return float(np.abs(np.load(k_out) - np.load(work / "m.npy")).max()), names, hints


# ---------------------------------------------------------------- end to end, small models
def test_seed2_cnn_converts_and_matches(tmp_path):
    h5 = keras("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "seed2.h5"))
    ir, built = convert(h5, tmp_path)
    assert ir["layers"] == 7 and ir["seconds"] > 0 and built["seconds"] > 0  # six layers and the input
    assert {p.name for p in (tmp_path / "ir").iterdir()} == {"ir.json", "ir.pb", "ir.npy", "ir.npy.sha256"}
    assert json.loads((tmp_path / "mxnet" / "model-input.json").read_text()) == {
        "name": "block1_conv1_input", "shape": [None, 3, 80, 120], "layout": "NCHW"}
    x = np.random.default_rng(0).normal(0.0, 1.0, (2, 80, 120, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x_nchw.npy", x.transpose(0, 3, 1, 2))
    k_out, names = keras(f"{HERE}:keras_run", h5, str(tmp_path / "x.npy"), str(tmp_path / "k.npy"))
    mxnet(f"{HERE}:mxnet_run", built["symbol"], str(tmp_path / "x_nchw.npy"), str(tmp_path / "m.npy"))
    assert np.abs(np.load(k_out) - np.load(tmp_path / "m.npy")).max() < 1e-6
    hints = mxnet_name_hints(built["symbol"], names)
    assert hints["final_fully_connected_activation"] == "final_fully_connected"  # the softmax keeps its name
    assert hints["block1_conv1_activation"] == "block1_conv1" and "block1_conv1" not in hints
    assert sorted(hints.values()) == sorted(names)


def test_separable_conv_converts_and_matches(tmp_path):
    h5 = keras(f"{HERE}:save_tiny", "separable", str(tmp_path / "sep.h5"))
    _, built = convert(h5, tmp_path)
    final, names, hints = check_against_keras(h5, built, tmp_path)
    assert final < 1e-6
    assert {"sep1", "sep2_activation", "sep3"} <= set(hints)
    assert "sep1_depthwise" not in hints  # the depthwise half is not the Keras layer's output
    assert sorted(hints.values()) == sorted(n for n in names if n != "input_1")


def test_efficientnet_layers_convert_and_match(tmp_path):
    h5 = keras(f"{HERE}:save_tiny", "efficient", str(tmp_path / "eff.h5"))
    _, built = convert(h5, tmp_path)
    final, names, hints = check_against_keras(h5, built, tmp_path, scale=60.0)
    assert final < 1e-6
    assert hints["relu6_clip"] == "relu6" and hints["stem_activation"] == "stem" and hints["act_fn"] == "act_fn"
    assert hints["add3"] == "add3" and hints["se_excite"] == "se_excite" and hints["pool_flatten"] == "pool"
    assert sorted(hints.values()) == sorted(n for n in names if n != "input_1")


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("kind, layer, detail", [
    ("lambda", "'double' (Lambda)", ""),
    ("tf_op", "'tf.math.floormod' (TFOpLambda)", ": tf.math.floormod has no MMdnn IR op"),
    ("selu", "'conv_selu' (Conv2D)", ": activation 'selu' has no MMdnn IR op"),
    ("bn_axis", "'bn_rows' (BatchNormalization)", ": BatchNormalization over axis"),
])
def test_unconvertible_keras_layers_are_refused(tmp_path, kind, layer, detail):
    h5 = keras(f"{HERE}:save_tiny", kind, str(tmp_path / f"{kind}.h5"))
    get_worker("keras").set_trust_model(kind == "lambda")  # its Lambda is ours: the route is what refuses it
    try:
        with pytest.raises(UnsupportedLayerError) as caught:
            keras(f"{STEPS}:keras_to_ir", h5, str(tmp_path / "ir"))
    finally:
        get_worker("keras").set_trust_model(False)
    message = str(caught.value)
    assert message.startswith(f"{h5}: layer {layer} cannot be converted by route 'mmdnn'{detail}")
    assert message.endswith("; try the ONNX route (via='onnx')") and "\n" not in message
    assert not (tmp_path / "ir" / "ir.pb").exists()  # nothing half-converted is left


def test_ops_the_emitter_lacks_are_refused(tmp_path):
    h5 = keras(f"{HERE}:save_tiny", "maximum", str(tmp_path / "max.h5"))
    ir = keras(f"{STEPS}:keras_to_ir", h5, str(tmp_path / "ir"))
    with pytest.raises(UnsupportedLayerError, match=r"layer 'max' \(IR op Maximum\) cannot be converted by route "
                                                    r"'mmdnn': MMdnn's MXNet emitter has no handler for Maximum; "
                                                    r"try the ONNX route \(via='onnx'\)$"):
        mxnet(f"{STEPS}:ir_to_mxnet", ir["ir_pb"], ir["ir_npy"], str(tmp_path / "mxnet"))
    assert not (tmp_path / "mxnet" / "mxnet_model.py").exists()


def test_ir_weights_not_written_by_the_tool_are_not_unpickled(tmp_path):
    h5 = keras("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "seed2.h5"))
    ir = keras(f"{STEPS}:keras_to_ir", h5, str(tmp_path / "ir"))
    with open(ir["ir_npy"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputFileError, match=r"ir\.npy: not an IR weight file written by keras_to_ir"):
        mxnet(f"{STEPS}:ir_to_mxnet", ir["ir_pb"], ir["ir_npy"], str(tmp_path / "mxnet"))
    with pytest.raises(InputFileError, match=r"missing\.h5: no such model file"):
        keras(f"{STEPS}:keras_to_ir", str(tmp_path / "missing.h5"), str(tmp_path / "ir2"))


# ---------------------------------------------------------------- name hints, pure Python
def _symbol(tmp_path, ops: list[tuple[str, str]]) -> str:
    nodes = [{"op": "null", "name": "input_1", "inputs": []}]
    for op, name in ops:
        nodes.append({"op": op, "name": name, "inputs": [[len(nodes) - 1, 0, 0]]})
    path = tmp_path / "model-symbol.json"
    path.write_text(json.dumps({"nodes": nodes, "heads": [[len(nodes) - 1, 0, 0]]}))
    return str(path)


def test_name_hints_map_the_last_op_of_each_layer(tmp_path):
    symbol = _symbol(tmp_path, [
        ("Convolution", "conv"), ("Activation", "conv_activation"),              # fused activation
        ("Activation", "relu6"), ("clip", "relu6_clip"),                          # ReLU6
        ("Pooling", "pool"), ("Flatten", "pool_flatten"),                         # global pooling
        ("Convolution", "sep_depthwise"), ("Convolution", "sep"),                 # SeparableConv
        ("sigmoid", "act_sigmoid"), ("elemwise_mul", "act"),                      # swish
        ("FullyConnected", "dense"), ("Activation", "dense_activation_other"),
        ("FullyConnected", "head"), ("Activation", "head_activation"),            # a layer of that name exists
        ("sigmoid", "head_activation_sigmoid"), ("elemwise_mul", "head_activation_x"),
    ])
    keras_names = ["input_1", "conv", "relu6", "pool", "sep", "act", "dense", "head", "head_activation", "lost"]
    assert mxnet_name_hints(symbol, keras_names) == {
        "conv_activation": "conv", "relu6_clip": "relu6", "pool_flatten": "pool", "sep": "sep", "act": "act",
        "dense": "dense", "head": "head", "head_activation": "head_activation"}
    with pytest.raises(InputFileError, match="not a readable MXNet symbol file"):
        mxnet_name_hints(str(tmp_path / "nope-symbol.json"), keras_names)


# ---------------------------------------------------------------- keras.applications (slow)
# The models the shims were written for; tests/test_model_matrix.py runs all of them through validate().
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet50", "Xception", "EfficientNetB0", "InceptionV3"])
def test_applications_convert_and_match(tmp_path, name):
    h5 = keras("xvalidate.models.keras_zoo:save", name, str(tmp_path / f"{name}.h5"))
    _, built = convert(h5, tmp_path)
    shape = (299, 299, 3) if name in ("InceptionV3", "Xception") else (224, 224, 3)
    x = np.random.default_rng(0).normal(0.0, 1.0, (1, *shape)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x_nchw.npy", x.transpose(0, 3, 1, 2))
    k_out, names = keras(f"{HERE}:keras_run", h5, str(tmp_path / "x.npy"), str(tmp_path / "k.npy"))
    mxnet(f"{HERE}:mxnet_run", built["symbol"], str(tmp_path / "x_nchw.npy"), str(tmp_path / "m.npy"))
    assert np.abs(np.load(k_out) - np.load(tmp_path / "m.npy")).max() < 1e-5
    assert len(mxnet_name_hints(built["symbol"], names)) == len(names) - 1  # every layer but the input
