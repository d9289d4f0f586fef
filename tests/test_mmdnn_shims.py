"""Each MMdnn shim: what unpatched MMdnn 0.3.1 does on TF2 Keras, and what it does once shimmed.

The shims patch MMdnn's classes for the life of a process, so these checks run in fresh
worker processes of their own (a shared worker may have been shimmed by an earlier test)."""
import warnings

import numpy as np
import pytest

from xvalidate.errors import UnsupportedLayerError
from xvalidate.routes import mmdnn_shims
from xvalidate.worker import Worker

HERE = "test_mmdnn_shims"


# ---------------------------------------------------------------- run in a fresh keras worker
def _attempt(func) -> str:
    try:
        func()
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _tiny_model():
    """A functional model with every layer a parser shim is about."""
    from tensorflow import keras
    from tensorflow.keras import layers

    from xvalidate.models.keras_zoo import randomize_batchnorm

    keras.utils.set_random_seed(5)
    inp = keras.Input((8, 8, 3), name="input_1")
    x = layers.Rescaling([0.5, 0.25, 2.0], offset=-1.0, name="rescaling")(inp)
    x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[4.0, 0.25, 1.0], name="normalization")(x)
    x = layers.Normalization(mean=[1.0, 0.0, -1.0], variance=[9.0, 1.0, 0.0], invert=True, name="denorm")(x)
    x = layers.Conv2D(4, 3, padding="same", activation="swish", name="conv")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation(keras.activations.swish, name="act")(x)
    x = layers.SeparableConv2D(5, 3, name="sep")(x)
    model = keras.Model(inp, x)
    sep = model.get_layer("sep")
    sep.set_weights(sep.get_weights()[:2] + [np.arange(5, dtype="float32")])
    randomize_batchnorm(model)
    return model


def keras_shims_before_and_after() -> dict:
    """Run MMdnn's original code and the shimmed code on the same models; report what each did."""
    from mmdnn.conversion.common.DataStructure.graph import Graph
    from mmdnn.conversion.common.IR import graph_pb2
    from mmdnn.conversion.keras.keras2_graph import Keras2Graph
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    from xvalidate.models.keras_zoo import resnet_block

    model, tiny = resnet_block(), _tiny_model()
    original = dict(vars(Keras2Parser))
    original_graph_build = Keras2Graph.build
    before = {"graph_type": _attempt(lambda: Keras2Graph(model))}
    graph = Keras2Graph.__new__(Keras2Graph)
    Graph.__init__(graph, model)
    graph.model = model
    before["graph_inbound"] = _attempt(lambda: original_graph_build(graph))

    class InputNode:
        layer = model.layers[0]
    before["output_shape"] = _attempt(lambda: original["_set_output_shape"].__func__(InputNode, graph_pb2.NodeDef()))
    before["rescaling_handler"] = "rename_Rescaling" in original and "rename_Normalization" in original

    mmdnn_shims.apply_keras_shims()
    patched = {name: getattr(Keras2Parser, name) for name in ("rename_BatchNormalization", "_set_output_shape")}
    mmdnn_shims.apply_keras_shims()
    idempotent = all(getattr(Keras2Parser, name) is f for name, f in patched.items())

    # the parser's handlers as MMdnn wrote them, on a parser built with the shimmed graph
    parser = mmdnn_shims.keras_parser(tiny)
    node = parser.keras_graph.get_node
    before["bn_axis"] = _attempt(lambda: original["rename_BatchNormalization"](parser, node("bn")))
    parser.activation_map = original["activation_map"]
    before["swish"] = _attempt(lambda: original["rename_Activation"](parser, node("act")))
    original["rename_SeparableConv2D"](parser, node("sep"))
    before["separable_weights"] = sorted(parser.weights["sep"])

    parser = mmdnn_shims.keras_parser(tiny)
    for name in parser.keras_graph.topological_sort:
        getattr(parser, "rename_" + parser.keras_graph.get_node(name).type)(parser.keras_graph.get_node(name))
    ir = {n.name: n for n in parser.IR_graph.node}
    dims = lambda n, key: [d.size for d in (n.attr[key].shape if key == "shape" else n.attr[key].list.shape[0]).dim]  # noqa: E731
    after = {
        "graph_edges": sum(len(parser.keras_graph.get_node(n).in_edges) for n in parser.keras_graph.topological_sort),
        "input_shape": dims(ir["input_1"], "shape"),
        "input_output_shape": dims(ir["input_1"], "_output_shapes"),
        "bn_axis": ir["bn"].attr["axis"].i,
        "ops": {name: n.op for name, n in ir.items()},
        "inputs": {name: list(n.input) for name, n in ir.items()},
        "weights": {name: {k: np.asarray(v).tolist() for k, v in parser.weights[name].items()}
                    for name in ("rescaling", "normalization", "denorm", "sep")},
        "sep_bias": tiny.get_layer("sep").get_weights()[2].tolist(),
        "graph_type": type(Keras2Graph(model)).__name__,
    }
    return {"before": before, "after": after, "idempotent": idempotent}


# ---------------------------------------------------------------- run in a fresh mxnet worker
EMITTER_SHIMS = ("emit_SeparableConv", "emit_Swish", "emit_Reshape", "emit_Softmax", "emit_Pool", "emit_Add", "emit_Mul")


def mxnet_shims_before_and_after() -> dict:
    from mmdnn.conversion.mxnet.mxnet_emitter import MXNetEmitter

    before = {name: getattr(MXNetEmitter, name, None) for name in EMITTER_SHIMS}
    mmdnn_shims.apply_mxnet_shims()
    after = {name: getattr(MXNetEmitter, name) for name in EMITTER_SHIMS}
    mmdnn_shims.apply_mxnet_shims()
    return {"missing_before": [n for n in EMITTER_SHIMS if before[n] is None],
            "replaced": [n for n in EMITTER_SHIMS if after[n] is not before[n]],
            "idempotent": all(getattr(MXNetEmitter, n) is after[n] for n in EMITTER_SHIMS)}


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def keras_found():
    worker = Worker("keras")
    try:
        yield worker.call(f"{HERE}:keras_shims_before_and_after")
    finally:
        worker.close()


def test_graph_type_shim_accepts_functional(keras_found):
    assert "Keras layer of type <class 'keras.engine.functional.Functional'> is not supported" in \
        keras_found["before"]["graph_type"]
    assert keras_found["after"]["graph_type"] == "Keras2Graph"


def test_graph_inbound_shim_takes_a_single_inbound_layer(keras_found):
    assert keras_found["before"]["graph_inbound"] == "TypeError: 'InputLayer' object is not iterable"
    assert keras_found["after"]["graph_edges"] == 7  # a chain of eight layers
    assert keras_found["after"]["inputs"]["sep"] == ["act"]


def test_output_shape_shim_unwraps_the_input_layer_shape(keras_found):
    assert keras_found["before"]["output_shape"].startswith("TypeError: Cannot set TensorShape.Dim.size to (None, 32")
    assert keras_found["after"]["input_shape"] == [-1, 8, 8, 3]
    assert keras_found["after"]["input_output_shape"] == [-1, 8, 8, 3]


def test_bn_axis_shim_coerces_the_list_wrapper(keras_found):
    assert keras_found["before"]["bn_axis"].startswith("TypeError: Cannot set AttrValue.i to ListWrapper([3])")
    assert keras_found["after"]["bn_axis"] == 3


def test_swish_shim_maps_activation_functions_to_an_ir_op(keras_found):
    assert keras_found["before"]["swish"] == "AttributeError: 'function' object has no attribute 'name'"
    ops = keras_found["after"]["ops"]
    assert ops["act"] == "Swish" and ops["conv_activation"] == "Swish" and ops["conv"] == "Conv"


def test_separable_shim_keeps_the_bias(keras_found):
    assert keras_found["before"]["separable_weights"] == ["depthwise_filter", "pointwise_filter"]
    weights = keras_found["after"]["weights"]["sep"]
    assert weights["bias"] == keras_found["after"]["sep_bias"] == [0.0, 1.0, 2.0, 3.0, 4.0]


def _batchnorm_output(w, x):
    """What MXNet's BatchNorm computes from the IR weights (epsilon as the shim sets it)."""
    var = np.asarray(w["var"]) + mmdnn_shims.BN_EPSILON
    return (x - np.asarray(w["mean"])) / np.sqrt(var) * np.asarray(w["scale"]) + np.asarray(w["bias"])


def test_rescaling_and_normalization_become_batchnorm(keras_found):
    assert keras_found["before"]["rescaling_handler"] is False
    after = keras_found["after"]
    assert after["ops"]["rescaling"] == after["ops"]["normalization"] == after["ops"]["denorm"] == "BatchNorm"
    assert after["inputs"]["normalization"] == ["rescaling"] and after["inputs"]["conv"] == ["denorm"]
    x = np.random.default_rng(0).normal(0.0, 3.0, (10, 3))
    w = after["weights"]
    np.testing.assert_allclose(_batchnorm_output(w["rescaling"], x), x * [0.5, 0.25, 2.0] - 1.0, rtol=1e-6)
    np.testing.assert_allclose(_batchnorm_output(w["normalization"], x),
                               (x - [0.1, 0.2, 0.3]) / np.sqrt([4.0, 0.25, 1.0]), rtol=1e-6)
    # invert=True: mean + x * max(std, epsilon); a zero variance keeps Keras's 1e-7 floor
    np.testing.assert_allclose(_batchnorm_output(w["denorm"], x), [1.0, 0.0, -1.0] + x * [3.0, 1.0, 1e-7],
                               rtol=1e-6, atol=1e-6)


def test_keras_shims_are_idempotent(keras_found):
    assert keras_found["idempotent"]


def test_mxnet_shims_add_the_missing_emitters_once():
    worker = Worker("mxnet")
    try:
        found = worker.call(f"{HERE}:mxnet_shims_before_and_after")
    finally:
        worker.close()
    assert found["missing_before"] == ["emit_SeparableConv", "emit_Swish"]
    assert found["replaced"] == list(EMITTER_SHIMS) and found["idempotent"]


def test_version_check_warns_once_for_another_mmdnn(monkeypatch):
    monkeypatch.setattr(mmdnn_shims, "_applied", set())
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.3.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            mmdnn_shims.check_mmdnn_version()
    assert [str(w.message) for w in caught] == [
        "xvalidate's MMdnn shims were written for mmdnn 0.3.1; found 0.3.0: conversions may fail or differ"]
    monkeypatch.setattr(mmdnn_shims, "_applied", set())
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.3.1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mmdnn_shims.check_mmdnn_version()
    assert caught == []


# ---------------------------------------------------------------- the layers of keras.applications (mmdnn_ops)
def save_applications_ops(path: str) -> str:
    """A small model with every layer mmdnn_ops converts: TFOpLambda arithmetic (hard-sigmoid and
    hard-swish as MobileNetV3 writes them), Cropping2D, hard_sigmoid, a depth multiplier, a grouped
    convolution, LayerNormalization, gelu, InceptionResNetV2's CustomScaleLayer, a plain ReLU and
    a keepdims global pooling. Random weights and normalization parameters."""
    from tensorflow import keras
    from tensorflow.keras import layers
    from keras.applications.inception_resnet_v2 import CustomScaleLayer

    keras.utils.set_random_seed(3)
    keras.backend.reset_uids()
    inp = keras.Input((16, 16, 4), name="input_1")
    a = layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    hard_sigmoid = layers.ReLU(6.0, name="relu6")(a + 3.0) * (1.0 / 6.0)
    x = layers.Multiply(name="hard_swish")([a, hard_sigmoid])
    x = 1.0 - (x - a) / 2.0
    x = layers.Activation("hard_sigmoid", name="hsig")(x)
    x = layers.Cropping2D(((1, 2), (0, 1)), name="crop")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = layers.Conv2D(8, 3, groups=2, padding="same", name="gconv")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="ln")(x)
    x = layers.Activation("gelu", name="gelu")(x)
    y = layers.Conv2D(8, 1, name="branch")(x)
    x = CustomScaleLayer(0.17, name="scaled_add")([x, y])
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    x = layers.Conv2D(5, 1, name="logits")(x)
    x = layers.Flatten(name="flat")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(3)
    ln = model.get_layer("ln")
    ln.set_weights([rng.uniform(0.5, 1.5, 8).astype("float32"), rng.normal(0, 0.2, 8).astype("float32")])
    model.save(path)
    return path


def save_nested_pointwise(path: str) -> str:
    """ConvNeXt's shape in small: a nested Sequential stem (Conv2D + LayerNormalization), Dense layers on
    the 4-D feature map (pointwise), gelu, an Activation("linear") and a residual add written as `x + y`."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(4)
    inp = keras.Input((12, 12, 3), name="input_1")
    stem = keras.Sequential([layers.Conv2D(8, 2, strides=2, name="stem_conv"),
                             layers.LayerNormalization(epsilon=1e-6, name="stem_ln")], name="stem")
    x = stem(inp)
    y = layers.Dense(16, name="pointwise_1")(x)
    y = layers.Activation("gelu", name="gelu")(y)
    y = layers.Dense(8, name="pointwise_2")(y)
    y = layers.Activation("linear", name="identity")(y)
    x = x + y
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(inp, layers.Dense(3, name="head")(x)).save(path)
    return path


def save_refused(kind: str, path: str) -> str:
    """A model with one layer that MMdnn cannot convert exactly."""
    import tensorflow as tf
    from tensorflow import keras
    from tensorflow.keras import layers

    inp = keras.Input((8, 8, 3) if kind != "free_size" else (None, None, 3), name="input_1")
    x = layers.Conv2D(4, 3, name="conv")(inp)
    if kind == "leaky_relu":
        x = layers.ReLU(negative_slope=0.1, name="leaky")(x)
    elif kind == "floormod":
        x = tf.math.floormod(x, 2.0)
    keras.Model(inp, x).save(path)
    return path


def unshimmed_handlers() -> dict:
    """Which parser and emitter handlers MMdnn 0.3.1 lacks before the shims (fresh worker)."""
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    names = ("rename_TFOpLambda", "rename_CustomScaleLayer", "rename_LayerNormalization", "rename_LayerScale")
    return {name: hasattr(Keras2Parser, name) for name in names}


def unshimmed_emitters() -> dict:
    from mmdnn.conversion.mxnet.mxnet_emitter import MXNetEmitter

    names = ("emit_Crop", "emit_HardSigmoid", "emit_ScalarOp", "emit_ScaleAdd", "emit_LayerNorm", "emit_Gelu", "emit_Div")
    return {name: hasattr(MXNetEmitter, name) for name in names}


def test_mmdnn_lacks_the_handlers_of_applications_layers():
    for adapter, func in (("keras", "unshimmed_handlers"), ("mxnet", "unshimmed_emitters")):
        worker = Worker(adapter)
        try:
            assert not any(worker.call(f"{HERE}:{func}").values())
        finally:
            worker.close()


def test_applications_layers_convert_exactly_through_mmdnn(tmp_path):
    import xvalidate
    from xvalidate.worker import get_worker

    h5 = get_worker("keras").call(f"{HERE}:save_applications_ops", str(tmp_path / "ops.h5"))
    report = xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", cache=False, batch=2)
    assert report.passed, report.summary()
    paired = {r.src for r in report.layers}
    assert {"crop", "dw", "gconv", "ln", "gelu", "scaled_add", "relu", "gap", "hsig", "hard_swish"} <= paired
    assert sum(name.startswith("tf.") for name in paired) == 5  # + 3.0, * 1/6, - a, / 2.0, 1.0 - ...
    assert report.layers[-1].src == "flat" and report.layers[-1].metrics["max_abs"] < 1e-5


def test_nested_models_and_pointwise_dense_convert_through_mmdnn(tmp_path):
    """MMdnn's parser reads one graph: the nested stem is inlined, its layers keep their names; a Dense on a
    4-D tensor becomes a 1x1 convolution (MXNet's FullyConnected would flatten it)."""
    import xvalidate
    from xvalidate.worker import get_worker

    h5 = get_worker("keras").call(f"{HERE}:save_nested_pointwise", str(tmp_path / "nested.h5"))
    report = xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", cache=False, batch=2)
    assert report.passed, report.summary()
    assert not report.unmatched["src"]
    assert {"stem/stem_conv", "stem/stem_ln", "pointwise_1", "gelu", "pointwise_2", "identity"} <= {
        r.src for r in report.layers}
    assert report.layers[-1].src == "head" and report.layers[-1].metrics["max_abs"] < 1e-5


@pytest.mark.parametrize("kind, message", [
    ("leaky_relu", r"layer 'leaky' \(ReLU\) cannot be converted by route 'mmdnn': ReLU\(max_value=None, "
                   r"negative_slope=0.1.*MMdnn converts only ReLU and ReLU6; try the ONNX route"),
    ("floormod", r"layer 'tf.math.floormod' \(TFOpLambda\) cannot be converted by route 'mmdnn': "
                 r"tf.math.floormod has no MMdnn IR op .*; try the ONNX route"),
    ("free_size", r"layer 'input_1' \(InputLayer\) .*MMdnn needs a fixed input size, the input is "
                  r"\(None, None, None, 3\)"),
])
def test_what_mmdnn_cannot_convert_is_named_with_the_route_that_works(tmp_path, kind, message):
    import xvalidate
    from xvalidate.worker import get_worker

    h5 = get_worker("keras").call(f"{HERE}:save_refused", kind, str(tmp_path / f"{kind}.h5"))
    with pytest.raises(UnsupportedLayerError, match=message):
        xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", cache=False)


def test_generated_code_names_are_identifiers():
    from xvalidate.routes.mmdnn_ops import identifier

    assert identifier("1_head_gap") == "v1_head_gap"
    assert identifier("tf.__operators__.add_12") == "tf___operators___add_12"
    assert identifier("expanded_conv/squeeze_excite/AvgPool") == "expanded_conv_squeeze_excite_AvgPool"
