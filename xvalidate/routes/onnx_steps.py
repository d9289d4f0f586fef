"""The ONNX route's conversion steps, each run in a worker of the framework it imports.

- `keras_to_onnx` (keras worker): tf2onnx.
- `onnx_to_mxnet` (mxnet worker): MXNet's ONNX importer, on a fixed copy of the graph.
- `mxnet_to_onnx` (mxnet worker): MXNet's ONNX exporter.

They take and return paths and small dicts. Frameworks are imported inside the functions.
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from xvalidate.errors import ConversionError, InputFileError, UnsupportedLayerError
from xvalidate.registry import get_adapter
from xvalidate.routes.onnx_names import TENSOR_MAP_FILE, layer_in_name
from xvalidate.routes.onnx_shapes import fold_reshape_shapes

# MXNet 1.9.1's importer reads the operator definitions up to this opset once
# `_importable_copy` has fixed the graph (onnx's version converter cannot take
# newer models down: it has no Relu 14 -> 13 adapter, for one).
MXNET_IMPORT_MAX_OPSET = 13
# The exporter converts every op by the rules of opset 13 at most, yet stamps the model
# with the newest opset the onnx package knows; `mxnet_to_onnx` stamps what it wrote.
MXNET_EXPORT_OPSET = 13


# ---------------------------------------------------------------- keras -> onnx
def keras_to_onnx(model_path: str, out_path: str, opset: int = 11, inputs_as_nchw: bool = False) -> dict:
    """Convert a saved Keras model (.h5, .keras, SavedModel dir) to ONNX with tf2onnx.

    inputs_as_nchw: make the ONNX inputs channels-first (tf2onnx transposes them inside).
    Returns {"onnx": out_path, "opset", "seconds", "nodes"}."""
    import tf2onnx

    model = get_adapter("keras").load(model_path)
    errors = _ErrorLog("tf2onnx")
    start = time.perf_counter()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with errors, _plain_grouped_convolutions(model):
        try:
            proto, _ = tf2onnx.convert.from_keras(
                model, opset=opset,
                inputs_as_nchw=[t.name.split(":")[0] for t in model.inputs] if inputs_as_nchw else None)
        except Exception as exc:  # tf2onnx raises whatever its op handler raised
            raise ConversionError(f"tf2onnx could not convert {model_path}{_at_layer(errors.failed_node(), model)}: "
                                  f"{_first_line(exc)}") from exc
    _check_onnx_ops(proto, model, model_path)
    _save_onnx(proto, out_path)
    return {"onnx": str(out_path), "opset": _opset(proto), "seconds": time.perf_counter() - start,
            "nodes": len(proto.graph.node)}


@contextmanager
def _plain_grouped_convolutions(model):
    """While tf2onnx traces the model, a convolution with groups > 1 calls its plain convolution op.

    Keras 2.12 runs grouped convolutions (ConvNeXt's depthwise 7x7, RegNet's 3x3) through a
    jit-compiled tf.function, which tf2onnx sees as an opaque 'PartitionedCall'; the plain op
    becomes an ONNX Conv with `group`. TensorFlow cannot run it on the CPU, so it is put back after."""
    grouped = [layer for layer in _nested_layers(model)
               if getattr(layer, "groups", 1) > 1 and hasattr(layer, "_jit_compiled_convolution_op")]
    for layer in grouped:
        layer._jit_compiled_convolution_op = layer.convolution_op
    try:
        yield
    finally:
        for layer in grouped:
            del layer._jit_compiled_convolution_op


def _nested_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _nested_layers(layer)


def _check_onnx_ops(proto, model, model_path: str) -> None:
    """tf2onnx leaves a TensorFlow op it cannot map in the graph under its TF name: refuse such a model."""
    import onnx.defs

    for node in proto.graph.node:
        if not onnx.defs.has(node.op_type, node.domain):
            raise UnsupportedLayerError(
                f"{model_path}: tf2onnx cannot convert TensorFlow op {node.op_type!r}"
                f"{_at_layer(node.name, model)} (node {node.name!r}) to ONNX")


def _at_layer(node_name: str | None, model) -> str:
    if not node_name:
        return ""
    layer = layer_in_name(node_name, {layer.name for layer in model.layers})
    return f" in layer {layer!r}" if layer else ""


class _ErrorLog(logging.Handler):
    """Collects the error records a library logs while converting (tf2onnx names the failing node only there)."""

    def __init__(self, logger: str):
        super().__init__(logging.ERROR)
        self.logger = logging.getLogger(logger)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def failed_node(self) -> str | None:
        for message in self.messages:
            if message.startswith("Failed to convert node "):
                return message.split("'")[1] if "'" in message else None
        return None

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)


# ---------------------------------------------------------------- onnx -> mxnet
def onnx_to_mxnet(onnx_path: str, out_dir: str) -> dict:
    """Import an ONNX model into MXNet and save a checkpoint `<out_dir>/model-symbol.json` +
    `model-0000.params` (arg:/aux: keys), plus `<out_dir>/tensor_map.json` ({ONNX tensor: MXNet output}).

    The graph is fixed on an in-memory copy first (the file is never changed): every initializer
    also listed as a graph input, Reshape targets computed at run time folded to constants
    (xvalidate.routes.onnx_shapes), opset-13 operands that the importer wants as attributes moved
    there. Opsets above 13 are refused. A padded AveragePool is imported so that it averages over
    the real values only, as ONNX defines it (count_include_pad=0); Pad and Slice as ONNX defines
    them (see xvalidate.routes.onnx_import_ops).
    Returns {"symbol", "params", "tensor_map", "inputs" ({name: shape, batch None}), "opset", "seconds"}."""
    import mxnet as mx
    from mxnet.contrib.onnx.onnx2mx.import_onnx import GraphProto

    start = time.perf_counter()
    model = _importable_copy(_load_onnx(onnx_path), onnx_path)
    graph = GraphProto()
    try:
        with _translations_fixed(), mx.name.NameManager():  # fresh counters: convolution0, ... in every call
            sym, arg_params, aux_params = graph.from_onnx(model.graph, opset_version=_opset(model))
    except NotImplementedError as exc:  # "Operator X not implemented."
        raise UnsupportedLayerError(f"{onnx_path}: MXNet's ONNX importer: {_first_line(exc)}") from exc
    except Exception as exc:  # the op translations raise whatever fails in them
        raise ConversionError(f"{onnx_path}: MXNet's ONNX importer failed at node {_node_at_failure(graph, model)}: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from exc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mx.model.save_checkpoint(str(out / "model"), 0, sym, arg_params, aux_params)
    initializers = {init.name for init in model.graph.initializer}
    tensor_map = {tensor: node.list_outputs()[0] for tensor, node in graph._nodes.items() if tensor not in initializers}
    (out / TENSOR_MAP_FILE).write_text(json.dumps(tensor_map, indent=0))
    inputs = {i.name: [d.dim_value or None for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input if i.name not in initializers}
    return {"symbol": str(out / "model-symbol.json"), "params": str(out / "model-0000.params"),
            "tensor_map": str(out / TENSOR_MAP_FILE), "inputs": inputs, "opset": _opset(model),
            "seconds": time.perf_counter() - start}


def _load_onnx(onnx_path: str):
    import onnx

    if not os.path.isfile(onnx_path):
        raise InputFileError(f"{onnx_path}: no such ONNX file")
    try:
        return onnx.load(onnx_path)
    except Exception as exc:  # protobuf raises its own DecodeError, among others
        raise InputFileError(f"{onnx_path}: cannot read as an ONNX model: {_first_line(exc)}") from exc


def _importable_copy(model, onnx_path: str):
    """A copy of `model` that MXNet's importer takes (see `onnx_to_mxnet`); `model` is left as it was."""
    import onnx

    opset = _opset(model)
    if opset > MXNET_IMPORT_MAX_OPSET:
        raise ConversionError(f"{onnx_path}: opset {opset} is newer than MXNet's ONNX importer reads; convert the "
                              f"model with opset {MXNET_IMPORT_MAX_OPSET} or lower (tf2onnx: --opset 13)")
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fold_reshape_shapes(fixed)
    _list_initializers_as_inputs(fixed.graph)
    _operands_to_attributes(fixed.graph, onnx_path)
    return fixed


def _list_initializers_as_inputs(graph) -> None:
    """The importer looks every node input up among the graph inputs; since IR 4 initializers need not be there."""
    from onnx import helper

    listed = {i.name for i in graph.input}
    for init in graph.initializer:
        if init.name not in listed:
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))


# op -> (input position, attribute) that opset 13 turned from attributes into inputs
_OPERANDS_AS_ATTRIBUTES = {
    "Squeeze": (1, "axes"),
    "Unsqueeze": (1, "axes"),
    "ReduceSum": (1, "axes"),
    "Split": (1, "split"),
}


def _operands_to_attributes(graph, onnx_path: str) -> None:
    """Move constant operands that the importer reads as attributes (opset <= 12 style) back into attributes."""
    from onnx import helper, numpy_helper

    constants = {init.name: init for init in graph.initializer}
    constants.update({node.output[0]: attr.t for node in graph.node if node.op_type == "Constant"
                      for attr in node.attribute if attr.name == "value"})
    for node in graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] not in constants:
            raise UnsupportedLayerError(
                f"{onnx_path}: node {node.name!r} (Reshape) computes its target shape at run time (tf2onnx writes "
                f"this for a Dense or Tensordot on a tensor of rank > 2); MXNet's ONNX importer needs a constant "
                f"shape; validate with dst='onnx' (onnxruntime) instead")
        position, attribute = _OPERANDS_AS_ATTRIBUTES.get(node.op_type, (None, None))
        if position is None or len(node.input) <= position:
            continue
        operand = node.input[position]
        if operand and operand not in constants:
            raise ConversionError(f"{onnx_path}: node {node.name!r} ({node.op_type}) computes its {attribute!r} "
                                  f"operand {operand!r}; MXNet's ONNX importer needs a constant there")
        del node.input[position:]
        if operand:
            values = [int(v) for v in numpy_helper.to_array(constants[operand]).reshape(-1)]
            node.attribute.append(helper.make_attribute(attribute, values))


@contextmanager
def _translations_fixed():
    """While importing, translate AveragePool with `_average_pool` (the importer's own one pads with
    zeros and averages over them too, ignoring count_include_pad=0: Keras' padding="same" average
    pooling, as in InceptionV3, comes out wrong at the borders), and Pad, Slice and Erf (which it
    lacks) with xvalidate.routes.onnx_import_ops."""
    from mxnet.contrib.onnx.onnx2mx._import_helper import _convert_map

    from xvalidate.routes.onnx_import_ops import TRANSLATIONS

    fixed = {"AveragePool": _average_pool, **TRANSLATIONS}
    original = {op: _convert_map[op] for op in fixed if op in _convert_map}
    _convert_map.update(fixed)
    try:
        yield
    finally:
        for op in fixed:
            _convert_map.pop(op)
        _convert_map.update(original)


def _average_pool(attrs, inputs, proto_obj):
    """ONNX AveragePool: with padding and count_include_pad=0, the mean of the zero-padded input over
    each window divided by the share of real values in that window (the same pooling over ones)."""
    from mxnet import symbol
    from mxnet.contrib.onnx.onnx2mx._op_translations import avg_pooling

    if attrs.get("count_include_pad", 0) or not any(attrs.get("pads", ())):
        return avg_pooling(attrs, inputs, proto_obj)
    padded_mean, new_attrs, _ = avg_pooling(attrs, inputs, proto_obj)
    real_share, _, _ = avg_pooling(attrs, [symbol.ones_like(inputs[0])], proto_obj)
    return symbol.broadcast_div(padded_mean, real_share), new_attrs, inputs


def _node_at_failure(graph, model) -> str:
    """The first ONNX node whose outputs the importer had not produced when it stopped."""
    for node in model.graph.node:
        if any(out not in graph._nodes for out in node.output):
            return f"{node.name!r} ({node.op_type})"
    return "(unknown)"


# ---------------------------------------------------------------- mxnet -> onnx
def mxnet_to_onnx(symbol_path: str, params_path: str, input_shape: list[int], out_path: str) -> dict:
    """Export an MXNet checkpoint (symbol JSON + params, keys with or without arg:/aux:) to ONNX with
    `mx.onnx.export_model` for one float32 input of `input_shape`; the batch dimension stays free.
    The gamma of a BatchNorm with fix_gamma is exported as ones, as MXNet computes it.
    Returns {"onnx": out_path, "opset", "seconds"}."""
    import mxnet as mx
    import numpy as np

    for path in (symbol_path, params_path):
        if not os.path.isfile(path):
            raise InputFileError(f"{path}: no such MXNet file")
    try:
        sym = mx.sym.load(symbol_path)
        params = {key.split(":", 1)[-1]: value for key, value in mx.nd.load(params_path).items()}
    except mx.MXNetError as exc:
        raise InputFileError(f"{symbol_path}: cannot load the MXNet checkpoint: {_first_line(exc)}") from exc

    params = _fixed_gammas_as_ones(sym, params)
    shape = tuple(int(d) for d in input_shape)
    start = time.perf_counter()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with _raw_tensors():
            mx.onnx.export_model(sym, params, in_shapes=[shape], in_types=[np.float32], onnx_file_path=str(out_path),
                                 dynamic=True, dynamic_input_shapes=[(None, *shape[1:])])
    except AttributeError as exc:  # "No conversion function registered for op type X yet."
        op = str(exc).split("op type ")[-1].split(" ")[0] if "op type " in str(exc) else None
        where = f" (node {_first_node_of(symbol_path, op)!r})" if op else ""
        raise UnsupportedLayerError(f"{symbol_path}: MXNet's ONNX exporter cannot convert op {op or '?'}{where}: "
                                    f"{_first_line(exc)}") from exc
    except Exception as exc:  # the op conversions raise whatever fails in them
        raise ConversionError(f"{symbol_path}: MXNet's ONNX exporter failed: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from exc
    _stamp_opset(out_path, MXNET_EXPORT_OPSET)
    return {"onnx": str(out_path), "opset": MXNET_EXPORT_OPSET, "seconds": time.perf_counter() - start}


# Tensor types whose values numpy holds exactly as the exporter passes them (float16 comes as uint16 bits).
_RAW_TYPES = ("FLOAT", "DOUBLE", "INT32", "INT64")


@contextmanager
def _raw_tensors():
    """While exporting, store tensor values as raw bytes rather than repeated fields.

    MXNet's exporter passes every weight to `onnx.helper.make_tensor` as a Python list with raw=False;
    with the pure-Python protobuf that protobuf 3.20 has on Python 3.11, filling and later parsing
    those repeated fields took 28 s + 37 s for a ResNet-18 (1 s in all as raw bytes). The values
    are the same either way."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    original = helper.make_tensor
    raw_types = {getattr(TensorProto, name) for name in _RAW_TYPES}

    def make_tensor(name, data_type, dims, vals, raw=False):
        if raw or data_type not in raw_types:
            return original(name, data_type, dims, vals, raw)
        values = np.asarray(vals, dtype=helper.tensor_dtype_to_np_dtype(data_type)).reshape(tuple(dims))
        return numpy_helper.from_array(values, name)

    helper.make_tensor = make_tensor
    try:
        yield
    finally:
        helper.make_tensor = original


def _fixed_gammas_as_ones(sym, params: dict) -> dict:
    """`params` with the gamma of every BatchNorm whose fix_gamma is on (MXNet's default) set to ones.

    MXNet ignores such a gamma (Gluon's BatchNorm(scale=False), as in the model zoo's ResNet V2 stems);
    the exporter writes it into the ONNX BatchNormalization as a scale anyway."""
    import mxnet as mx

    nodes = json.loads(sym.tojson())["nodes"]
    out = dict(params)
    for node in nodes:
        if node["op"] != "BatchNorm" or len(node["inputs"]) < 2:
            continue
        if node.get("attrs", {}).get("fix_gamma", "True") not in ("True", "true", "1"):
            continue
        gamma = nodes[node["inputs"][1][0]]["name"]
        if gamma in out:
            out[gamma] = mx.nd.ones_like(out[gamma])
    return out


def _first_node_of(symbol_path: str, op: str) -> str | None:
    with open(symbol_path) as f:
        return next((node["name"] for node in json.load(f)["nodes"] if node["op"] == op), None)


def _stamp_opset(onnx_path: str, opset: int) -> None:
    """Declare the default-domain opset that the exporter's op conversions follow."""
    import onnx

    model = onnx.load(onnx_path)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    onnx.checker.check_model(model)
    _save_onnx(model, onnx_path)


# ---------------------------------------------------------------- shared
def _opset(model) -> int:
    return max((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), default=1)


def _save_onnx(model, out_path: str) -> None:
    import onnx

    onnx.save(model, str(out_path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
