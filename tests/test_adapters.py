"""The three adapters, run in their workers: capture equals a plain forward, every layer is captured."""
import numpy as np
import pytest

import xvalidate
from xvalidate.errors import InputFileError, InputShapeError, UnknownLayerError
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the keras worker
def keras_plain(path: str, x: np.ndarray) -> dict:
    from tensorflow import keras

    model = keras.models.load_model(path, compile=False)
    count = sum(1 for layer in _flat(model) if not isinstance(layer, keras.layers.InputLayer))
    out = model.predict(x, verbose=0)
    return {"final": out if not isinstance(out, list) else out[0], "layers": count}


def _flat(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _flat(layer)
        else:
            yield layer


def save_nested_multi_output(path: str) -> str:
    """A nested Sequential and a layer with three outputs (an LSTM returning its states)."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(2)
    inner = keras.Sequential([layers.Dense(6, activation="relu", name="d1", input_shape=(5, 4)),
                              layers.Dense(4, name="d2")], name="inner")
    inp = keras.Input((5, 4), name="x")
    h = layers.Dense(4, name="pre")(inp)
    h = inner(h)
    out, state_h, state_c = layers.LSTM(3, return_state=True, name="lstm")(h)
    joined = layers.Concatenate(name="join")([state_c, out])
    keras.Model(inp, joined).save(path)
    return path


def run_in_memory_keras(x: np.ndarray) -> float:
    """xvalidate.run on an in-memory keras.Model (it is saved, then run in a worker of its own)."""
    import xvalidate
    from xvalidate.models.keras_zoo import seed2_cnn

    model = seed2_cnn()
    captured = xvalidate.run("keras", model, x)
    return float(np.abs(captured["final_fully_connected"] - model.predict(x, verbose=0)).max())


# ---------------------------------------------------------------- run in the mxnet worker
def save_resnet18(prefix: str, x: np.ndarray) -> dict:
    import mxnet as mx

    from xvalidate.models.gluon_zoo import save_resnet18 as export

    symbol = export(prefix, x.shape)
    net = mx.gluon.SymbolBlock.imports(symbol, ["data"], prefix + "-0000.params")
    plain = net(mx.nd.array(x)).asnumpy()
    sym = mx.sym.load(symbol)
    ops = [n for n in sym.get_internals().list_outputs() if not n.endswith(("_weight", "_bias", "_gamma", "_beta",
                                                                               "_running_mean", "_running_var", "data"))]
    return {"symbol": symbol, "final": plain, "ops": len(ops)}


# ---------------------------------------------------------------- run in the onnx worker
def onnx_plain(path: str, x: np.ndarray) -> dict:
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    return {"final": out, "outputs": sum(len([o for o in n.output if o]) for n in model.graph.node)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters")
    keras = get_worker("keras")
    h5 = keras.call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(d / "seed2.h5"))
    block = keras.call("xvalidate.models.keras_zoo:save", "resnet_block", str(d / "block.h5"))
    onnx_path = keras.call("xvalidate.routes.onnx_steps:keras_to_onnx", block, str(d / "block.onnx"), 11)["onnx"]
    return {"seed2": h5, "block": block, "onnx": onnx_path, "dir": d}


@pytest.mark.parametrize("name, shape", [("seed2", (2, 80, 120, 3)), ("block", (3, 32, 32, 3))])
def test_keras_capture_equals_plain_forward(models, name, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    captured = xvalidate.run("keras", models[name], x)
    plain = get_worker("keras").call("test_adapters:keras_plain", models[name], x)
    assert len(captured) == plain["layers"]
    np.testing.assert_allclose(list(captured.values())[-1], plain["final"], rtol=1e-6, atol=1e-7)


def test_keras_nested_model_and_multi_output_layer(models):
    path = get_worker("keras").call("test_adapters:save_nested_multi_output", str(models["dir"] / "nested.h5"))
    x = np.random.default_rng(1).standard_normal((2, 5, 4)).astype(np.float32)
    captured = xvalidate.run("keras", path, x)
    assert list(captured) == ["pre", "inner/d1", "inner/d2", "lstm:0", "lstm:1", "lstm:2", "join"]
    np.testing.assert_allclose(captured["lstm:0"], captured["lstm:1"])  # the output is the last hidden state
    np.testing.assert_allclose(captured["join"], np.concatenate([captured["lstm:2"], captured["lstm:0"]], -1))
    plain = get_worker("keras").call("test_adapters:keras_plain", path, x)
    assert len(captured) == plain["layers"] + 2  # the LSTM counts once per output
    np.testing.assert_allclose(captured["join"], plain["final"], rtol=1e-5, atol=1e-6)
    layers = get_worker("keras").layers(path)
    assert layers[1].inputs == ["pre"] and layers[3].inputs == ["inner/d2"]


def test_keras_in_memory_model_runs_in_its_own_worker():
    x = np.random.default_rng(2).standard_normal((1, 80, 120, 3)).astype(np.float32)
    assert get_worker("keras").call("test_adapters:run_in_memory_keras", x) < 1e-6


def test_mxnet_gluon_export_captures_every_internal_output(models):
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    made = get_worker("mxnet").call("test_adapters:save_resnet18", str(models["dir"] / "resnet18_v1"), x)
    captured = xvalidate.run("mxnet", made["symbol"], x)
    assert len(captured) == made["ops"]
    np.testing.assert_allclose(list(captured.values())[-1], made["final"], rtol=1e-5, atol=1e-6)
    info = get_worker("mxnet").input_info(made["symbol"])
    assert info.name == "data" and info.layout == "NCHW" and info.shape[1] == 3


def test_onnx_captures_every_node_output(models):
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    captured = xvalidate.run("onnx", models["onnx"], x)
    plain = get_worker("onnx").call("test_adapters:onnx_plain", models["onnx"], x)
    assert len(captured) == plain["outputs"]
    np.testing.assert_allclose(list(captured.values())[-1], plain["final"], rtol=1e-6, atol=1e-7)
    assert get_worker("onnx").input_info(models["onnx"]).layout == "NHWC"


@pytest.mark.parametrize("adapter, suffix", [("keras", ".h5"), ("onnx", ".onnx"), ("mxnet", "-symbol.json")])
def test_bad_files_name_the_file(tmp_path, adapter, suffix):
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(InputFileError, match=r"missing" + suffix.replace(".", r"\.") + ": no such model file"):
        xvalidate.run(adapter, str(tmp_path / ("missing" + suffix)), x)
    corrupt = tmp_path / ("corrupt" + suffix)
    corrupt.write_bytes(np.random.default_rng(0).bytes(256))
    if adapter == "mxnet":
        (tmp_path / "corrupt-0000.params").write_bytes(b"\0" * 64)
    with pytest.raises(InputFileError, match=r"corrupt.*not a readable"):
        xvalidate.run(adapter, str(corrupt), x)
    other = tmp_path / "model.txt"
    other.write_text("x")
    with pytest.raises(InputFileError, match=r"model\.txt: unknown extension"):
        xvalidate.run(adapter, str(other), x)


def test_wrong_shape_and_unknown_layer(models):
    with pytest.raises(InputShapeError, match=r"seed2\.h5: input has shape \(1, 80, 120\) but the model expects "
                                              r"\(None, 80, 120, 3\)"):
        xvalidate.run("keras", models["seed2"], np.zeros((1, 80, 120), np.float32))
    with pytest.raises(UnknownLayerError, match=r"block\.onnx: no layer 'nope'"):
        xvalidate.run("onnx", models["onnx"], np.zeros((1, 32, 32, 3), np.float32), layers=["nope"])


@pytest.mark.slow
def test_resnet50_every_layer_in_one_pass(tmp_path):
    keras = get_worker("keras")
    h5 = keras.call("xvalidate.models.keras_zoo:save", "ResNet50", str(tmp_path / "ResNet50.h5"))
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    captured = xvalidate.run("keras", h5, x)
    plain = keras.call("test_adapters:keras_plain", h5, x)
    assert len(captured) >= 170 and len(captured) == plain["layers"]
    np.testing.assert_allclose(captured["predictions"], plain["final"], rtol=1e-5, atol=1e-8)
    onnx_path = keras.call("xvalidate.routes.onnx_steps:keras_to_onnx", h5, str(tmp_path / "r50.onnx"), 11)["onnx"]
    captured = xvalidate.run("onnx", onnx_path, x)
    plain = get_worker("onnx").call("test_adapters:onnx_plain", onnx_path, x)
    assert len(captured) == plain["outputs"]
    np.testing.assert_allclose(list(captured.values())[-1], plain["final"], rtol=1e-5, atol=1e-8)
