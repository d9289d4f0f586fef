"""The steps of the MMdnn route, run in worker processes:

  keras_to_ir       (TensorFlow worker)  the step behind `mmtoir -f keras`
  ir_to_mxnet       (MXNet worker)       the step behind `mmtocode -f mxnet`, then the
                                         generated code is run and saved as a checkpoint
  mxnet_name_hints  (any worker)         which MXNet tensor equals which Keras layer
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import time
from pathlib import Path

from xvalidate.errors import ConversionError, InputFileError, UnsupportedLayerError

ROUTE_HINT = "try the ONNX route (via='onnx')"


def keras_to_ir(model_path: str, out_dir: str) -> dict:
    """Parse a Keras model file into MMdnn IR: `<out_dir>/ir.json`, `ir.pb`, `ir.npy`.
    A layer MMdnn's parser has no handler for raises UnsupportedLayerError naming it."""
    from xvalidate.routes.mmdnn_shims import apply_keras_shims

    apply_keras_shims()
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    start = time.perf_counter()
    if not Path(model_path).is_file():
        raise InputFileError(f"{model_path}: no such model file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            parser = Keras2Parser(model_path)
            _check_supported(parser, model_path)
            parser.run(str(out / "ir"))
    except (UnsupportedLayerError, ConversionError):
        raise
    except NotImplementedError as exc:  # "Lambda layer [x] in keras is not supported yet."
        raise UnsupportedLayerError(f"{model_path}: MMdnn cannot convert: {_first(exc)}; {ROUTE_HINT}") from None
    except Exception as exc:
        raise ConversionError(f"{model_path}: MMdnn's Keras parser failed ({type(exc).__name__}: {_first(exc)}); "
                              f"{ROUTE_HINT}") from None
    paths = {f"ir_{ext}": str(out / f"ir.{ext}") for ext in ("json", "pb", "npy")}
    for path in paths.values():
        if not Path(path).exists():
            raise ConversionError(f"{model_path}: MMdnn wrote no {Path(path).name} (log: {log.getvalue()[-200:]!r})")
    return {**paths, "seconds": time.perf_counter() - start}


def _check_supported(parser, model_path: str) -> None:
    """Every layer must have a handler: MMdnn only prints a warning and writes a broken IR."""
    for name in parser.keras_graph.topological_sort:
        node = parser.keras_graph.get_node(name)
        kind = node.type
        if kind == "Lambda" and not hasattr(parser, "rename_" + node.layer.name):
            raise UnsupportedLayerError(f"{model_path}: layer {name!r} (Lambda) cannot be converted by route 'mmdnn'; "
                                        f"{ROUTE_HINT}")
        if not hasattr(parser, "rename_" + kind):
            raise UnsupportedLayerError(f"{model_path}: layer {name!r} of type {kind} cannot be converted by route "
                                        f"'mmdnn'; {ROUTE_HINT}")


def ir_to_mxnet(ir_pb: str, ir_npy: str, out_dir: str) -> dict:
    """Emit MXNet code and weights from MMdnn IR, run the code, and save the network as an MXNet
    checkpoint `<out_dir>/model-symbol.json` + `model-0000.params` (plus `model-input.json`)."""
    from xvalidate.routes.mmdnn_shims import apply_mxnet_shims

    apply_mxnet_shims()
    import mxnet as mx
    from mmdnn.conversion.mxnet.mxnet_emitter import MXNetEmitter

    from xvalidate_adapters.mxnet import write_input_hint

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    code_path, weights_path = out / "mxnet_model.py", out / "mxnet_weights.npy"
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            emitter = MXNetEmitter((ir_pb, ir_npy, str(weights_path)))
            emitter.run(str(code_path), str(weights_path), "test")
    except Exception as exc:
        raise ConversionError(f"{ir_pb}: MMdnn's MXNet emitter failed ({type(exc).__name__}: {_first(exc)})") from None
    unsupported = re.findall(r"MXNet Emitter has not supported operator \[(\w+)\]", log.getvalue())
    if unsupported:
        raise UnsupportedLayerError(f"{ir_pb}: MMdnn's MXNet emitter cannot write op(s) {', '.join(sorted(set(unsupported)))}; "
                                    f"{ROUTE_HINT}")
    (input_name, shape), = emitter.input_name_shape.items()
    try:
        spec = importlib.util.spec_from_file_location("xvalidate_mmdnn_generated", code_path)
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        with contextlib.redirect_stdout(log):
            module = generated.deploy_weight(generated.RefactorModel(), str(weights_path))  # a file written above
    except Exception as exc:
        raise ConversionError(f"{code_path}: the generated MXNet code failed ({type(exc).__name__}: {_first(exc)})") from None
    arg_params, aux_params = module.get_params()
    prefix = out / "model"
    mx.model.save_checkpoint(str(prefix), 0, module.symbol, arg_params, aux_params)
    write_input_hint(f"{prefix}-symbol.json", input_name, [None, *shape[1:]], "NCHW")
    return {"code": str(code_path), "weights": str(weights_path), "symbol": f"{prefix}-symbol.json",
            "params": f"{prefix}-0000.params", "seconds": time.perf_counter() - start}


def mxnet_name_hints(symbol_path: str, keras_layer_names: list[str]) -> dict[str, str]:
    """{MXNet tensor (internal output name without "_output"): Keras layer} for a symbol emitted by MMdnn,
    which keeps Keras layer names; a defused activation is `<layer>_activation`, and that tensor (not the
    pre-activation one) is what Keras reports for the layer."""
    nodes = json.loads(Path(symbol_path).read_text())["nodes"]
    names = {n["name"] for n in nodes if n["op"] != "null"}
    consumers: dict[str, list[dict]] = {}
    for node in nodes:
        for producer, *_ in node.get("inputs", []):
            consumers.setdefault(nodes[producer]["name"], []).append(node)
    hints = {}
    for layer in keras_layer_names:
        if layer + "_activation" in names:
            hints[layer + "_activation"] = layer
        elif layer in names:
            after = consumers.get(layer, [])
            # the model's final softmax is emitted as SoftmaxOutput named "softmax"
            final_softmax = len(after) == 1 and after[0]["op"] == "SoftmaxOutput"
            hints[after[0]["name"] if final_softmax else layer] = layer
    return hints


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
