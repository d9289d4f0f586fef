"""Keras layers that MMdnn 0.3.1 cannot convert, added to its parser and MXNet emitter at run time.

`parser_handlers()` returns the Keras2Parser methods (installed by apply_keras_shims in the
TensorFlow worker), `emitter_handlers()` the MXNetEmitter methods (apply_mxnet_shims, MXNet worker).

Parser side (Keras layer -> IR node):
  TFOpLambda        `x + 3.0`, `x * y`, tf.math/tf.nn calls in functional models (MobileNetV3's
                    hard-sigmoid, RegNet's and ConvNeXt's residual adds): tensor-tensor add, multiply,
                    subtract, divide -> IR Add/Mul/Sub/Div; with a number -> IR ScalarOp; relu, relu6,
                    sigmoid, tanh, swish -> their IR activations. Anything else is refused, naming the op.
  CustomScaleLayer  InceptionResNetV2's `x[0] + x[1] * scale` -> IR ScaleAdd.
  LayerNormalization over the channels axis -> IR LayerNorm (gamma, beta).
  LayerScale        ConvNeXt's per-channel `x * gamma` -> IR BatchNorm holding the scale.
  GlobalPooling     `keepdims=True` (MobileNetV3): MMdnn flattens every global pooling -> kept 4-D.
  Conv2D groups     dropped by MMdnn (RegNet's grouped 3x3 convolutions) -> IR attribute `group`.
  ReLU              MMdnn fails on a plain ReLU() (max_value None goes into the IR) and drops
                    negative_slope, threshold and any max_value but 6 -> plain ReLU written as IR Relu,
                    the others refused.
Emitter side (IR node -> MXNet code): variable names in the generated code made valid Python
  identifiers (MMdnn only replaces "/", "-", "[" and "]": RegNet's `1_head_gap` and
  `tf.__operators__.add_12` broke the code; the symbols keep the layer names); ScalarOp, Sub, Div (named), ScaleAdd, Crop (Cropping2D:
  MMdnn's parser writes it, its emitter has none), HardSigmoid (Keras: clip(0.2 x + 0.5, 0, 1)),
  LayerNorm, Gelu, Identity (Activation "linear"); FullyConnected on a 4-D tensor (a Dense on
  channels-last feature maps, ConvNeXt's pointwise layers: MXNet's FullyConnected would flatten
  it) -> a 1x1 convolution; DepthwiseConv with a depth multiplier (MMdnn leaves the kernel as
  (in, multiplier, kh, kw), MXNet needs (in * multiplier, 1, kh, kw)).
"""
from __future__ import annotations

import numbers

# TFOpLambda symbols: two-operand arithmetic -> (IR op for two tensors, ScalarOp name)
ARITHMETIC = {
    "__operators__.add": ("Add", "add"), "math.add": ("Add", "add"),
    "math.multiply": ("Mul", "mul"), "__operators__.mul": ("Mul", "mul"),
    "math.subtract": ("Sub", "sub"), "__operators__.sub": ("Sub", "sub"),
    "math.truediv": ("Div", "div"), "math.divide": ("Div", "div"), "__operators__.truediv": ("Div", "div"),
}
UNARY = {"nn.relu": "Relu", "nn.relu6": "Relu6", "math.sigmoid": "Sigmoid", "nn.sigmoid": "Sigmoid",
         "math.tanh": "Tanh", "nn.tanh": "Tanh", "nn.silu": "Swish", "nn.swish": "Swish"}
# ScalarOp -> (MXNet scalar op, with the number on the left)
SCALAR_OPS = {("add", False): "_plus_scalar", ("add", True): "_plus_scalar",
              ("mul", False): "_mul_scalar", ("mul", True): "_mul_scalar",
              ("sub", False): "_minus_scalar", ("sub", True): "_rminus_scalar",
              ("div", False): "_div_scalar", ("div", True): "_rdiv_scalar"}


def _is_tensor(value) -> bool:
    """A graph tensor (an output of another layer), not a constant."""
    return type(value).__name__ == "KerasTensor"


def _number(value) -> float | None:
    """A Python number or a one-element constant tensor (`1.0 - x` holds an EagerTensor) as a float."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if hasattr(value, "numpy") and not _is_tensor(value):
        array = value.numpy()
        if array.size == 1 and array.dtype.kind in "fiu":
            return float(array.reshape(-1)[0])
    return None


def own_node_ids(model) -> set[int]:
    """The ids of the calls (Keras nodes) made in `model` itself."""
    return {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}


def own_calls(model, layer, own: set[int] | None = None) -> list:
    """The calls of `layer` made in `model` itself (`own`: own_node_ids(model), when already known); a
    layer of an inlined nested model also keeps the call made inside that model."""
    own = own_node_ids(model) if own is None else own
    return [node for node in layer._inbound_nodes if id(node) in own]


def _operands(model, layer) -> list:
    """The two operands of a TFOpLambda call (tensors or numbers), in order."""
    calls = own_calls(model, layer)
    if len(calls) != 1:
        raise NotImplementedError(f"tf.{layer.symbol} called {len(calls)} times (one call converts)")
    node = calls[0]
    args = list(node.call_args) + [v for k, v in node.call_kwargs.items() if k in ("x", "y") and v is not None]
    return args


# ---------------------------------------------------------------- parser
def parser_handlers() -> dict:
    """{method name: function} to set on Keras2Parser (call inside the TensorFlow worker)."""
    from mmdnn.conversion.common.utils import assign_IRnode_values
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    def node_for(self, source_node, op):
        IR_node = self.IR_graph.node.add()
        Keras2Parser._copy_and_reop(source_node, IR_node, op)
        self.convert_inedge(source_node, IR_node)
        return IR_node

    def rename_tfoplambda(self, source_node):
        layer = source_node.layer
        symbol = layer.symbol
        if symbol in UNARY:
            node_for(self, source_node, UNARY[symbol])
            return
        if symbol not in ARITHMETIC:
            raise NotImplementedError(f"tf.{symbol} has no MMdnn IR op (converted: "
                                      f"{', '.join('tf.' + s for s in (*ARITHMETIC, *UNARY))})")
        tensor_op, scalar_op = ARITHMETIC[symbol]
        operands = _operands(self.keras_graph.model, layer)[:2]
        tensors = [_is_tensor(v) for v in operands]
        if all(tensors):
            node_for(self, source_node, tensor_op)
            return
        values = [_number(v) for v in operands]
        numbers_at = [i for i, v in enumerate(values) if v is not None]
        if len(operands) != 2 or sum(tensors) != 1 or len(numbers_at) != 1:
            kinds = ", ".join(type(v).__name__ for v in operands)
            raise NotImplementedError(f"tf.{symbol} on ({kinds}) (two tensors, or a tensor and a number, convert)")
        IR_node = node_for(self, source_node, "ScalarOp")
        assign_IRnode_values(IR_node, {"op": scalar_op, "scalar": values[numbers_at[0]],
                                       "reverse": numbers_at[0] == 0})

    def rename_custom_scale(self, source_node):
        IR_node = node_for(self, source_node, "ScaleAdd")
        assign_IRnode_values(IR_node, {"scale": float(source_node.layer.scale)})

    def rename_layer_norm(self, source_node):
        from xvalidate.routes.mmdnn_shims import _channel_axis_only

        layer = source_node.layer
        _channel_axis_only(layer, layer.axis)
        IR_node = node_for(self, source_node, "LayerNorm")
        assign_IRnode_values(IR_node, {"epsilon": float(layer.epsilon), "scale": bool(layer.scale),
                                       "center": bool(layer.center)})
        if self.weight_loaded:
            import numpy as np

            channels = layer.input_shape[-1]
            weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}
            self.set_weight(source_node.name, "gamma", weights.get("gamma", np.ones(channels, np.float32)))
            self.set_weight(source_node.name, "beta", weights.get("beta", np.zeros(channels, np.float32)))

    def rename_layer_scale(self, source_node):
        from xvalidate.routes.mmdnn_shims import affine_as_batchnorm

        gamma = source_node.layer.get_weights()[0].reshape(-1)
        affine_as_batchnorm(self, source_node, gamma, gamma * 0)

    def global_pool(pooling_type, original):
        def rename(self, source_node):
            if not getattr(source_node.layer, "keepdims", False):
                return original(self, source_node)
            IR_node = node_for(self, source_node, "Pool")
            assign_IRnode_values(IR_node, {"pooling_type": pooling_type, "global_pooling": True,
                                           "strides": [1, 1, 1, 1]})
        return rename

    original_relu = Keras2Parser.rename_ReLU

    def rename_relu(self, source_node):
        layer = source_node.layer
        max_value = None if layer.max_value is None else float(layer.max_value)
        if float(layer.negative_slope) != 0 or float(layer.threshold) != 0 or max_value not in (None, 6.0):
            raise NotImplementedError(f"ReLU(max_value={max_value}, negative_slope={float(layer.negative_slope)}, "
                                      f"threshold={float(layer.threshold)}): MMdnn converts only ReLU and ReLU6")
        if max_value is None:  # MMdnn writes max_value=None into the IR, which protobuf refuses
            node_for(self, source_node, "Relu")
            return
        original_relu(self, source_node)

    original_conv = Keras2Parser.rename_Conv2D

    def rename_conv(self, source_node):
        original_conv(self, source_node)
        groups = int(getattr(source_node.layer, "groups", 1))
        if groups > 1:
            IR_node = next(n for n in self.IR_graph.node if n.name == source_node.name)
            assign_IRnode_values(IR_node, {"group": groups})

    return {
        "rename_TFOpLambda": rename_tfoplambda,
        "rename_Conv2D": rename_conv,
        "rename_CustomScaleLayer": rename_custom_scale,
        "rename_LayerNormalization": rename_layer_norm,
        "rename_LayerScale": rename_layer_scale,
        "rename_GlobalAveragePooling2D": global_pool("AVG", Keras2Parser.rename_GlobalAveragePooling2D),
        "rename_GlobalMaxPooling2D": global_pool("MAX", Keras2Parser.rename_GlobalMaxPooling2D),
        "rename_ReLU": rename_relu,
    }


# ---------------------------------------------------------------- emitter
def identifier(name: str) -> str:
    """A Python identifier for a layer name: every other character becomes "_", a leading digit gets "v"."""
    import re

    text = re.sub(r"\W", "_", name)
    return "v" + text if not text or text[0].isdigit() else text


def patch_variable_names() -> None:
    """Make MMdnn's GraphNode.variable_name / real_variable_name valid identifiers."""
    from mmdnn.conversion.common.DataStructure.graph import GraphNode

    GraphNode.variable_name = property(lambda node: identifier(node.real_name))
    GraphNode.real_variable_name = property(lambda node: identifier(node.real_name))


def emitter_handlers() -> dict:
    """{method name: function} to set on MXNetEmitter (call inside the MXNet worker)."""
    from mmdnn.conversion.mxnet.mxnet_emitter import MXNetEmitter

    def emit_scalar_op(self, IR_node):
        op = SCALAR_OPS[(IR_node.get_attr("op"), bool(IR_node.get_attr("reverse", False)))]
        return (f"{IR_node.variable_name:<15} = mx.sym._internal.{op}({self.parent_variable_name(IR_node)}, "
                f"scalar={IR_node.get_attr('scalar')!r}, name='{IR_node.name}')")

    def binary(op):
        def emit(self, IR_node):
            if len(IR_node.in_edges) != 2:
                raise NotImplementedError(f"layer {IR_node.name!r}: {op} of {len(IR_node.in_edges)} inputs")
            a, b = self.parent_variable_name(IR_node), self.parent_variable_name(IR_node, [1])
            return f"{IR_node.variable_name:<15} = mx.sym.{op}({a}, {b}, name='{IR_node.name}')"
        return emit

    def emit_scale_add(self, IR_node):
        a, b, var = self.parent_variable_name(IR_node), self.parent_variable_name(IR_node, [1]), IR_node.variable_name
        return [f"{var + '_scaled':<15} = mx.sym._internal._mul_scalar({b}, scalar={IR_node.get_attr('scale')!r}, "
                f"name='{IR_node.name}_scaled')",
                f"{var:<15} = mx.sym.broadcast_add({a}, {var + '_scaled'}, name='{IR_node.name}')"]

    def emit_crop(self, IR_node):
        border = list(IR_node.get_attr("border"))
        parent = self.IR_graph.get_parent(IR_node.name, [0])
        dims = [d.size for d in parent.layer.attr["_output_shapes"].list.shape[0].dim]
        if len(border) != 4 or len(dims) != 4:
            raise NotImplementedError(f"layer {IR_node.name!r}: only Cropping2D converts")
        top, bottom, left, right = border
        height, width = dims[1], dims[2]
        return (f"{IR_node.variable_name:<15} = mx.sym.slice({self.parent_variable_name(IR_node)}, "
                f"begin=(None, None, {top}, {left}), end=(None, None, {height - bottom}, {width - right}), "
                f"name='{IR_node.name}')")

    def emit_hard_sigmoid(self, IR_node):  # Keras 2.12: clip(0.2 x + 0.5, 0, 1)
        return (f"{IR_node.variable_name:<15} = mx.sym.hard_sigmoid({self.parent_variable_name(IR_node)}, "
                f"alpha=0.2, beta=0.5, name='{IR_node.name}')")

    def emit_gelu(self, IR_node):  # Keras's gelu (approximate=False) is MXNet's erf gelu
        return (f"{IR_node.variable_name:<15} = mx.sym.LeakyReLU({self.parent_variable_name(IR_node)}, "
                f"act_type='gelu', name='{IR_node.name}')")

    def emit_layer_norm(self, IR_node):
        if self.weight_loaded:
            weights = self.weights[IR_node.name]
            self.output_weights[IR_node.name + "_gamma"] = weights["gamma"]
            self.output_weights[IR_node.name + "_beta"] = weights["beta"]
        return (f"{IR_node.variable_name:<15} = mx.sym.LayerNorm({self.parent_variable_name(IR_node)}, axis=1, "
                f"eps={IR_node.get_attr('epsilon')!r}, name='{IR_node.name}')")

    def emit_identity(self, IR_node):  # Activation("linear") (ConvNeXt's `identity` in place of drop path)
        return f"{IR_node.variable_name:<15} = mx.sym.identity({self.parent_variable_name(IR_node)}, name='{IR_node.name}')"

    original_dense = MXNetEmitter.emit_FullyConnected

    def emit_dense(self, IR_node):
        parent = self.IR_graph.get_parent(IR_node.name, [0])
        dims = [d.size for d in parent.layer.attr["_output_shapes"].list.shape[0].dim]
        if len(dims) != 4 or parent.type in ("Flatten", "Dropout"):
            return original_dense(self, IR_node)
        # a Dense on a 4-D channels-last tensor works on its last axis: a 1x1 convolution in MXNet's NCHW
        units = IR_node.IR_layer.attr["units"].i
        no_bias = not IR_node.IR_layer.attr["use_bias"].b
        if self.weight_loaded:
            weights = self.weights[IR_node.name]
            self.output_weights[IR_node.name + "_weight"] = weights["weights"].T.reshape(units, -1, 1, 1)
            if not no_bias:
                self.output_weights[IR_node.name + "_bias"] = weights["bias"]
        return (f"{IR_node.variable_name:<15} = mx.sym.Convolution({self.parent_variable_name(IR_node)}, "
                f"kernel=(1, 1), num_filter={units}, no_bias={no_bias}, name='{IR_node.name}')")

    original_depthwise = MXNetEmitter.emit_DepthwiseConv

    def emit_depthwise(self, IR_node):
        code = original_depthwise(self, IR_node)
        key = IR_node.name + "_weight"
        if self.weight_loaded and key in self.output_weights:  # (in, multiplier, kh, kw) -> (in * multiplier, 1, kh, kw)
            weight = self.output_weights[key]
            self.output_weights[key] = weight.reshape(-1, 1, *weight.shape[2:])
        return code

    return {
        "emit_ScalarOp": emit_scalar_op,
        "emit_Sub": binary("broadcast_sub"),
        "emit_Div": binary("broadcast_div"),
        "emit_ScaleAdd": emit_scale_add,
        "emit_Crop": emit_crop,
        "emit_HardSigmoid": emit_hard_sigmoid,
        "emit_Gelu": emit_gelu,
        "emit_LayerNorm": emit_layer_norm,
        "emit_DepthwiseConv": emit_depthwise,
        "emit_Identity": emit_identity,
        "emit_FullyConnected": emit_dense,
    }
