"""The keras-mxnet route's step inside the keras-mxnet environment (Keras 2.2.4 on MXNet's backend):
rebuild a tf.keras model from its config and h5 weights, then write it as an MXNet symbol and
params with `keras.models.save_mxnet_model`. Shipped into that environment: imports numpy, the
standard library, the shipped xvalidate modules and, inside functions, keras-mxnet.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from xvalidate.errors import ConversionError, UnsupportedLayerError
from xvalidate.input_hint import write_input_hint
from xvalidate.routes.keras_mxnet_shims import batchnorm_keeps_gamma

ROUTE = "keras-mxnet"
ROUTE_HINT = "try via='mmdnn' or via='onnx'"
PREFIX = "model"


def build_mxnet(config_path: str, weights_path: str, out_dir: str, model_label: str,
                keep_gamma: bool = True) -> dict:
    """Rebuild the model with keras-mxnet and save it as `<out_dir>/model-symbol.json` and
    `model-0000.params`, with the input hint beside them. `keep_gamma=False` leaves keras-mxnet's
    BatchNorm as it is (gamma ignored: keras_mxnet_shims.batchnorm_keeps_gamma).

    Returns {"symbol", "params", "hints": {MXNet node: Keras layer}, "seconds", "keras"}."""
    start = time.perf_counter()
    keras = _import_keras()
    from xvalidate.routes.keras_mxnet_config import translate

    def unsupported(layer: str, kind: str, reason: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(f"{model_label}: layer {layer!r} ({kind}) cannot be converted by route "
                                     f"{ROUTE!r}: {reason}; {ROUTE_HINT}")

    config = translate(json.loads(Path(config_path).read_text()), unsupported)
    with batchnorm_keeps_gamma() if keep_gamma else contextlib.nullcontext():
        model = _build(keras, config, unsupported)
        _load_weights(model, weights_path, model_label)
        model.compile(optimizer="sgd", loss="mean_squared_error")
        _bind_for_prediction(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = str(out / PREFIX)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the input names and shapes
        data_names, _ = keras.models.save_mxnet_model(model, prefix)
    _write_hint(model, prefix + "-symbol.json", data_names)
    return {"symbol": prefix + "-symbol.json", "params": prefix + "-0000.params", "hints": _hints(model),
            "seconds": time.perf_counter() - start, "keras": keras.__version__}


def _import_keras():
    from xvalidate.routes.keras_mxnet_shims import alias_collections

    alias_collections()
    with contextlib.redirect_stderr(io.StringIO()):  # "Using MXNet backend"
        import keras
    if keras.backend.backend() != "mxnet":
        raise ConversionError(f"keras-mxnet runs on backend {keras.backend.backend()!r}, not 'mxnet' "
                              f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r})")
    return keras


def _build(keras, config: dict, unsupported):
    """`Model.from_config`; a layer whose building fails is named (found in the traceback)."""
    try:
        return keras.models.Model.from_config(config["config"])
    except Exception as exc:  # noqa: BLE001 (any failure inside keras-mxnet is the layer's)
        layer = _failing_layer(keras, sys.exc_info()[2])
        text = str(exc).strip().splitlines()
        why = f"keras-mxnet fails building it ({type(exc).__name__}: {text[0][:200] if text else ''})"
        if layer is None:
            raise ConversionError(f"keras-mxnet cannot build the model: {why}") from None
        raise unsupported(layer.name, type(layer).__name__, why) from None


def _failing_layer(keras, tb):
    """The innermost Keras layer among the traceback's frames (their `self`), or None."""
    found = None
    for frame, _ in traceback.walk_tb(tb):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.engine.base_layer.Layer) and not isinstance(candidate, keras.models.Model):
            found = candidate
    return found


def _load_weights(model, weights_path: str, model_label: str) -> None:
    """The tf.keras h5 weights, by layer name; every layer with weights must find its own."""
    import h5py
    from keras import backend as K
    from keras.engine import saving

    from xvalidate.routes.keras_mxnet_shims import BytesAttributes

    with h5py.File(weights_path, "r") as f:
        wrapped = BytesAttributes(f)
        stored = {n.decode("utf8") for n in wrapped.attrs["layer_names"]}
        version, backend = (wrapped.attrs[k].decode("utf8") if k in wrapped.attrs else None
                            for k in ("keras_version", "backend"))
        assignments = []
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in stored:
                raise ConversionError(f"{model_label}: no weights for layer {layer.name!r} in the exported h5 file")
            group = wrapped[layer.name]
            names = [n.decode("utf8") for n in group.attrs["weight_names"]]
            values = [np.asarray(group[n]) for n in names]
            if type(layer).__name__ == "BatchNormalization" and len(values) < len(layer.weights):
                values = _batchnorm_values(names, values)
            values = saving.preprocess_weights_for_loading(layer, values, version, backend)
            if len(values) != len(layer.weights):
                raise ConversionError(f"{model_label}: layer {layer.name!r} has {len(layer.weights)} weights in "
                                      f"keras-mxnet and {len(values)} in the h5 file")
            assignments += zip(layer.weights, values)
        K.batch_set_value(assignments)


BATCHNORM_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")  # Keras 2.2.4's order


def _batchnorm_values(names: list[str], values: list) -> list:
    """A BatchNormalization with scale=False or center=False: tf.keras saves no gamma (beta), while
    keras-mxnet keeps one of ones (zeros); give it those."""
    saved = {name.rsplit("/", 1)[-1].split(":")[0]: value for name, value in zip(names, values)}
    shape = saved["moving_mean"].shape
    defaults = {"gamma": np.ones(shape, "float32"), "beta": np.zeros(shape, "float32")}
    return [saved[key] if key in saved else defaults[key] for key in BATCHNORM_WEIGHTS]


def _bind_for_prediction(model) -> None:
    """`save_mxnet_model` saves the module bound for prediction, which the first `predict` binds."""
    shapes = _input_shapes(model)
    if any(d is None for shape in shapes for d in shape[1:]):
        raise ConversionError("keras-mxnet saves a model of fixed input size; the input is "
                              f"{shapes[0]}: build the model with a fixed input_shape")
    x = [np.zeros((1, *shape[1:]), dtype="float32") for shape in shapes]
    model.predict(x if len(x) > 1 else x[0])


def _hints(model) -> dict[str, str]:
    """{node of the saved symbol: Keras layer} for every layer but the inputs: a layer's output in
    the prediction graph. A node two layers share (an identity at inference) goes to the first."""
    hints: dict[str, str] = {}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        for index in range(len(layer._inbound_nodes)):  # noqa: SLF001 (every call of the layer)
            outputs = layer.get_output_at(index)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            suffix = f"@{index}" if index else ""
            for i, out in enumerate(outputs):
                node = getattr(out, "_pred_sym", None)
                if node is None:
                    continue
                name = layer.name + suffix + (f":{i}" if len(outputs) > 1 else "")
                hints.setdefault(node.name, name)
    return hints


def _write_hint(model, symbol_path: str, data_names) -> None:
    """Input names, shapes and layouts beside the symbol (an MXNet symbol records none)."""
    inputs = []
    for name, shape in zip(data_names, _input_shapes(model)):
        inputs.append({"name": name, "shape": [None, *shape[1:]], "layout": _layout(model, len(shape))})
    first = inputs[0]
    write_input_hint(symbol_path, first["name"], first["shape"], first["layout"],
                     inputs if len(inputs) > 1 else None)


def _input_shapes(model) -> list:
    """The shape of each of the model's inputs (Keras gives a list only for several)."""
    return model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]


def _layout(model, rank: int) -> str:
    channels_first = any(getattr(layer, "data_format", None) == "channels_first" for layer in model.layers)
    return {2: "NC", 3: "NCW" if channels_first else "NWC", 4: "NCHW" if channels_first else "NHWC",
            5: "NCDHW" if channels_first else "NDHWC"}.get(rank, "none")
