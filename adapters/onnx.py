"""ONNX adapter: an .onnx file or an in-memory onnx.ModelProto, run by onnxruntime.

Capture: every node output is made a graph output of an in-memory copy (without type
information: onnxruntime infers it), one InferenceSession per (model, layer set), one run.
The session over every output is also where `layers` reads the shapes from (onnxruntime's
shape inference), so listing the layers and then capturing them builds one session.
Sessions use every graph optimization (ORT_ENABLE_ALL), the level a plain run uses by default:
onnxruntime keeps every graph output, so no captured tensor is lost to a fusion (a fusion that would
hide one is not made), and the captured values are those of the optimized kernels a user's own run
computes (they differ from the basic level's by float rounding, ~1e-6 relative on ResNet50). Building
the session costs ~0.07 s more than at the basic level (ResNet50); each run costs ~6% less.
The memory pattern (every intermediate tensor at a planned offset of one block) is off: with every
tensor a graph output, runs measured 1-4% faster without it (ResNet50, DenseNet121, MobileNetV2),
to the same values. `run` returns onnxruntime's own output buffers (no copy is made).

Names are the ONNX tensor names. Layouts: a graph input's is read from the ops that use it
(see `input_layout`: tf2onnx keeps Keras's channels-last and sequence layouts); Conv,
pooling and normalization outputs are channels-first (NCHW, NCW); a Transpose permutes its
input's layout; other ops that keep the rank keep their first input's layout; other 2-D
tensors are NC, and anything else is "none".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import input_arrays, layout_for_rank, pick_layers

_KINDS = {
    "Conv": ["conv"], "ConvTranspose": ["conv"], "Gemm": ["dense"], "MatMul": ["dense"],
    "BatchNormalization": ["bn"], "Relu": ["relu"], "Sigmoid": ["sigmoid"], "Tanh": ["tanh"],
    "Softmax": ["softmax"], "LeakyRelu": ["act"], "Elu": ["act"], "PRelu": ["act"], "Selu": ["act"],
    "HardSigmoid": ["sigmoid"], "HardSwish": ["swish"], "MaxPool": ["maxpool"], "AveragePool": ["avgpool"],
    "GlobalAveragePool": ["gpool"], "GlobalMaxPool": ["gpool"], "Flatten": ["flatten"], "Reshape": ["reshape"],
    "Squeeze": ["reshape"], "Unsqueeze": ["reshape"], "Add": ["add"], "Sum": ["add"], "Mul": ["mul"],
    "Concat": ["concat"], "Pad": ["pad"], "Transpose": ["identity"], "Identity": ["identity"],
    "Dropout": ["identity"], "Cast": ["identity"], "ReduceMean": ["gpool"],
}
_CHANNELS_FIRST = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "BatchNormalization",
                   "GlobalAveragePool", "GlobalMaxPool", "InstanceNormalization", "LRN"}
_CONV_LIKE = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool"}
_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "DepthToSpace", "SpaceToDepth"}
_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}
_ATTR_ALIASES = {"kernel_shape": "kernel", "pads": "padding", "group": "groups"}


@dataclass
class OnnxModel:
    """A loaded ONNX model: the proto, where it came from, and the sessions built for it."""

    proto: Any
    source: str
    sessions: dict = field(default_factory=dict)


class OnnxAdapter(Adapter):
    packages = ("onnx", "onnxruntime")
    name = "onnx"
    layout = "NCHW"
    extensions = (".onnx",)

    def owns(self, obj: Any) -> bool:
        return type(obj).__name__ == "ModelProto" and type(obj).__module__.startswith("onnx")

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        import onnx

        path = Path(directory) / "model.onnx"
        onnx.save(model, str(path))
        return str(path)

    def load(self, source: Any) -> OnnxModel:
        import onnx

        if self.owns(source):
            return OnnxModel(source, f"onnx model {source.graph.name!r}")
        path = Path(source)
        if not path.exists():
            raise InputFileError(f"{path}: no such model file")
        if path.suffix.lower() != ".onnx":
            raise InputFileError(f"{path}: unknown extension for an ONNX model; expected .onnx")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf DecodeError and friends
            raise InputFileError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None
        if not proto.graph.node:
            raise InputFileError(f"{path}: not a readable ONNX model (the graph has no nodes)")
        return OnnxModel(proto, str(path))

    # ---------------------------------------------------------------- graph
    def layers(self, model: OnnxModel) -> list[LayerInfo]:
        import onnx

        names = _output_names(model)
        shapes = {out.name: _shape(out.shape) for out in _session(model, names).get_outputs()}
        constants = {init.name: init for init in model.proto.graph.initializer}
        constants.update((node.output[0], node.attribute[0].t) for node in model.proto.graph.node
                         if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value")
        layouts = {}
        for info in self.inputs_info(model):
            shapes[info.name] = info.shape
            layouts[info.name] = info.layout
        producer: dict[str, str] = {}
        infos = []
        for node in model.proto.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            data = [i for i in node.input if i and i not in constants]
            inputs = [producer[i] for i in data if i in producer]
            for out in (o for o in node.output if o):
                shape = shapes.get(out)
                layout = _layout(node.op_type, attrs, shape, layouts.get(data[0]) if data else None)
                layouts[out] = layout
                infos.append(LayerInfo(name=out, op=node.op_type, shape=shape, layout=layout,
                                       kinds=_kinds(node, attrs, constants, shapes, shape), inputs=inputs,
                                       attrs=_small(node, attrs, constants)))
                producer[out] = out
        return infos

    def kernel(self, model: OnnxModel, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        nodes = {out: node for node in model.proto.graph.node for out in node.output}
        weights = {init.name: init for init in model.proto.graph.initializer}
        node = nodes.get(name)
        for _ in range(4):  # the Conv itself, or the one behind a BatchNorm / activation / bias Add
            if node is None:
                return None
            if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in weights:
                return numpy_helper.to_array(weights[node.input[1]])
            data = [i for i in node.input if i and i not in weights]
            if node.op_type not in _LOOKED_THROUGH or len(data) != 1:
                return None
            node = nodes.get(data[0])
        return None

    def input_info(self, model: OnnxModel) -> InputInfo:
        return self.inputs_info(model)[0]

    def inputs_info(self, model: OnnxModel) -> list[InputInfo]:
        initializers = {i.name for i in model.proto.graph.initializer}
        inputs = [i for i in model.proto.graph.input if i.name not in initializers]
        if not inputs:
            raise InputShapeError(f"{model.source}: the graph has no inputs")
        out = []
        for tensor in inputs:
            tensor_type = tensor.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
            shape = (None, *dims[1:]) if dims else ()
            layout, guessed = input_layout(model.proto.graph, tensor.name, shape)
            dtype = _TYPES.get(tensor_type.elem_type, "float32")
            out.append(InputInfo(name=tensor.name, shape=shape, dtype=dtype, layout=layout,
                                 value_range=_value_range(model.proto.graph, tensor.name, dtype),
                                 layout_guessed=guessed))
        return out

    # ---------------------------------------------------------------- running
    def run(self, model: OnnxModel, x: np.ndarray | dict, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        infos = self.inputs_info(model)
        arrays = input_arrays(x, infos, model.source)
        chosen = pick_layers(_output_names(model), layers, model.source)
        session = _session(model, chosen)
        feed = {info.name: arrays[info.name].astype(info.dtype, copy=False) for info in infos}
        try:
            outputs = session.run(chosen, feed)
        except Exception as exc:  # onnxruntime's Fail/InvalidArgument
            shapes = ", ".join(str(tuple(a.shape)) for a in feed.values())
            raise InputShapeError(f"{model.source}: onnxruntime could not run on input {shapes} "
                                  f"({_first_line(exc)})") from None
        return dict(zip(chosen, outputs))


    def recurrent_weights(self, model: OnnxModel, name: str) -> tuple | None:
        from onnx import helper, numpy_helper

        nodes = {out: node for node in model.proto.graph.node for out in node.output}
        weights = {init.name: init for init in model.proto.graph.initializer}
        node = nodes.get(name)
        for _ in range(5):  # the LSTM itself, or the one behind the Squeeze / Transpose tf2onnx puts after it
            if node is None:
                return None
            if node.op_type == "LSTM":
                direction = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "direction"),
                                 b"forward")
                names = list(node.input[1:4])
                if direction not in (b"forward", "forward") or any(n not in weights for n in names[:2]):
                    return None
                arrays = [numpy_helper.to_array(weights[n])[0] if n in weights else None for n in names + [""] * 3]
                return arrays[0], arrays[1], arrays[2]
            data = [i for i in node.input if i and i not in weights]
            node = nodes.get(data[0]) if data else None
        return None

    def supports_isolation(self, model: OnnxModel) -> bool:
        return True

    def run_isolated(self, model: OnnxModel, x: np.ndarray | dict, feeds: Mapping[str, np.ndarray],
                     layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        infos = self.inputs_info(model)
        arrays = input_arrays(x, infos, model.source)
        chosen = pick_layers(_output_names(model), layers, model.source)
        pick_layers(_output_names(model), list(feeds), model.source)  # every fed tensor exists
        session = _session(model, chosen, fed=tuple(feeds))
        feed = {info.name: arrays[info.name].astype(info.dtype, copy=False) for info in infos}
        feed.update((name + FED, np.ascontiguousarray(value, np.float32)) for name, value in feeds.items())
        try:
            outputs = session.run(chosen, feed)
        except Exception as exc:  # onnxruntime's Fail/InvalidArgument
            raise InputShapeError(f"{model.source}: onnxruntime could not run with the fed tensors "
                                  f"({_first_line(exc)})") from None
        return dict(zip(chosen, outputs))


FED = "::fed"  # suffix of the graph input that replaces a fed tensor for its consumers
_LOOKED_THROUGH = {"BatchNormalization", "Relu", "Clip", "Sigmoid", "LeakyRelu", "Add", "HardSwish", "Identity"}


def _output_names(model: OnnxModel) -> list[str]:
    return [o for node in model.proto.graph.node for o in node.output if o]


def _session(model: OnnxModel, outputs: list[str], fed: tuple[str, ...] = ()):
    """The session of `model` whose outputs are `outputs` (the last one built is kept). Each tensor in
    `fed` is read by its consumers from a new float graph input named `tensor + FED`."""
    key = (tuple(outputs), fed)
    if key in model.sessions:
        return model.sessions[key]
    import onnx
    import onnxruntime as ort

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.helper.ValueInfoProto(name=name) for name in outputs)
    if fed:
        wanted = set(fed)
        for node in proto.graph.node:
            for i, name in enumerate(node.input):
                if name in wanted:
                    node.input[i] = name + FED
        proto.graph.input.extend(onnx.helper.make_tensor_value_info(name + FED, onnx.TensorProto.FLOAT, None)
                                 for name in fed)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidGraph, NotImplemented (an op it lacks), Fail
        raise InputFileError(f"{model.source}: onnxruntime cannot load the model ({_first_line(exc)})") from None
    model.sessions = {key: session}
    return session


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _shape(dims: Any) -> tuple | None:
    """onnxruntime's shape (ints, names of symbolic dimensions, None) with the batch as None."""
    if not isinstance(dims, (list, tuple)):
        return None
    return tuple([None] + [d if isinstance(d, int) else None for d in dims[1:]]) if dims else ()


def input_layout(graph: Any, name: str, shape: tuple) -> tuple[str, bool]:
    """(layout, guessed) of graph input `name`, from the ops that read it: a convolution-like op
    (through Unsqueeze or Cast) means channels-first; a Transpose moving the last axis to the
    second that a convolution reads means channels-last (what tf2onnx writes for Keras models). A 3-D input
    read by neither is a (batch, time, features) sequence ("NWC"), as RNN and attention ops take
    it. A 4-D one is guessed from its shape (NHWC when the last axis is small and the second is
    not), and the guess is reported."""
    rank = len(shape)
    if rank not in (3, 4):
        return layout_for_rank(rank), False
    seen = _reaching_ops(graph, name)
    if any(op in _CONV_LIKE and perm is None for op, perm in seen):
        return layout_for_rank(rank, channels_first=True), False
    if any(op in _CONV_LIKE and perm and perm[1] == len(perm) - 1 for op, perm in seen):
        return layout_for_rank(rank), False
    if rank == 3:
        return "NWC", False
    c_last, c_first = shape[3], shape[1]
    if c_last is not None and c_last <= 4 and (c_first is None or c_first > 4):
        return "NHWC", True
    return "NCHW", True


def _reaching_ops(graph: Any, name: str) -> list[tuple[str, tuple | None]]:
    """(op type, the perm of a Transpose on the way or None) of the ops that read `name`, directly
    or through ops that only add axes or change type (Unsqueeze, Cast) and at most one Transpose."""
    import onnx

    out, frontier = [], {name: None}
    for _ in range(4):
        nxt = {}
        for node in graph.node:
            if not node.input or node.input[0] not in frontier:
                continue
            perm = frontier[node.input[0]]
            out.append((node.op_type, perm))
            if node.op_type == "Transpose" and perm is None:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                nxt.update((o, tuple(attrs.get("perm", ()))) for o in node.output if o)
            elif node.op_type in ("Unsqueeze", "Cast"):
                nxt.update((o, perm) for o in node.output if o)
        frontier = nxt
    return out


def _value_range(graph: Any, name: str, dtype: str) -> tuple[int, int] | None:
    """[0, rows) for an integer input used as the indices of a Gather over a constant table (an
    embedding), directly or through a Cast; [0, 2) for booleans; None otherwise."""
    if dtype == "bool":
        return (0, 2)
    if not dtype.startswith(("int", "uint")):
        return None
    tables = {i.name: tuple(i.dims) for i in graph.initializer}
    tables.update((n.output[0], tuple(n.attribute[0].t.dims)) for n in graph.node
                  if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value")
    names = {name}
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in names:
            names.add(node.output[0])
        elif node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in names:
            table = tables.get(node.input[0])
            if table:
                return (0, int(table[0]))
    return None


def _layout(op: str, attrs: dict, shape: tuple | None, input_layout: str | None) -> str:
    if shape is None:
        return "none"
    rank = len(shape)
    if op in _CHANNELS_FIRST:
        return layout_for_rank(rank, channels_first=True)
    if op == "Transpose" and input_layout and len(input_layout) == rank and attrs.get("perm"):
        permuted = "".join(input_layout[p] for p in attrs["perm"])
        return permuted if permuted in ("NCHW", "NHWC", "NCW", "NWC") else "none"
    if op not in _RESHAPES and input_layout and len(input_layout) == rank:
        return input_layout
    return "NC" if rank == 2 else "none"


def _scalar(tensor: Any) -> float | None:
    """The value of a one-element TensorProto, or None."""
    if tensor is None:
        return None
    from onnx import numpy_helper

    value = numpy_helper.to_array(tensor)
    return float(value.reshape(-1)[0]) if value.size == 1 else None


def _kinds(node: Any, attrs: dict, constants: dict, shapes: dict, shape: tuple | None) -> list[str]:
    op = node.op_type
    if op == "Clip":  # bounds are attributes before opset 11, inputs from it on
        low, high = attrs.get("min"), attrs.get("max")
        if len(node.input) > 1:
            low, high = (_scalar(constants.get(name)) if name else None for name in (list(node.input) + [""])[1:3])
        if low == 0.0 and high == 6.0:
            return ["relu6"]
        return ["relu"] if low == 0.0 and high is None else ["act"]
    if op == "Conv" and int(attrs.get("group", 1)) > 1:
        weight = constants.get(node.input[1])
        weight = None if weight is None else tuple(weight.dims)
        return ["dwconv"] if weight is not None and len(weight) > 1 and weight[1] == 1 else ["conv"]
    if op in ("Reshape", "Flatten") and shape is not None and len(shape) == 2:
        source = shapes.get(node.input[0])
        return ["flatten"] if source is not None and len(source) > 2 else ["reshape"]
    return list(_KINDS.get(op, ["other"]))


def _small(node: Any, attrs: dict, constants: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bytes) and len(value) < 64:
            out[key] = value.decode(errors="replace")
        elif isinstance(value, (int, float)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            out[key] = list(value)
    for onnx_name, name in _ATTR_ALIASES.items():
        if onnx_name in out:
            out[name] = out[onnx_name]
    weight = constants.get(node.input[1]) if len(node.input) > 1 else None
    weight = None if weight is None else tuple(weight.dims)
    if weight is not None and node.op_type in ("Conv", "ConvTranspose"):
        out["filters"] = weight[1] * int(attrs.get("group", 1)) if node.op_type == "ConvTranspose" else weight[0]
    elif weight is not None and len(weight) == 2 and node.op_type in ("Gemm", "MatMul"):
        out["units"] = weight[0] if attrs.get("transB") else weight[1]
    return out
