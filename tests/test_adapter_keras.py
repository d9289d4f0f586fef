"""The keras adapter, run in the keras worker: one pass captures every layer (nested models and
multi-output layers included) and equals a plain forward; layers are described; bad input is refused."""
import numpy as np
import pytest

import xvalidate
from xvalidate.errors import InputFileError, InputShapeError, UnknownLayerError
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the keras worker
def plain_forward(path: str, x: np.ndarray) -> dict:
    """Keras's own forward pass and the number of layers, nested models' layers counted one by one."""
    from tensorflow import keras

    model = keras.models.load_model(path, compile=False)

    def count(m) -> int:
        return sum(count(layer) if isinstance(layer, keras.Model) else 1 for layer in m.layers
                   if not isinstance(layer, keras.layers.InputLayer))

    return {"final": model.predict(x, verbose=0), "layers": count(model)}


def save_nested(path: str) -> str:
    """A model with a nested Sequential, a Functional holding a Sequential (two levels), a nested
    model called twice and a layer with three outputs (an LSTM returning its states)."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(2)
    keras.backend.reset_uids()
    seq = keras.Sequential([layers.Dense(6, activation="relu", name="d1", input_shape=(5, 4)),
                            layers.Dense(4, name="d2")], name="inner")
    deep_in = keras.Input((5, 4), name="deep_in")
    deep = keras.Model(deep_in, layers.Dense(4, name="d3")(seq(deep_in)), name="deep")
    inp = keras.Input((5, 4), name="x")
    h = layers.Dense(4, name="pre")(inp)
    a, b = deep(h), deep(layers.Dropout(0.5, name="drop")(h))
    out, state_h, state_c = layers.LSTM(3, return_state=True, name="lstm")(layers.Add(name="sum")([a, b]))
    joined = layers.Concatenate(name="join")([state_c, out])
    keras.Model(inp, joined).save(path)
    return path


def save_activations(path: str) -> str:
    """Activation layers of every flavour, for their kinds."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3), name="img")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_relu")(inp)
    h = layers.ReLU(max_value=6.0, name="relu6")(h)
    h = layers.ReLU(name="relu")(h)
    h = layers.DepthwiseConv2D(3, name="dw")(h)
    h = layers.LeakyReLU(name="leaky")(h)
    h = layers.Activation("sigmoid", name="sig")(h)
    h = layers.Dropout(0.2, name="drop")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    out = layers.Dense(2, activation="softmax", name="probs")(h)
    keras.Model(inp, out).save(path)
    return path


def capture_twice_traced(path: str, x: np.ndarray) -> dict:
    """Capture until the adapter runs its traced graph function; compare with the first (eager) capture."""
    from xvalidate_adapters.keras import KerasAdapter

    adapter = KerasAdapter()
    model = adapter.load(path)
    first = adapter.run(model, x)
    (capture,) = adapter._captures.values()
    capture.eager_seconds = capture.trace_seconds  # as if the eager calls had cost what tracing does
    last = adapter.run(model, x)
    return {"traced": capture.function is not None, "same_names": list(first) == list(last),
            "max_diff": max(float(np.abs(first[k] - last[k]).max()) for k in first)}


def save_two_inputs(path: str) -> str:
    """A model with two inputs: an image through a convolution, a vector through a Dense, joined."""
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(5)
    img, vec = keras.Input((6, 6, 2), name="img"), keras.Input((3,), name="vec")
    h = layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(4, 3, activation="relu", name="conv")(img))
    out = layers.Concatenate(name="join")([h, layers.Dense(4, name="fc")(vec)])
    keras.Model([img, vec], out).save(path)
    return path


def traced_over_chunk_sizes(path: str, shapes: list[list[tuple]]) -> dict:
    """Capture inputs of several batch sizes eagerly, then through the graph function (the adapter
    switched to it at once): the number of traces, and the largest difference from the eager capture."""
    from xvalidate_adapters.keras import KerasAdapter

    adapter = KerasAdapter()
    model = adapter.load(path)
    names = [info.name for info in adapter.inputs_info(model)]
    rng = np.random.default_rng(6)
    xs = [{n: rng.standard_normal(s).astype(np.float32) for n, s in zip(names, chunk)} for chunk in shapes]
    eager = [adapter.run(model, x) for x in xs]
    (capture,) = adapter._captures.values()
    capture.eager_seconds = capture.trace_seconds  # as if the eager calls had cost what tracing does
    traced = [adapter.run(model, x) for x in xs + xs]
    return {"traces": capture.function.experimental_get_tracing_count(),
            "same_names": all(list(t) == list(eager[0]) for t in traced),
            "max_diff": max(float(np.abs(e[k] - t[k]).max()) for e, t in zip(eager + eager, traced) for k in e)}


def run_in_memory(x: np.ndarray) -> float:
    """xvalidate.run on an in-memory keras.Model: saved by the adapter, then run in a worker."""
    from xvalidate.models.keras_zoo import seed2_cnn

    model = seed2_cnn()
    captured = xvalidate.run("keras", model, x)
    return float(np.abs(captured["final_fully_connected"] - model.predict(x, verbose=0)).max())


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_adapter")
    keras = get_worker("keras")
    return {"seed2": keras.call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(d / "seed2.h5")),
            "block": keras.call("xvalidate.models.keras_zoo:save", "resnet_block", str(d / "block.h5")),
            "nested": keras.call("test_adapter_keras:save_nested", str(d / "nested.h5")),
            "acts": keras.call("test_adapter_keras:save_activations", str(d / "acts.keras")),
            "two_inputs": keras.call("test_adapter_keras:save_two_inputs", str(d / "two_inputs.h5")),
            "dir": d}


@pytest.mark.parametrize("name, shape", [("seed2", (2, 80, 120, 3)), ("block", (3, 32, 32, 3))])
def test_capture_equals_plain_forward(models, name, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    captured = xvalidate.run("keras", models[name], x)
    plain = get_worker("keras").call("test_adapter_keras:plain_forward", models[name], x)
    layers = get_worker("keras").layers(models[name])
    assert list(captured) == [info.name for info in layers]
    assert len(captured) == plain["layers"]
    assert all(captured[info.name].shape[1:] == info.shape[1:] for info in layers)
    np.testing.assert_allclose(list(captured.values())[-1], plain["final"], rtol=1e-6, atol=1e-7)


def test_layers_describe_ops_kinds_and_attributes(models):
    seed2 = {info.name: info for info in get_worker("keras").layers(models["seed2"])}
    conv = seed2["block1_conv1"]
    assert (conv.op, conv.kinds, conv.shape, conv.layout) == ("Conv2D", ["conv", "relu"], (None, 80, 120, 128), "NHWC")
    assert conv.attrs["padding"] == "same" and conv.attrs["kernel"] == [3, 3] and conv.attrs["filters"] == 128
    assert seed2["final_fully_connected"].kinds == ["dense", "softmax"]
    assert seed2["final_fully_connected"].layout == "NC" and seed2["final_fully_connected"].attrs["units"] == 2
    assert [seed2[n].kinds for n in ("max_pooling2d", "flatten")] == [["maxpool"], ["flatten"]]
    block = {info.name: info for info in get_worker("keras").layers(models["block"])}
    assert block["stem_bn"].kinds == ["bn"] and block["stem_bn"].attrs["epsilon"] == pytest.approx(1e-3)
    assert block["block_add"].kinds == ["add"] and block["block_add"].inputs == ["stem_relu", "block_bn2"]
    assert block["stem_relu"].kinds == ["relu"] and block["stem_conv"].inputs == []
    info = get_worker("keras").input_info(models["block"])
    assert (info.name, info.shape, info.dtype, info.layout) == ("input_1", (None, 32, 32, 3), "float32", "NHWC")


def test_activation_kinds(models):
    kinds = {info.name: info.kinds for info in get_worker("keras").layers(models["acts"])}
    assert kinds == {"conv_relu": ["conv", "relu"], "relu6": ["relu6"], "relu": ["relu"], "dw": ["dwconv"],
                     "leaky": ["act"], "sig": ["sigmoid"], "drop": ["identity"], "gap": ["gpool"],
                     "probs": ["dense", "softmax"]}


def test_nested_models_shared_calls_and_multi_output_layer(models):
    path = models["nested"]
    x = np.random.default_rng(1).standard_normal((2, 5, 4)).astype(np.float32)
    captured = xvalidate.run("keras", path, x)
    assert list(captured) == ["pre", "drop", "deep/inner/d1", "deep/inner/d2", "deep/d3", "deep@1/inner/d1",
                              "deep@1/inner/d2", "deep@1/d3", "sum", "lstm:0", "lstm:1", "lstm:2", "join"]
    np.testing.assert_allclose(captured["sum"], captured["deep/d3"] + captured["deep@1/d3"], rtol=1e-6)
    np.testing.assert_allclose(captured["lstm:0"], captured["lstm:1"])  # the output is the last hidden state
    np.testing.assert_allclose(captured["join"], np.concatenate([captured["lstm:2"], captured["lstm:0"]], -1))
    plain = get_worker("keras").call("test_adapter_keras:plain_forward", path, x)
    # the nested model's 3 layers are captured for both of its calls; the LSTM once per output
    assert len(captured) == plain["layers"] + 3 + 2
    np.testing.assert_allclose(captured["join"], plain["final"], rtol=1e-5, atol=1e-6)
    layers = {info.name: info for info in get_worker("keras").layers(path)}
    assert layers["deep@1/inner/d1"].inputs == ["drop"] and layers["sum"].inputs == ["deep/d3", "deep@1/d3"]
    assert layers["join"].inputs == ["lstm:2", "lstm:0"] and layers["lstm:1"].kinds == ["other"]


def test_asked_layers_only_in_topological_order(models):
    x = np.random.default_rng(2).standard_normal((1, 80, 120, 3)).astype(np.float32)
    captured = xvalidate.run("keras", models["seed2"], x, layers=["final_fully_connected", "block2_conv1"])
    assert list(captured) == ["block2_conv1", "final_fully_connected"]
    assert captured["block2_conv1"].shape == (1, 40, 60, 256)


def test_traced_capture_equals_eager_capture(models):
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    result = get_worker("keras").call("test_adapter_keras:capture_twice_traced", models["block"], x)
    assert result["traced"] and result["same_names"]
    assert result["max_diff"] <= 1e-6


@pytest.mark.parametrize("name, shapes", [
    ("nested", [[(3, 5, 4)], [(1, 5, 4)], [(2, 5, 4)]]),  # layers called twice, a nested model called twice
    ("two_inputs", [[(4, 6, 6, 2), (4, 3)], [(1, 6, 6, 2), (1, 3)]])])
def test_traced_capture_is_traced_once_for_every_chunk_size(models, name, shapes):
    result = get_worker("keras").call("test_adapter_keras:traced_over_chunk_sizes", models[name], shapes)
    assert result["traces"] == 1 and result["same_names"]
    assert result["max_diff"] <= 1e-6


def test_in_memory_model_is_saved_and_run_in_a_worker():
    x = np.random.default_rng(4).standard_normal((1, 80, 120, 3)).astype(np.float32)
    assert get_worker("keras").call("test_adapter_keras:run_in_memory", x) < 1e-6


def test_bad_files(tmp_path):
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(InputFileError, match=r"missing\.h5: no such model file"):
        xvalidate.run("keras", str(tmp_path / "missing.h5"), x)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(InputFileError, match=r"corrupt\.h5: not a readable Keras model"):
        get_worker("keras").layers(str(corrupt))
    other = tmp_path / "model.pb"
    other.write_text("x")
    with pytest.raises(InputFileError, match=r"model\.pb: unknown extension for a Keras model; expected \.h5"):
        get_worker("keras").layers(str(other))


def test_wrong_input_shape_and_unknown_layer(models):
    with pytest.raises(InputShapeError, match=r"seed2\.h5: input has shape \(1, 80, 120\) but the model expects "
                                              r"\(None, 80, 120, 3\)$"):
        get_worker("keras").run(models["seed2"], np.zeros((1, 80, 120), np.float32))
    with pytest.raises(UnknownLayerError, match=r"seed2\.h5: no layer 'nope'; it has 6 layers \(block1_conv1, "):
        get_worker("keras").run(models["seed2"], np.zeros((1, 80, 120, 3), np.float32), layers=["nope"])
