"""The onnx adapter, run in the onnx worker: every node output captured in one onnxruntime run,
equal to a plain run; kinds, shapes and layouts of tf2onnx and hand-built graphs; bad input refused."""
import numpy as np
import pytest

import xvalidate
from xvalidate.errors import InputFileError, InputShapeError, UnknownLayerError
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the onnx worker
def plain_forward(path: str, x: np.ndarray) -> dict:
    """onnxruntime's own run (default optimizations) and the number of node outputs."""
    import onnx
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = sum(1 for node in onnx.load(path).graph.node for o in node.output if o)
    return {"final": session.run(None, {session.get_inputs()[0].name: x})[0], "outputs": outputs}


def save_hand_built(path: str, seed: int = 0) -> str:
    """An NCHW graph built node by node: depthwise Conv, Clip(0, 6), a two-output Split added back
    together, a grouped Conv, Relu, Transpose to NHWC, Flatten, Gemm (transB), Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w_dw"], ["dw"], group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["dw", "zero", "six"], ["relu6"]),
        helper.make_node("Split", ["relu6"], ["half_a", "half_b"], axis=1, split=[2, 2]),
        helper.make_node("Add", ["half_a", "half_b"], ["halves_sum"]),
        helper.make_node("Concat", ["halves_sum", "half_a"], ["joined"], axis=1),
        helper.make_node("Conv", ["joined", "w_grp"], ["grp"], group=2, kernel_shape=[1, 1]),
        helper.make_node("Relu", ["grp"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["nhwc"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w_fc", "b_fc"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    initializers = [weight("w_dw", (4, 1, 3, 3)), weight("w_grp", (6, 2, 1, 1)), weight("w_fc", (3, 6 * 5 * 5)),
                    weight("b_fc", (3,)), numpy_helper.from_array(np.array(0, np.float32), "zero"),
                    numpy_helper.from_array(np.array(6, np.float32), "six")]
    graph = helper.make_graph(nodes, "hand_built",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def save_unrunnable(path: str) -> str:
    """A well-formed ONNX file with an op onnxruntime does not have."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="org.example")], "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11),
                                                      helper.make_opsetid("org.example", 1)]), path)
    return path


def run_in_memory(path: str, x: np.ndarray) -> dict:
    """The adapter on the ModelProto of `path` (loaded in memory): its source name and its final output."""
    import onnx

    from xvalidate_adapters.onnx import OnnxAdapter

    adapter = OnnxAdapter()
    proto = onnx.load(path)
    model = adapter.load(proto)
    return {"owns": adapter.owns(proto), "source": model.source, "final": list(adapter.run(model, x).values())[-1]}


def save_fusable(path: str, seed: int = 0) -> str:
    """A graph onnxruntime fuses at its full level when nothing else reads the inner tensors:
    Conv + BatchNormalization + Relu, Conv + residual Add + Relu, MatMul + Add (bias) + Relu."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, shape, low=None):
        value = rng.uniform(low, 1.5, shape) if low is not None else rng.standard_normal(shape) * 0.3
        return numpy_helper.from_array(value.astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["conv1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv1", "gamma", "beta", "mean", "var"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["relu1"]),
        helper.make_node("Conv", ["relu1", "w2", "b2"], ["conv2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["conv2", "relu1"], ["residual"]),
        helper.make_node("Relu", ["residual"], ["relu2"]),
        helper.make_node("GlobalAveragePool", ["relu2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w_fc"], ["fc"]),
        helper.make_node("Add", ["fc", "b_fc"], ["fc_bias"]),
        helper.make_node("Relu", ["fc_bias"], ["fc_relu"]),
    ]
    initializers = [weight("w1", (8, 3, 3, 3)), weight("b1", (8,)), weight("gamma", (8,), 0.5),
                    weight("beta", (8,)), weight("mean", (8,)), weight("var", (8,), 0.5),
                    weight("w2", (8, 8, 3, 3)), weight("b2", (8,)), weight("w_fc", (8, 5)), weight("b_fc", (5,))]
    graph = helper.make_graph(nodes, "fusable", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
                              [helper.make_tensor_value_info("fc_relu", TensorProto.FLOAT, ["N", 5])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def capture_vs_basic_level(path: str, x: np.ndarray) -> dict:
    """The adapter's capture and one by a session at the basic optimization level, every node output
    a graph output in both: the names, the adapter's optimization level, the largest relative difference."""
    import onnx
    import onnxruntime as ort

    from xvalidate_adapters.onnx import OnnxAdapter

    adapter = OnnxAdapter()
    model = adapter.load(path)
    captured = adapter.run(model, x)
    (session,) = model.sessions.values()
    proto = onnx.load(path)
    names = [o for node in proto.graph.node for o in node.output]
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.helper.ValueInfoProto(name=name) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    basic = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = dict(zip(names, basic.run(names, {"x": x})))
    return {"names": list(captured), "expected": names,
            "level": str(session.get_session_options().graph_optimization_level),
            "max_rel": max(float(np.abs(captured[n] - values[n]).max() / np.abs(values[n]).max()) for n in names)}


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx_adapter")
    keras = get_worker("keras")
    out = {"dir": d}
    for name, builder in (("seed2", "seed2_cnn"), ("block", "resnet_block")):
        h5 = keras.call("xvalidate.models.keras_zoo:save", builder, str(d / f"{name}.h5"))
        out[name] = keras.call("xvalidate.routes.onnx_steps:keras_to_onnx", h5, str(d / f"{name}.onnx"), 11)["onnx"]
    out["hand"] = get_worker("onnx").call("test_adapter_onnx:save_hand_built", str(d / "hand.onnx"))
    return out


@pytest.mark.parametrize("name, shape", [("seed2", (2, 80, 120, 3)), ("block", (3, 32, 32, 3)), ("hand", (2, 4, 5, 5))])
def test_capture_equals_plain_forward(models, name, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    captured = xvalidate.run("onnx", models[name], x)
    plain = get_worker("onnx").call("test_adapter_onnx:plain_forward", models[name], x)
    layers = get_worker("onnx").layers(models[name])
    assert list(captured) == [info.name for info in layers] and len(captured) == plain["outputs"]
    assert all(captured[info.name].shape[1:] == info.shape[1:] for info in layers)
    np.testing.assert_allclose(list(captured.values())[-1], plain["final"], rtol=1e-6, atol=1e-7)


def test_fully_optimized_capture_keeps_every_tensor(tmp_path):
    path = get_worker("onnx").call("test_adapter_onnx:save_fusable", str(tmp_path / "fusable.onnx"))
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 9)).astype(np.float32)
    result = get_worker("onnx").call("test_adapter_onnx:capture_vs_basic_level", path, x)
    assert result["level"].endswith("ORT_ENABLE_ALL")
    assert result["names"] == result["expected"] and len(result["names"]) == 11  # no fused tensor is lost
    assert result["max_rel"] <= 1e-5  # the fused kernels round differently, nothing more


def test_tf2onnx_graph_kinds_and_layouts(models):
    layers = get_worker("onnx").layers(models["seed2"])
    assert [(i.op, i.kinds[0], i.layout) for i in layers] == [
        ("Transpose", "identity", "NCHW"), ("Conv", "conv", "NCHW"), ("Relu", "relu", "NCHW"),
        ("MaxPool", "maxpool", "NCHW"), ("Conv", "conv", "NCHW"), ("Relu", "relu", "NCHW"),
        ("MaxPool", "maxpool", "NCHW"), ("Transpose", "identity", "NHWC"), ("Reshape", "flatten", "NC"),
        ("MatMul", "dense", "NC"), ("Softmax", "softmax", "NC")]
    conv = layers[1]
    assert conv.name == "seed2_cnn/block1_conv1/Conv2D:0" and conv.shape == (None, 128, 80, 120)
    assert conv.attrs["kernel"] == [3, 3] and conv.attrs["padding"] == [1, 1, 1, 1] and conv.attrs["filters"] == 128
    assert layers[2].inputs == [conv.name] and layers[0].inputs == []
    assert layers[-1].name == "final_fully_connected" and layers[-2].attrs["units"] == 2
    info = get_worker("onnx").input_info(models["seed2"])
    assert (info.shape, info.dtype, info.layout) == ((None, 80, 120, 3), "float32", "NHWC")


def test_hand_built_graph_kinds_layouts_and_multi_output(models):
    layers = {i.name: i for i in get_worker("onnx").layers(models["hand"])}
    assert {name: i.kinds for name, i in layers.items()} == {
        "dw": ["dwconv"], "relu6": ["relu6"], "half_a": ["other"], "half_b": ["other"], "halves_sum": ["add"],
        "joined": ["concat"], "grp": ["conv"], "relu": ["relu"], "nhwc": ["identity"], "flat": ["flatten"],
        "logits": ["dense"], "probs": ["softmax"]}
    assert [layers[n].layout for n in ("dw", "half_b", "joined", "relu", "nhwc", "flat")] == [
        "NCHW", "NCHW", "NCHW", "NCHW", "NHWC", "NC"]
    assert layers["half_b"].shape == (None, 2, 5, 5) and layers["halves_sum"].inputs == ["half_a", "half_b"]
    assert layers["logits"].attrs["units"] == 3 and layers["grp"].attrs["filters"] == 6
    assert get_worker("onnx").input_info(models["hand"]).layout == "NCHW"
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 5)).astype(np.float32)
    captured = xvalidate.run("onnx", models["hand"], x, layers=["halves_sum", "half_a", "half_b", "relu6"])
    assert list(captured) == ["relu6", "half_a", "half_b", "halves_sum"]
    assert captured["relu6"].min() >= 0 and captured["relu6"].max() <= 6
    np.testing.assert_allclose(captured["halves_sum"], captured["half_a"] + captured["half_b"], rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([captured["half_a"], captured["half_b"]], 1), captured["relu6"])


def test_in_memory_model_proto(models):
    x = np.random.default_rng(2).standard_normal((1, 32, 32, 3)).astype(np.float32)
    result = get_worker("onnx").call("test_adapter_onnx:run_in_memory", models["block"], x)
    assert result["owns"] and result["source"].startswith("onnx model ")
    np.testing.assert_array_equal(result["final"], xvalidate.run("onnx", models["block"], x)["predictions"])


def test_bad_files(tmp_path):
    onnx = get_worker("onnx")
    with pytest.raises(InputFileError, match=r"missing\.onnx: no such model file"):
        onnx.layers(str(tmp_path / "missing.onnx"))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(InputFileError, match=r"corrupt\.onnx: not a readable ONNX model \(.+\)$"):
        onnx.layers(str(corrupt))
    other = tmp_path / "model.pb"
    other.write_text("x")
    with pytest.raises(InputFileError, match=r"model\.pb: unknown extension for an ONNX model; expected \.onnx"):
        onnx.layers(str(other))
    custom = onnx.call("test_adapter_onnx:save_unrunnable", str(tmp_path / "custom.onnx"))
    with pytest.raises(InputFileError, match=r"custom\.onnx: onnxruntime cannot load the model \(.*Frobnicate"):
        onnx.run(custom, np.zeros((1, 3), np.float32))


def test_wrong_input_shape_and_unknown_layer(models):
    with pytest.raises(InputShapeError, match=r"block\.onnx: input has shape \(1, 3, 32, 32\) but the model expects "
                                              r"\(None, 32, 32, 3\)$"):
        get_worker("onnx").run(models["block"], np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(UnknownLayerError, match=r"block\.onnx: no layer 'nope'; it has 12 layers"):
        get_worker("onnx").run(models["block"], np.zeros((1, 32, 32, 3), np.float32), layers=["nope"])


@pytest.mark.slow
def test_resnet50_every_node_output_in_one_run(tmp_path):
    keras = get_worker("keras")
    h5 = keras.call("xvalidate.models.keras_zoo:save", "ResNet50", str(tmp_path / "ResNet50.h5"))
    path = keras.call("xvalidate.routes.onnx_steps:keras_to_onnx", h5, str(tmp_path / "r50.onnx"), 11)["onnx"]
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    captured = xvalidate.run("onnx", path, x)
    plain = get_worker("onnx").call("test_adapter_onnx:plain_forward", path, x)
    assert len(captured) == plain["outputs"] == 125
    np.testing.assert_allclose(captured["predictions"], plain["final"], rtol=1e-5, atol=1e-8)
