"""ONNX adapter: an .onnx file or an in-memory onnx.ModelProto, run by onnxruntime.

Capture: every node output is added to the graph outputs of an in-memory copy, one
InferenceSession (basic graph optimizations) per (model, layer set), one run. Names are the ONNX tensor names. A tensor's layout is read from the op that
made it: Conv, pooling and BatchNormalization outputs are NCHW; the graph input keeps
the layout its shape suggests (NHWC when the last axis is small and the second is not,
as tf2onnx leaves Keras models).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import check_input, layout_for_rank, pick_layers

_KINDS = {
    "Conv": ["conv"], "ConvTranspose": ["conv"], "Gemm": ["dense"], "MatMul": ["dense"],
    "BatchNormalization": ["bn"], "Relu": ["relu"], "Sigmoid": ["sigmoid"], "Tanh": ["tanh"],
    "Softmax": ["softmax"], "LeakyRelu": ["act"], "Elu": ["act"], "PRelu": ["act"], "HardSigmoid": ["sigmoid"],
    "MaxPool": ["maxpool"], "AveragePool": ["avgpool"], "GlobalAveragePool": ["gpool"], "GlobalMaxPool": ["gpool"],
    "Flatten": ["flatten"], "Reshape": ["reshape"], "Add": ["add"], "Sum": ["add"], "Mul": ["mul"],
    "Concat": ["concat"], "Pad": ["pad"], "Transpose": ["identity"], "Identity": ["identity"],
    "Dropout": ["identity"], "Cast": ["identity"], "Squeeze": ["reshape"], "Unsqueeze": ["reshape"],
    "ReduceMean": ["gpool"],
}
_NCHW_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization", "GlobalAveragePool",
             "GlobalMaxPool"}
_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 9: "bool"}


@dataclass
class OnnxModel:
    proto: Any
    source: str
    sessions: dict = field(default_factory=dict)


class OnnxAdapter(Adapter):
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
            raise InputFileError(f"{path}: not a readable ONNX model ({str(exc).strip()[:200] or type(exc).__name__})") from None
        if not proto.graph.node:
            raise InputFileError(f"{path}: not a readable ONNX model (the graph has no nodes)")
        return OnnxModel(proto, str(path))

    # ---------------------------------------------------------------- graph
    def _inputs(self, model: OnnxModel) -> list:
        initializers = {i.name for i in model.proto.graph.initializer}
        return [i for i in model.proto.graph.input if i.name not in initializers]

    def layers(self, model: OnnxModel) -> list[LayerInfo]:
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model.proto)
            value_info = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        except Exception:  # shape inference is a nicety; run() reports real shapes
            value_info = {}
        producer: dict[str, str] = {}
        infos = []
        for node in model.proto.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            kinds = _kinds(node, attrs)
            small = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in attrs.items()
                     if isinstance(v, (int, float, list, tuple)) or (isinstance(v, bytes) and len(v) < 64)}
            small = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in small.items()}
            if "kernel_shape" in small:
                small["kernel"] = small["kernel_shape"]
            inputs = [producer[i] for i in node.input if i in producer]
            for out in node.output:
                if not out:
                    continue
                shape = _shape(value_info.get(out))
                layout = "NCHW" if node.op_type in _NCHW_OPS else (layout_for_rank(len(shape), True) if shape and len(shape) != 4 else "none")
                infos.append(LayerInfo(name=out, op=node.op_type, shape=shape, layout=layout, kinds=kinds,
                                       inputs=inputs, attrs=small))
                producer[out] = out
        return infos

    def input_info(self, model: OnnxModel) -> InputInfo:
        inputs = self._inputs(model)
        if len(inputs) != 1:
            raise InputShapeError(f"{model.source}: the model has {len(inputs)} inputs; xvalidate compares "
                                  "single-input models")
        shape = _shape(inputs[0]) or ()
        dtype = _TYPES.get(inputs[0].type.tensor_type.elem_type, "float32")
        return InputInfo(name=inputs[0].name, shape=(None, *shape[1:]), dtype=dtype, layout=_input_layout(shape))

    # ---------------------------------------------------------------- running
    def run(self, model: OnnxModel, x: np.ndarray, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        info = self.input_info(model)
        check_input(x, info.shape, model.source)
        names = [o for node in model.proto.graph.node for o in node.output if o]
        chosen = pick_layers(names, layers, model.source)
        key = tuple(chosen)
        session = model.sessions.get(key)
        if session is None:
            session = _session(model.proto, chosen)
            model.sessions = {key: session}
        try:
            outputs = session.run(chosen, {info.name: x.astype(info.dtype, copy=False)})
        except Exception as exc:  # onnxruntime's Fail/InvalidArgument
            raise InputShapeError(f"{model.source}: onnxruntime could not run on input {tuple(x.shape)} "
                                  f"({str(exc).strip().splitlines()[0][:200]})") from None
        return dict(zip(chosen, outputs))


def _session(proto: Any, outputs: list[str]):
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    del model.graph.output[:]
    # an output without type information is accepted by onnxruntime, which infers it
    model.graph.output.extend(onnx.helper.ValueInfoProto(name=name) for name in outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # basic optimizations only: every tensor is an output anyway, so the extended fusions find little
    # to fuse, and the session is built in less than half the time
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _shape(value_info: Any) -> tuple | None:
    if value_info is None or not value_info.type.HasField("tensor_type"):
        return None
    dims = value_info.type.tensor_type.shape.dim
    if not dims:
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _input_layout(shape: tuple) -> str:
    if len(shape) != 4:
        return layout_for_rank(len(shape), channels_first=True)
    c_last, c_first = shape[3], shape[1]
    if c_last is not None and c_last <= 4 and (c_first is None or c_first > 4):
        return "NHWC"
    return "NCHW"


def _kinds(node, attrs: dict) -> list[str]:
    if node.op_type == "Clip":
        return ["relu6"]
    if node.op_type == "Conv" and int(attrs.get("group", 1)) > 1:
        return ["dwconv"]
    return list(_KINDS.get(node.op_type, ["other"]))
