"""The steps of the MMdnn route, run in worker processes:

  keras_to_ir       (TensorFlow worker)  the step behind `mmtoir -f keras`
  ir_to_mxnet       (MXNet worker)       the step behind `mmtocode -f mxnet`, then the
                                         generated code is run and saved as a checkpoint
  mxnet_name_hints  (any process)        which MXNet tensor equals which Keras layer

MMdnn's parser and emitter print "has not supported operator" and go on, writing a
half-converted model; these steps check every layer and every IR node first and
raise UnsupportedLayerError instead. Frameworks are imported inside the functions.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import time
from pathlib import Path

from xvalidate.errors import ConversionError, InputFileError, UnsupportedLayerError, XValidateError
from xvalidate.hashing import file_sha256
from xvalidate.registry import get_adapter

ROUTE = "mmdnn"
ROUTE_HINT = "try the ONNX route (via='onnx')"
DIGEST_SUFFIX = ".sha256"  # beside ir.npy: the digest keras_to_ir wrote, checked before the pickle is loaded
# Suffixes MMdnn appends to a Keras layer's name for the ops it emits after the layer's own op,
# last op first: a defused activation, ReLU6's clip, the flatten after a global pooling.
OUTPUT_SUFFIXES = ("_activation_clip", "_activation", "_clip", "_flatten")


# ---------------------------------------------------------------- keras -> IR
def keras_to_ir(model_path: str, out_dir: str) -> dict:
    """Parse a saved Keras model into MMdnn IR: `<out_dir>/ir.json`, `ir.pb`, `ir.npy`.

    A layer MMdnn's parser cannot convert raises UnsupportedLayerError naming it.
    Returns {"ir_json", "ir_pb", "ir_npy", "layers", "seconds"}."""
    from xvalidate.routes.mmdnn_shims import apply_keras_shims, keras_parser

    start = time.perf_counter()
    adapter = get_adapter("keras")
    model = adapter.inlined(adapter.load(model_path))  # MMdnn's parser reads one graph: nested models inlined
    apply_keras_shims()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # MMdnn prints every file it writes
        parser = keras_parser(model)
        _check_parsable(parser, model_path)
        _gen_ir(parser, model_path)
        paths = {f"ir_{ext}": str(out / f"ir.{ext}") for ext in ("json", "pb", "npy")}
        parser.save_to_json(paths["ir_json"])
        parser.save_to_proto(paths["ir_pb"])
        parser.save_weights(paths["ir_npy"])
    Path(paths["ir_npy"] + DIGEST_SUFFIX).write_text(file_sha256(paths["ir_npy"]))
    return {**paths, "layers": len(parser.keras_graph.topological_sort), "seconds": time.perf_counter() - start}


def _unsupported(model_path: str, layer: str, kind: str, reason: str = "") -> UnsupportedLayerError:
    reason = f": {reason}" if reason else ""
    return UnsupportedLayerError(f"{model_path}: layer {layer!r} ({kind}) cannot be converted by route "
                                 f"{ROUTE!r}{reason}; {ROUTE_HINT}")


def _check_parsable(parser, model_path: str) -> None:
    """Every layer the parser will visit must have a handler, and its activation must be one it maps."""
    for name in parser.keras_graph.topological_sort:
        node = parser.keras_graph.get_node(name)
        kind, layer = node.type, node.layer
        if kind == "InputLayer" and None in tuple(_unwrap_shape(layer.output_shape))[1:]:
            raise _unsupported(model_path, name, kind, f"MMdnn needs a fixed input size, the input is "
                               f"{tuple(_unwrap_shape(layer.output_shape))}; build the model with a fixed input_shape")
        if kind == "Lambda":  # the parser converts a Lambda only when a handler carries the layer's name
            if not hasattr(parser, "rename_" + layer.name):
                raise _unsupported(model_path, name, kind)
        elif not hasattr(parser, "rename_" + kind):
            raise _unsupported(model_path, name, kind, f"MMdnn's Keras parser has no handler for {kind}")
        activation = getattr(layer, "activation", None)
        if callable(activation):
            act = getattr(activation, "__name__", type(activation).__name__)
            if act != "linear" and act not in parser.activation_map:
                raise _unsupported(model_path, name, kind, f"activation {act!r} has no MMdnn IR op")


def _unwrap_shape(shape):
    return shape[0] if isinstance(shape, list) and len(shape) == 1 else shape


def _gen_ir(parser, model_path: str) -> None:
    """Keras2Parser.gen_IR, with the layer named in any failure (and no Keras session reset)."""
    for name in parser.keras_graph.topological_sort:
        node = parser.keras_graph.get_node(name)
        try:
            getattr(parser, "rename_" + node.type)(node)
        except NotImplementedError as exc:
            raise _unsupported(model_path, name, node.type, _first(exc)) from None
        except XValidateError:
            raise
        except Exception as exc:
            raise ConversionError(f"{model_path}: MMdnn's Keras parser failed on layer {name!r} ({node.type}): "
                                  f"{type(exc).__name__}: {_first(exc)}") from None


# ---------------------------------------------------------------- IR -> mxnet
def ir_to_mxnet(ir_pb: str, ir_npy: str, out_dir: str) -> dict:
    """Emit MXNet code and weights from MMdnn IR (`<out_dir>/mxnet_model.py`, `mxnet_weights.npy`),
    build the network from that code and save it as an MXNet checkpoint `<out_dir>/model-symbol.json`
    + `model-0000.params` (arg:/aux: keys; `model-input.json` records the input).

    `ir_npy` is a pickle: it is read only when it matches the digest keras_to_ir wrote beside it.
    Returns {"code", "weights", "symbol", "params", "seconds"}."""
    from xvalidate.routes.mmdnn_shims import apply_mxnet_shims

    start = time.perf_counter()
    _check_digest(ir_npy)
    if not Path(ir_pb).is_file():
        raise InputFileError(f"{ir_pb}: no such MMdnn IR file")
    apply_mxnet_shims()
    import mxnet as mx
    from mmdnn.conversion.mxnet.mxnet_emitter import MXNetEmitter

    from xvalidate_adapters.common import layout_for_rank
    from xvalidate.input_hint import write_input_hint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    code_path, weights_path = out / "mxnet_model.py", out / "mxnet_weights.npy"
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            emitter = MXNetEmitter((ir_pb, ir_npy, str(weights_path)))
        except Exception as exc:
            raise ConversionError(f"{ir_pb}: MMdnn cannot read the IR ({type(exc).__name__}: {_first(exc)})") from None
        _check_emittable(emitter, ir_pb)
        try:
            emitter.run(str(code_path), str(weights_path), "test")
        except Exception as exc:
            raise ConversionError(f"{ir_pb}: MMdnn's MXNet emitter failed ({type(exc).__name__}: {_first(exc)})") from None
        symbol = _generated_symbol(code_path)
    (input_name, shape), = emitter.input_name_shape.items()
    arg_params, aux_params = _checkpoint_params(symbol, emitter.output_weights, input_name, shape, code_path)
    prefix = out / "model"
    mx.model.save_checkpoint(str(prefix), 0, symbol,
                             {k: mx.nd.array(v) for k, v in arg_params.items()},
                             {k: mx.nd.array(v) for k, v in aux_params.items()})
    write_input_hint(f"{prefix}-symbol.json", input_name, [None, *shape[1:]],
                     layout_for_rank(len(shape), channels_first=True))
    return {"code": str(code_path), "weights": str(weights_path), "symbol": f"{prefix}-symbol.json",
            "params": f"{prefix}-0000.params", "seconds": time.perf_counter() - start}


def _check_digest(ir_npy: str) -> None:
    digest = Path(ir_npy + DIGEST_SUFFIX)
    if not Path(ir_npy).is_file():
        raise InputFileError(f"{ir_npy}: no such MMdnn IR weight file")
    if not digest.is_file() or digest.read_text().strip() != file_sha256(ir_npy):
        raise InputFileError(f"{ir_npy}: not an IR weight file written by keras_to_ir (no matching {digest.name}); "
                             "it is a pickle, so only files this tool wrote are read")


def _check_emittable(emitter, ir_pb: str) -> None:
    """Every IR node needs an emitter handler: MMdnn otherwise prints a warning and writes broken code."""
    graph = emitter.IR_graph
    for name in graph.topological_sort:
        op = graph.get_node(name).type
        if op.lower() not in emitter.activation_map and not hasattr(emitter, "emit_" + op):
            raise UnsupportedLayerError(f"{ir_pb}: layer {name!r} (IR op {op}) cannot be converted by route "
                                        f"{ROUTE!r}: MMdnn's MXNet emitter has no handler for {op}; {ROUTE_HINT}")


def _generated_symbol(code_path: Path):
    """Run the code the emitter wrote (RefactorModel builds a Module) and return its symbol."""
    try:
        spec = importlib.util.spec_from_file_location("xvalidate_mmdnn_generated", code_path)
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        return generated.RefactorModel().symbol
    except Exception as exc:
        raise ConversionError(f"{code_path}: the MXNet code MMdnn generated fails "
                              f"({type(exc).__name__}: {_first(exc)})") from None


def _checkpoint_params(symbol, weights: dict, input_name: str, shape: tuple, code_path: Path) -> tuple[dict, dict]:
    """Split the emitted weights into arg/aux params; every parameter must be there with the inferred shape.
    The gamma of a BatchNorm without scale (fix_gamma: MXNet ignores it) gets ones; MMdnn writes none."""
    import numpy as np

    arg_shapes, _, aux_shapes = symbol.infer_shape(**{input_name: tuple(shape)})
    wanted = {**dict(zip(symbol.list_arguments(), arg_shapes)), **dict(zip(symbol.list_auxiliary_states(), aux_shapes))}
    fixed_gammas = _fixed_gammas(symbol)
    params = {}
    for name, want in wanted.items():
        if name == input_name or name.endswith("_label"):
            continue
        if name not in weights and name in fixed_gammas:
            params[name] = np.ones(want, np.float32)
            continue
        if name not in weights:
            raise ConversionError(f"{code_path}: MMdnn wrote no weights for parameter {name!r}")
        value = np.asarray(weights[name], np.float32)
        if value.shape != tuple(want):
            raise ConversionError(f"{code_path}: MMdnn's weights for {name!r} have shape {value.shape}, "
                                  f"the network needs {tuple(want)}")
        params[name] = value
    aux = set(symbol.list_auxiliary_states())
    return ({k: v for k, v in params.items() if k not in aux}, {k: v for k, v in params.items() if k in aux})


def _fixed_gammas(symbol) -> set[str]:
    """Names of the gamma inputs of BatchNorm ops with fix_gamma=True."""
    nodes = json.loads(symbol.tojson())["nodes"]
    return {nodes[n["inputs"][1][0]]["name"] for n in nodes
            if n["op"] == "BatchNorm" and n.get("attrs", {}).get("fix_gamma") in ("True", "1", "true")}


# ---------------------------------------------------------------- names
def mxnet_name_hints(symbol_path: str, keras_layer_names: list[str]) -> dict[str, str]:
    """{MXNet tensor (internal output name without "_output"): Keras layer} for a symbol emitted by MMdnn.

    MMdnn keeps Keras layer names (a nested model's layer "outer/inner" as "inner": the parser reads
    the model with nested models inlined). Where it emits ops after a layer's own op (a defused activation
    `<layer>_activation`, ReLU6's `<layer>_clip`, a global pooling's `<layer>_flatten`), the last of
    them is what Keras reports for the layer, and the tensor before it is not mapped. Reads the
    symbol file as JSON: no framework needed."""
    try:
        nodes = json.loads(Path(symbol_path).read_text())["nodes"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(f"{symbol_path}: not a readable MXNet symbol file ({_first(exc)})") from None
    tensors = {n["name"] for n in nodes if n["op"] != "null"}
    leaves = {layer: layer.rsplit("/", 1)[-1] for layer in keras_layer_names}  # nested "outer/inner": inlined
    layers = set(leaves.values())
    hints = {}
    for layer, leaf in leaves.items():
        if "@" in layer:  # a further call of a shared layer or nested model: MMdnn names the calls alike
            continue
        for name in [leaf + s for s in OUTPUT_SUFFIXES if leaf + s not in layers] + [leaf]:
            if name in tensors:
                hints[name] = layer
                break
    return hints


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
