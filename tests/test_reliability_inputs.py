"""Bad input, each answered by one line naming the culprit (an XValidateError; exit 2 in the CLI):
inputs with NaN/Inf, odd dtypes, the wrong rank or nothing in them; truncated or corrupt model files
of every format; an ONNX model without its external data; a symbol whose params lack a weight;
tolerances and layer maps that cannot apply."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xvalidate
from xvalidate.errors import (InputFileError, InputShapeError, OptionError, UnknownLayerError,
                              XValidateError)
from xvalidate.inputs import load_inputs
from xvalidate.worker import get_worker


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


# ---------------------------------------------------------------- inputs
@pytest.mark.parametrize("bad, expected", [
    (np.array([[1, np.nan, 3, 4]], np.float32), r"inputs \(array\): 1 NaN and 0 infinite values of 4, the first at index \(0, 1\)"),
    (np.array([[1, 2, -np.inf, np.inf]], np.float32), r"0 NaN and 2 infinite values of 4, the first at index \(0, 2\)"),
    (np.array([[1e300, 0, 0, 0]], np.float64), r"finite as float64, too large for float32"),
    (np.ones((2, 3, 4), np.float32), r"shape \(2, 3, 4\) does not fit the model's input \(None, 4\)"),
    (np.ones((0, 4), np.float32), r"the batch is empty"),
    (np.ones((1, 4), np.complex64), r"expected numbers, got dtype complex64"),
    (np.array([["a", "b", "c", "d"]]), r"expected numbers, got dtype <U1"),
])
def test_bad_input_arrays_are_refused(bad, expected):
    with pytest.raises(InputShapeError, match=expected) as info:
        load_inputs(bad, (None, 4), "NC")
    one_line(info.value)


def test_integer_and_float64_inputs_are_cast_for_a_float_model_and_integers_kept_for_an_integer_one():
    x, desc = load_inputs(np.arange(8, dtype=np.int64).reshape(2, 4), (None, 4), "NC")
    assert x.dtype == np.float32 and desc["dtype"] == "float32"
    x, _ = load_inputs(np.linspace(0, 1, 8).reshape(2, 4), (None, 4), "NC")
    assert x.dtype == np.float32
    ids, _ = load_inputs(np.array([[1, 2, 3, 4]], np.int64), (None, 4), "NC", dtype="int32", value_range=(0, 10))
    assert ids.dtype == np.int32 and ids.tolist() == [[1, 2, 3, 4]]
    with pytest.raises(InputShapeError, match="non-integer float32"):
        load_inputs(np.array([[0.5, 1, 2, 3]], np.float32), (None, 4), "NC", dtype="int32")


def test_nan_in_an_npy_file_is_refused_through_compare(toy_plugin, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[0, 1, np.nan, 2]], np.float32))
    with pytest.raises(InputShapeError, match=r"x\.npy\): 1 NaN"):
        xvalidate.compare(str(toy_plugin), str(toy_plugin), src="toy", dst="toy", inputs=str(path))


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("kwargs, error, expected", [
    ({"atol": -1e-3}, OptionError, r"^atol: expected a non-negative number, got -0\.001$"),
    ({"rtol": float("nan")}, OptionError, r"^rtol: expected a non-negative number, got nan$"),
    ({"atol": "small"}, OptionError, r"^atol: expected a non-negative number, got 'small'$"),
    ({"tolerances": {"dense0": -1}}, OptionError, r"tolerances\['dense0'\]\['atol'\]: expected a non-negative"),
    ({"tolerances": {"dense0": {"atol": "x"}}}, OptionError, r"tolerances\['dense0'\]\['atol'\]"),
    ({"tolerances": {"dens0": 1e-2}}, UnknownLayerError, r"^tolerances: 'dens0' matches no layer of the source model"),
    ({"tolerances": {"conv*": 1e-2}}, UnknownLayerError, r"^tolerances: 'conv\*' matches no layer"),
    ({"layer_map": {"nope": "dense0"}}, UnknownLayerError, r"layer_map: source layer 'nope' is not in the source"),
    ({"layer_map": {"dense0": "nope"}}, UnknownLayerError, r"layer_map: destination layer 'nope'"),
    ({"layer_map": {"dense0": "dense1"}}, OptionError, r"^layer_map: 'dense0' \(None, 6\) and 'dense1' \(None, 3\) "
                                                      r"cannot hold the same tensor"),
])
def test_bad_options_are_refused_before_any_run(toy_plugin, kwargs, error, expected):
    with pytest.raises(error, match=expected) as info:
        xvalidate.compare(str(toy_plugin), str(toy_plugin), src="toy", dst="toy", **kwargs)
    one_line(info.value)


def test_tolerance_patterns_and_default_that_match_are_accepted(toy_plugin):
    report = xvalidate.compare(str(toy_plugin), str(toy_plugin), src="toy", dst="toy",
                               tolerances={"default": 1e-5, "dense*": 1e-4, "relu0": {"rtol": 0}})
    assert report.passed


def test_shapes_that_differ_by_a_padding_border_are_a_finding_not_an_error():
    from xvalidate.option_checks import shapes_can_agree

    assert shapes_can_agree((1, 56, 56, 64), (1, 64, 56, 56))       # a layout
    assert shapes_can_agree((1, 56, 56, 64), (1, 64, 58, 58))       # a padding border
    assert not shapes_can_agree((1, 56, 56, 64), (1, 128, 56, 56))  # another layer
    assert not shapes_can_agree((1, 1000), (1, 64, 7, 7))


# ---------------------------------------------------------------- model files
def save_keras_v3(path: str) -> str:
    from tensorflow import keras

    inputs = keras.Input((8, 8, 3), name="x")
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    keras.Model(inputs, keras.layers.Flatten(name="flat")(h)).save(path, save_format="keras_v3")
    return path


def save_mxnet_small(prefix: str, drop: str = "") -> str:
    """A conv + relu + dense MXNet checkpoint; `drop`: a parameter left out of the params file."""
    import mxnet as mx

    from xvalidate_adapters.mxnet import write_input_hint

    data = mx.sym.var("data")
    net = mx.sym.FullyConnected(mx.sym.Activation(mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="conv0"),
                                                  act_type="relu", name="relu0"), num_hidden=3, name="fc0")
    shapes, _, _ = net.infer_shape(data=(1, 3, 8, 8))
    rng = np.random.default_rng(0)
    args = {n: mx.nd.array(rng.standard_normal(s)) for n, s in zip(net.list_arguments(), shapes)
            if n != "data" and n != drop}
    mx.model.save_checkpoint(prefix, 0, net, args, {})
    write_input_hint(f"{prefix}-symbol.json", "data", [None, 3, 8, 8], "NCHW")
    return f"{prefix}-symbol.json"


def save_onnx_external(path: str) -> str:
    """The hand-built ONNX model with its weights in an external file `weights.bin` beside it."""
    import onnx

    from test_adapter_onnx import save_hand_built

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_hand_built(path)
    model = onnx.load(path)
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    keras, mxnet, onnx = get_worker("keras"), get_worker("mxnet"), get_worker("onnx")
    return {
        "h5": keras.call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(d / "good.h5")),
        "keras": keras.call("test_reliability_inputs:save_keras_v3", str(d / "good.keras")),
        "onnx": onnx.call("test_adapter_onnx:save_hand_built", str(d / "good.onnx")),
        "external": onnx.call("test_reliability_inputs:save_onnx_external", str(d / "ext" / "model.onnx")),
        "symbol": mxnet.call("test_reliability_inputs:save_mxnet_small", str(d / "good")),
        "noweight": mxnet.call("test_reliability_inputs:save_mxnet_small", str(d / "noweight"), "fc0_weight"),
        "dir": d,
    }


def _corrupt(src: str, dst: Path, how: str) -> str:
    data = Path(src).read_bytes()
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "garbage":
        data = bytes(np.random.default_rng(len(data)).integers(0, 256, len(data), dtype=np.uint8))
    elif how == "empty":
        data = b""
    dst.write_bytes(data)
    return str(dst)


CORRUPT_CASES = [(fmt, how) for fmt in ("h5", "keras", "onnx", "symbol", "params") for how in ("truncated", "garbage", "empty")]


@pytest.mark.parametrize("fmt, how", CORRUPT_CASES, ids=[f"{f}-{h}" for f, h in CORRUPT_CASES])
def test_corrupt_model_files_are_one_clear_error(model_files, tmp_path, fmt, how):
    adapter = {"h5": "keras", "keras": "keras", "onnx": "onnx", "symbol": "mxnet", "params": "mxnet"}[fmt]
    if fmt in ("symbol", "params"):  # an MXNet model is two files: corrupt one, copy the other
        prefix = Path(model_files["symbol"][: -len("-symbol.json")])
        names = {"symbol": tmp_path / "m-symbol.json", "params": tmp_path / "m-0000.params"}
        originals = {"symbol": Path(f"{prefix}-symbol.json"), "params": Path(f"{prefix}-0000.params")}
        for part, target in names.items():
            if part == fmt:
                _corrupt(str(originals[part]), target, how)
            else:
                target.write_bytes(originals[part].read_bytes())
        path, culprit = str(names["symbol"]), names[fmt].name
    else:
        path = _corrupt(model_files[fmt], tmp_path / f"bad.{fmt}", how)
        culprit = Path(path).name
    with pytest.raises(XValidateError) as info:
        xvalidate.run(adapter, path, np.zeros((1, 8, 8, 3) if adapter == "keras" else (1, 3, 8, 8), np.float32))
    assert culprit in one_line(info.value)
    assert type(info.value).__name__ in ("InputFileError", "InputShapeError"), info.value


def test_an_onnx_model_without_its_external_data(model_files, tmp_path):
    path = Path(model_files["external"])
    assert xvalidate.run("onnx", str(path), np.zeros((1, 4, 5, 5), np.float32))  # loads with its data
    alone = tmp_path / "model.onnx"  # the same file, without weights.bin beside it
    alone.write_bytes(path.read_bytes())
    with pytest.raises(InputFileError, match=r"model\.onnx.*weights\.bin") as info:
        xvalidate.run("onnx", str(alone), np.zeros((1, 4, 5, 5), np.float32))
    one_line(info.value)


def test_a_symbol_whose_params_lack_a_weight(model_files):
    with pytest.raises(InputFileError, match=r"noweight-symbol\.json.*fc0_weight") as info:
        xvalidate.run("mxnet", model_files["noweight"], np.zeros((1, 3, 8, 8), np.float32))
    one_line(info.value)


def test_a_tflite_file_is_refused_by_extension(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3" + bytes(64))
    with pytest.raises(InputFileError, match=r"model\.tflite: unknown extension for a onnx model"):
        xvalidate.run("onnx", str(path), np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("args, expected", [
    (["capture", "{bad_h5}", "--adapter", "keras"], "bad.h5"),
    (["compare", "{toy}", "{toy}", "--src", "toy", "--dst", "toy", "--atol", "-1"], "atol"),
    (["compare", "{toy}", "{toy}", "--src", "toy", "--dst", "toy", "--input", "{nan}"], "NaN"),
])
def test_the_cli_answers_bad_input_with_exit_2_and_one_line(toy_plugin, model_files, tmp_path, args, expected):
    bad_h5 = _corrupt(model_files["h5"], tmp_path / "bad.h5", "truncated")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([[np.nan, 0, 0, 0]], np.float32))
    argv = [a.format(bad_h5=bad_h5, toy=toy_plugin, nan=nan) for a in args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-m", "xvalidate.cli", *argv], capture_output=True, text=True,
                          timeout=300, env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], \
        done.stderr
