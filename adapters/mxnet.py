"""MXNet adapter: a `prefix-symbol.json` with its `prefix-NNNN.params` (Gluon `export()` and
Module checkpoints, keys `arg:`/`aux:`), or an in-memory Gluon HybridBlock.

Capture: every non-variable output of `symbol.get_internals()` grouped into one symbol,
bound once per (input shape, layer set), one forward (is_train=False). Names are the
internal output names without "_output" ("conv0_fwd"); an op with several outputs gives
"name:0", "name:1"... The input is the one argument with no value in the params.

The input's layout is NCHW unless the graph starts by transposing it from NHWC (models
imported from tf2onnx). A `prefix-input.json` beside the symbol ({"name", "shape",
"layout"}), written by `save` and by the routes, records the input shape; without it the
channel count is read from the first convolution and the spatial size is unknown.
"""
from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import check_input, layout_for_rank, pick_layers

_OUTPUT = re.compile(r"^(.*)_output(\d*)$")
_KINDS = {
    "Convolution": ["conv"], "Deconvolution": ["conv"], "FullyConnected": ["dense"], "BatchNorm": ["bn"],
    "Flatten": ["flatten"], "flatten": ["flatten"], "Reshape": ["reshape"], "reshape": ["reshape"],
    "softmax": ["softmax"], "SoftmaxActivation": ["softmax"], "SoftmaxOutput": ["softmax"],
    "relu": ["relu"], "sigmoid": ["sigmoid"], "tanh": ["tanh"], "LeakyReLU": ["act"],
    "elemwise_add": ["add"], "broadcast_add": ["add"], "_Plus": ["add"], "_plus": ["add"], "add_n": ["add"],
    "ElementWiseSum": ["add"], "elemwise_mul": ["mul"], "broadcast_mul": ["mul"], "_Mul": ["mul"], "_mul": ["mul"],
    "Concat": ["concat"], "concat": ["concat"], "Pad": ["pad"], "pad": ["pad"],
    "Dropout": ["identity"], "transpose": ["identity"], "_copy": ["identity"], "identity": ["identity"],
    "BlockGrad": ["identity"],
}
_ACT = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "act", "softsign": "act"}


@dataclass
class MXNetModel:
    """A loaded MXNet model: symbol, parameters and what the adapter learned about it."""

    symbol: Any
    arg_params: dict
    aux_params: dict
    source: str
    input_name: str
    input_shape: tuple | None = None
    input_layout: str = "NCHW"
    executors: dict = field(default_factory=dict)


def _parse(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return {"True": True, "False": False}.get(value, value)


class MXNetAdapter(Adapter):
    name = "mxnet"
    layout = "NCHW"
    extensions = ("-symbol.json", ".json", ".params")

    # ---------------------------------------------------------------- loading
    def owns(self, obj: Any) -> bool:
        return any(c.__module__.startswith("mxnet.gluon") and c.__name__ in ("HybridBlock", "Block")
                   for c in type(obj).__mro__)

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        import mxnet as mx

        prefix = str(Path(directory) / "model")
        model.hybridize()
        try:
            model.export(prefix)
        except (AssertionError, RuntimeError, mx.base.MXNetError):
            if example is None:
                raise InputShapeError("in-memory Gluon block: run it once (hybridized) before passing it, or give "
                                      "inputs, so that its graph can be exported") from None
            model(mx.nd.array(example[:1]))
            model.export(prefix)
        if example is not None:
            write_input_hint(prefix + "-symbol.json", None, [None, *example.shape[1:]], "NCHW")
        return prefix + "-symbol.json"

    def load(self, source: Any, input_shape: Sequence[int | None] | None = None) -> MXNetModel:
        if self.owns(source):
            return self.load(self.save(source, tempfile.mkdtemp(prefix="xvalidate-gluon-")), input_shape)
        symbol_path, params_path = _files(Path(source))
        import mxnet as mx

        try:
            symbol = mx.sym.load(str(symbol_path))
        except Exception as exc:  # MXNetError, or a decode error on a binary file
            raise InputFileError(f"{symbol_path}: not a readable MXNet symbol file ({_first(exc)})") from None
        try:
            saved = mx.nd.load(str(params_path))
        except Exception as exc:  # MXNetError and friends
            raise InputFileError(f"{params_path}: not a readable MXNet params file ({_first(exc)})") from None
        arg_params, aux_params = {}, {}
        for key, value in saved.items():
            kind, _, name = key.partition(":")
            if kind == "aux":
                aux_params[name] = value
            else:
                arg_params[name if kind == "arg" else key] = value
        free = [a for a in symbol.list_arguments() if a not in arg_params and not a.endswith("_label")]
        if len(free) != 1:
            raise InputFileError(f"{symbol_path}: expected one data input without a value in {params_path.name}, "
                                 f"found {len(free)}: {', '.join(free[:5])}")
        model = MXNetModel(symbol, arg_params, aux_params, str(symbol_path), free[0])
        hint = _read_input_hint(symbol_path)
        model.input_layout = hint.get("layout") or _input_layout(symbol, free[0])
        shape = input_shape or hint.get("shape")
        model.input_shape = tuple(shape) if shape else _guess_input_shape(model)
        return model

    # ---------------------------------------------------------------- graph
    def _nodes(self, model: MXNetModel) -> list[tuple[str, int, dict, str]]:
        """(capture name, node index, json node, internal output name) for every op output, in graph order."""
        nodes = json.loads(model.symbol.tojson())["nodes"]
        index_of = {n["name"]: i for i, n in enumerate(nodes)}
        out = []
        for output in model.symbol.get_internals().list_outputs():
            m = _OUTPUT.match(output)
            if not m or m.group(1) not in index_of or nodes[index_of[m.group(1)]]["op"] == "null":
                continue
            i = index_of[m.group(1)]
            out.append((m.group(1) if not m.group(2) else f"{m.group(1)}:{m.group(2)}", i, nodes[i], output))
        return out

    def layers(self, model: MXNetModel) -> list[LayerInfo]:
        entries = self._nodes(model)
        shapes = self._shapes(model, [e[3] for e in entries])
        name_of_node: dict[int, str] = {}
        for name, i, _, _ in entries:
            name_of_node.setdefault(i, name)
        infos = []
        for name, _, node, output in entries:
            attrs = {k: _parse(v) for k, v in node.get("attrs", {}).items()}
            inputs = [name_of_node[i[0]] for i in node["inputs"] if i[0] in name_of_node]
            shape = shapes.get(output)
            infos.append(LayerInfo(name=name, op=node["op"], shape=shape,
                                   layout=layout_for_rank(len(shape), channels_first=True) if shape else "none",
                                   kinds=_kinds(node["op"], attrs), inputs=inputs, attrs=_small(attrs)))
        return infos

    def _shapes(self, model: MXNetModel, outputs: list[str]) -> dict[str, tuple]:
        if model.input_shape is None or any(d is None for d in model.input_shape[1:]):
            return {}
        internals = model.symbol.get_internals()
        try:
            _, out_shapes, _ = internals.infer_shape(**{model.input_name: (1, *model.input_shape[1:])})
        except Exception:  # shape inference is a nicety here; run() reports real shapes
            return {}
        if out_shapes is None:
            return {}
        return {o: (None, *s[1:]) for o, s in zip(internals.list_outputs(), out_shapes) if o in set(outputs)}

    def input_info(self, model: MXNetModel) -> InputInfo:
        shape = model.input_shape or (None, None, None, None)
        return InputInfo(name=model.input_name, shape=tuple(shape), dtype="float32", layout=model.input_layout)

    # ---------------------------------------------------------------- running
    def run(self, model: MXNetModel, x: np.ndarray, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        import mxnet as mx

        expected = model.input_shape or (None,) * x.ndim
        check_input(x, (None, *expected[1:]), model.source)
        entries = self._nodes(model)
        chosen = pick_layers([e[0] for e in entries], layers, model.source)
        output_of = {e[0]: e[3] for e in entries}
        key = (x.shape, tuple(chosen))
        exe = model.executors.get(key)
        if exe is None:
            internals = model.symbol.get_internals()
            group = mx.sym.Group([internals[output_of[n]] for n in chosen])
            args = {name: model.arg_params[name] for name in group.list_arguments() if name in model.arg_params}
            args[model.input_name] = mx.nd.zeros(x.shape)
            for name in group.list_arguments():  # labels of SoftmaxOutput heads: unused at inference
                if name not in args:
                    args[name] = mx.nd.zeros((x.shape[0],))
            aux = {name: model.aux_params[name] for name in group.list_auxiliary_states()}
            try:
                exe = group.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
            except mx.base.MXNetError as exc:
                raise InputShapeError(f"{model.source}: cannot run on an input of shape {tuple(x.shape)} "
                                      f"({_first(exc)})") from None
            model.executors = {key: exe}  # one cached executor: a new shape rebinds
        exe.arg_dict[model.input_name][:] = x.astype(np.float32, copy=False)
        outputs = exe.forward(is_train=False)
        return {name: out.asnumpy() for name, out in zip(chosen, outputs)}


def _files(path: Path) -> tuple[Path, Path]:
    """The symbol file and the params file (the highest epoch) of an MXNet model path."""
    name = path.name
    if name.endswith("-symbol.json"):
        prefix = path.parent / name[: -len("-symbol.json")]
        symbol = path
    elif name.endswith(".params"):
        prefix = path.parent / re.sub(r"-\d+\.params$", "", name)
        symbol = Path(str(prefix) + "-symbol.json")
    elif name.endswith(".json"):
        prefix, symbol = path.with_suffix(""), path
    else:
        raise InputFileError(f"{path}: unknown extension for an MXNet model; expected NAME-symbol.json "
                             "(with NAME-0000.params beside it)")
    if not symbol.exists():
        raise InputFileError(f"{symbol}: no such model file")
    params = sorted(prefix.parent.glob(prefix.name + "-*.params"))
    if not params:
        raise InputFileError(f"{symbol}: no {prefix.name}-NNNN.params file beside it")
    return symbol, params[-1]


def input_hint_path(symbol_path: str | Path) -> Path:
    symbol_path = str(symbol_path)
    prefix = symbol_path[: -len("-symbol.json")] if symbol_path.endswith("-symbol.json") else symbol_path
    return Path(prefix + "-input.json")


def write_input_hint(symbol_path: str | Path, name: str | None, shape: Sequence[int | None], layout: str) -> None:
    """Record the input shape and layout of a model beside its symbol file."""
    input_hint_path(symbol_path).write_text(json.dumps({"name": name, "shape": list(shape), "layout": layout}))


def _read_input_hint(symbol_path: Path) -> dict:
    path = input_hint_path(symbol_path)
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _input_layout(symbol: Any, data: str) -> str:
    """NHWC when the first op on the input transposes it to NCHW, else NCHW."""
    nodes = json.loads(symbol.tojson())["nodes"]
    data_index = next(i for i, n in enumerate(nodes) if n["name"] == data)
    for node in nodes:
        if any(i[0] == data_index for i in node.get("inputs", [])):
            axes = _parse(node.get("attrs", {}).get("axes", "()"))
            if node["op"] == "transpose" and tuple(axes) == (0, 3, 1, 2):
                return "NHWC"
            break
    return "NCHW"


def _guess_input_shape(model: MXNetModel) -> tuple | None:
    """(None, channels, None, None) from the first convolution's weight, when there is one."""
    nodes = json.loads(model.symbol.tojson())["nodes"]
    for node in nodes:
        if node["op"] == "Convolution":
            weight = nodes[node["inputs"][1][0]]["name"]
            if weight in model.arg_params:
                channels = model.arg_params[weight].shape[1] * int(_parse(node["attrs"].get("num_group", "1")))
                rank = 2 + len(model.arg_params[weight].shape[2:])
                shape = [None] * rank
                shape[-1 if model.input_layout == "NHWC" else 1] = channels
                return tuple(shape)
            return None
    return None


def _kinds(op: str, attrs: dict) -> list[str]:
    if op == "Activation":
        return [_ACT.get(attrs.get("act_type"), "act")]
    if op == "Pooling":
        if attrs.get("global_pool") in (True, "True", 1):
            return ["gpool"]
        return ["maxpool" if attrs.get("pool_type", "max") == "max" else "avgpool"]
    if op == "Convolution" and int(attrs.get("num_group", 1)) > 1:
        return ["dwconv"]
    if op == "clip" and float(attrs.get("a_min", -1)) == 0.0 and float(attrs.get("a_max", 0)) == 6.0:
        return ["relu6"]
    return list(_KINDS.get(op, ["other"]))


def _small(attrs: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()
            if isinstance(v, (int, float, str, bool, tuple, list))}


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
