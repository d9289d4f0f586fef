"""Adapter "tflite": a `.tflite` file run by tf.lite.Interpreter with every tensor preserved, so that
one invoke() gives the output of every op. Layout NHWC. A layer is an op's output tensor, named as
the converter named it (`resnet50/conv1_relu/Relu;resnet50/conv1_bn/FusedBatchNormV3;...` when ops
were fused: the first part is the op computed last)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.errors import InputFileError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import input_arrays, layout_for_rank, pick_layers

KINDS = {
    "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "dense", "ADD": "add", "MUL": "mul",
    "RELU": "relu", "RELU6": "relu6", "LOGISTIC": "sigmoid", "TANH": "tanh", "SOFTMAX": "softmax",
    "MAX_POOL_2D": "maxpool", "AVERAGE_POOL_2D": "avgpool", "MEAN": "gpool", "RESHAPE": "reshape",
    "CONCATENATION": "concat", "PAD": "pad", "HARD_SWISH": "act", "DEQUANTIZE": "identity", "QUANTIZE": "identity",
}


@dataclass
class TFLiteModel:
    interpreter: Any
    path: str
    ops: list = field(default_factory=list)     # (op name, [input tensor indices], [output tensor indices])
    batch: int = 1


class TFLiteAdapter(Adapter):
    name = "tflite"
    layout = "NHWC"
    extensions = (".tflite",)
    packages = ("tensorflow-cpu",)

    def load(self, source: Any) -> TFLiteModel:
        import tensorflow as tf

        path = str(source)
        try:
            interpreter = tf.lite.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
            interpreter.allocate_tensors()
        except Exception as exc:
            raise InputFileError(f"{path}: not a TFLite model the interpreter can load ({str(exc).strip()[:160]})") from None
        ops = [(op["op_name"], list(op["inputs"]), list(op["outputs"])) for op in interpreter._get_ops_details()]
        return TFLiteModel(interpreter, path, ops)

    def inputs_info(self, model: TFLiteModel) -> list[InputInfo]:
        infos = []
        for detail in model.interpreter.get_input_details():
            shape = tuple(int(d) for d in detail["shape_signature"])
            infos.append(InputInfo(detail["name"], (None, *[d if d > 0 else None for d in shape[1:]]),
                                   np.dtype(detail["dtype"]).name, layout_for_rank(len(shape))))
        return infos

    def input_info(self, model: TFLiteModel) -> InputInfo:
        return self.inputs_info(model)[0]

    def layers(self, model: TFLiteModel) -> list[LayerInfo]:
        details = {d["index"]: d for d in model.interpreter.get_tensor_details()}
        producer: dict[int, str] = {}
        infos = []
        for op, inputs, outputs in model.ops:
            for index in outputs:
                detail = details[index]
                name = detail["name"]
                shape = tuple(int(d) for d in detail["shape"])
                infos.append(LayerInfo(name, op, (None, *shape[1:]), layout_for_rank(len(shape)),
                                       [KINDS.get(op, "other")], [producer[i] for i in inputs if i in producer]))
                producer[index] = name
        return infos

    def run(self, model: TFLiteModel, x: np.ndarray | Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        infos = self.inputs_info(model)
        arrays = input_arrays(x, infos, f"tflite model {model.path}")
        interpreter = model.interpreter
        batch = len(next(iter(arrays.values())))
        if batch != model.batch:
            for detail in interpreter.get_input_details():
                interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()
            model.batch = batch
        for detail, info in zip(interpreter.get_input_details(), infos):
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(arrays[info.name], dtype=detail["dtype"]))
        interpreter.invoke()
        index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
        names = pick_layers([info.name for info in self.layers(model)], layers, f"tflite model {model.path}")
        return {name: np.array(interpreter.get_tensor(index[name])) for name in names}
