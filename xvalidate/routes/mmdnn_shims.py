"""Runtime shims that let MMdnn 0.3.1 convert TF2 Keras models to MXNet.

Applied inside the worker processes, to MMdnn's classes, never to files in
site-packages. `apply_keras_shims()` runs in the TensorFlow worker (parser side),
`apply_mxnet_shims()` in the MXNet worker (emitter side). Both are idempotent.
A handler that meets a layer it cannot convert exactly raises NotImplementedError,
which the route reports as an unsupported layer.

Parser side (Keras -> IR), what breaks -> what the shim does:
  parser_model    Keras2Parser only takes a file path and loads it itself (compile=True)
                  -> `keras_parser(model)` builds a parser around a loaded model.
  graph_inbound   Keras2Graph.build: `node.inbound_layers` is a single layer, not a list,
                  for a node with one input -> wrapped in a list.
  graph_type      Keras2Graph rejects `Functional` models (it accepts only the exact
                  classes Model and Sequential) -> any keras.Model is accepted.
  output_shape    `_set_output_shape` / `_copy_shape`: `output_shape` is `[(...)]` for
                  InputLayer -> unwrapped.
  bn_axis         BatchNormalization `axis` is a ListWrapper `[3]` (TypeError) -> `int(axis[0])`;
                  any axis but the channels axis is refused (the emitter always uses axis 1).
  swish           no 'swish' in the activation map (KeyError, then "'function' object has
                  no attribute 'name'") -> mapped to an IR "Swish" op.
  separable_bias  SeparableConv2D's bias is not written to the IR weights -> added.
  rescaling       no handler for Rescaling and Normalization (EfficientNet; MMdnn prints "not
                  supported" and writes a broken node) -> an IR BatchNorm holding the layer's
                  per-channel affine map (Normalization: also `invert=True`).
  more layers     TFOpLambda arithmetic, CustomScaleLayer, LayerNormalization, LayerScale, global
                  pooling with keepdims, ReLU variants: see xvalidate.routes.mmdnn_ops.
Emitter side (IR -> MXNet):
  separable       no emit_SeparableConv (Xception: "name 'block2_sepconv1' is not
                  defined") -> a depthwise convolution (num_group = input channels) and a
                  1x1 pointwise convolution carrying the layer's name, with the two kernels.
  swish           no emit_Swish -> x * sigmoid(x), the sigmoid named `<layer>_sigmoid`.
  reshape         emit_Reshape passes Keras's channels-last target shape to an NCHW graph
                  (EfficientNet's squeeze-excite reshape (1, 1, C) broke broadcasting) ->
                  the reshape is done in channels-last order between two transposes.
  softmax         a softmax at the graph's end becomes SoftmaxOutput named "softmax" (a label
                  input appears, the layer's name is lost) -> softmax over the channel axis,
                  named after the IR node.
  avg_pool        a padded average pooling is emitted with MXNet's default count_include_pad=True,
                  but Keras averages over the real values only (InceptionV3: relative error 0.5 at
                  the first one) -> count_include_pad=False, or, for asymmetric 'same' padding,
                  the padded window sum divided by the count of real values in it.
  merge           Add / Multiply become unnamed broadcast ops over the first two inputs only
                  (a third input is dropped) -> every input, the result named after the layer.
"""
from __future__ import annotations

import warnings

from xvalidate.routes.mmdnn_ops import (emitter_handlers, own_calls, own_node_ids, parser_handlers,
                                        patch_variable_names)

SHIMMED_VERSION = "0.3.1"
_applied: set[str] = set()
BN_EPSILON = 1e-5  # the epsilon of the BatchNorm that stands for Rescaling/Normalization (cuDNN's minimum)


def check_mmdnn_version() -> None:
    """Warn once when the installed MMdnn is not the version these shims were written for."""
    if "version" in _applied:
        return
    _applied.add("version")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("mmdnn")
    except PackageNotFoundError:
        return
    if found != SHIMMED_VERSION:
        warnings.warn(f"xvalidate's MMdnn shims were written for mmdnn {SHIMMED_VERSION}; found {found}: "
                      "conversions may fail or differ", RuntimeWarning, stacklevel=2)


def keras_parser(model):
    """A Keras2Parser (weights loaded) for an already loaded keras.Model; apply_keras_shims() first."""
    from keras import backend
    from mmdnn.conversion.common.DataStructure.parser import Parser
    from mmdnn.conversion.keras.keras2_graph import Keras2Graph
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    parser = Keras2Parser.__new__(Keras2Parser)
    Parser.__init__(parser)
    parser.weight_loaded = True
    parser.data_format = backend.image_data_format()
    parser.keras_graph = Keras2Graph(model)
    parser.keras_graph.build()
    parser.lambda_layer_count = 0
    return parser


def _unwrap(shape):
    """`[(None, 32, 32, 3)]` (a one-input layer's shape in TF2) -> `(None, 32, 32, 3)`."""
    return shape[0] if isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], tuple) else shape


def _per_channel(value, channels: int, what: str):
    """A scalar or a channels-long vector as a float32 vector of `channels` values."""
    import numpy as np

    arr = np.asarray(value, np.float32)
    if arr.size == 1:
        return np.full(channels, arr.reshape(-1)[0], np.float32)
    if arr.size == channels and arr.shape[-1] == channels:
        return arr.reshape(channels).copy()
    raise NotImplementedError(f"{what} of shape {arr.shape} is not per-channel ({channels} channels)")


def _channel_axis_only(layer, axis) -> None:
    """Refuse a normalization over anything but the last (channels) axis (no axis: one scalar statistic)."""
    rank = len(_unwrap(layer.input_shape))
    axes = [axis] if isinstance(axis, int) else list(axis or ())
    if axes and [a % rank for a in axes] != [rank - 1]:
        raise NotImplementedError(f"{type(layer).__name__} over axis {axis} (only the channels axis "
                                  f"{rank - 1} converts)")


def affine_as_batchnorm(parser, source_node, gamma, beta) -> None:
    """y = gamma * x + beta per channel, written as an IR BatchNorm (mean 0, variance 1 - eps)."""
    import numpy as np
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    IR_node = parser.IR_graph.node.add()
    Keras2Parser._copy_and_reop(source_node, IR_node, "BatchNorm")
    parser.convert_inedge(source_node, IR_node)
    shape = _unwrap(source_node.layer.output_shape)
    IR_node.attr["axis"].i = len(shape) - 1
    IR_node.attr["scale"].b = True
    IR_node.attr["bias"].b = True
    IR_node.attr["epsilon"].f = BN_EPSILON
    gamma, beta = np.asarray(gamma, np.float32), np.asarray(beta, np.float32)
    parser.set_weight(source_node.name, "scale", gamma)
    parser.set_weight(source_node.name, "bias", beta)
    parser.set_weight(source_node.name, "mean", np.zeros_like(gamma))
    parser.set_weight(source_node.name, "var", np.full_like(gamma, 1.0 - BN_EPSILON))


def apply_keras_shims() -> None:
    """Patch MMdnn's Keras parser for TF2 Keras (see the module docstring)."""
    if "keras" in _applied:
        return
    check_mmdnn_version()
    import keras
    from mmdnn.conversion.common.DataStructure.graph import Graph
    from mmdnn.conversion.common.IR import graph_pb2
    from mmdnn.conversion.keras.keras2_graph import Keras2Graph, Keras2GraphNode
    from mmdnn.conversion.keras.keras2_parser import Keras2Parser

    def graph_init(self, model):
        if not isinstance(model, keras.Model):
            raise TypeError(f"Keras layer of type {type(model)} is not supported.")
        Graph.__init__(self, model)
        self.model = model

    def graph_build(self):
        self.input_layers = list()
        own = own_node_ids(self.model)
        for layer in self.model.layers:
            self.layer_map[layer.name] = Keras2GraphNode(layer)
            self.layer_name_map[layer.name] = layer.name
            for node in own_calls(self.model, layer, own):  # not the calls inside an inlined nested model
                preds = node.inbound_layers
                for pred in preds if isinstance(preds, (list, tuple)) else [preds]:
                    if pred.name not in self.layer_map:
                        self.layer_map[pred.name] = Keras2GraphNode(pred)
                        self.layer_name_map[pred.name] = pred.name
                    self._make_connection(pred.name, layer.name)
        Graph.build(self)

    def set_output_shape(source_node, IR_node):
        shape = graph_pb2.TensorShape()
        for dim in _unwrap(source_node.layer.output_shape):
            shape.dim.add().size = dim if dim else -1
        IR_node.attr["_output_shapes"].list.shape.extend([shape])

    def copy_shape(source_node, target_node):
        if hasattr(source_node, "output_shape"):
            for dim in _unwrap(source_node.output_shape):
                target_node.attr["shape"].shape.dim.add().size = -1 if dim is None else dim
        else:
            target_node.attr["shape"].shape.unknown_rank = True

    original_bn = Keras2Parser.rename_BatchNormalization

    def rename_batchnorm(self, keras_node):
        layer = keras_node.keras_layer
        _channel_axis_only(layer, layer.axis)
        if not isinstance(layer.axis, int):
            layer.axis = int(list(layer.axis)[0])
        original_bn(self, keras_node)

    def rename_rescaling(self, source_node):
        layer = source_node.layer
        channels = _unwrap(layer.output_shape)[-1]
        affine_as_batchnorm(self, source_node, _per_channel(layer.scale, channels, "Rescaling scale"),
                            _per_channel(layer.offset, channels, "Rescaling offset"))

    def rename_normalization(self, source_node):
        import numpy as np

        layer = source_node.layer
        _channel_axis_only(layer, layer.axis)
        channels = _unwrap(layer.output_shape)[-1]
        mean = _per_channel(layer.mean, channels, "Normalization mean")
        std = np.maximum(np.sqrt(_per_channel(layer.variance, channels, "Normalization variance")),
                         np.float32(keras.backend.epsilon()))
        if getattr(layer, "invert", False):
            affine_as_batchnorm(self, source_node, std, mean)
        else:
            affine_as_batchnorm(self, source_node, 1.0 / std, -mean / std)

    original_separable = Keras2Parser.rename_SeparableConv2D

    def rename_separable(self, source_node):
        original_separable(self, source_node)
        if self.weight_loaded and source_node.layer.use_bias:
            self.set_weight(source_node.name, "bias", source_node.layer.get_weights()[2])

    Keras2Graph.__init__ = graph_init
    Keras2Graph.build = graph_build
    Keras2Parser._set_output_shape = staticmethod(set_output_shape)
    Keras2Parser._copy_shape = staticmethod(copy_shape)
    Keras2Parser.rename_BatchNormalization = rename_batchnorm
    Keras2Parser.rename_SeparableConv2D = rename_separable
    Keras2Parser.rename_Rescaling = rename_rescaling
    Keras2Parser.rename_Normalization = rename_normalization
    Keras2Parser.activation_map = {**Keras2Parser.activation_map, "swish": "Swish", "silu": "Swish", "gelu": "Gelu",
                                 "linear": "Identity"}
    for name, handler in parser_handlers().items():  # TFOpLambda, LayerNormalization, ...: see mmdnn_ops
        setattr(Keras2Parser, name, handler)
    _applied.add("keras")


def apply_mxnet_shims() -> None:
    """Patch MMdnn's MXNet emitter (see the module docstring)."""
    if "mxnet" in _applied:
        return
    check_mmdnn_version()
    from mmdnn.conversion.mxnet.mxnet_emitter import MXNetEmitter

    def emit_separable(self, IR_node):
        attr = IR_node.IR_layer.attr
        kernel = tuple(attr["kernel_shape"].list.i[:2])
        in_channels, out_channels = attr["kernel_shape"].list.i[2], attr["kernel_shape"].list.i[3]
        stride = tuple(attr["strides"].list.i[1:-1])
        dilate = tuple(attr["dilations"].list.i[1:-1]) or (1, 1)
        use_bias = IR_node.get_attr("use_bias", False)
        depthwise_name = IR_node.name + "_depthwise"
        multiplier = 1
        if self.weight_loaded:
            weights = self.weights[IR_node.name]
            depthwise = weights["depthwise_filter"]  # (kh, kw, in, multiplier): output channel c * multiplier + m
            multiplier = depthwise.shape[-1]
            self.output_weights[depthwise_name + "_weight"] = (
                depthwise.transpose(2, 3, 0, 1).reshape(in_channels * multiplier, 1, *kernel))
            self.output_weights[IR_node.name + "_weight"] = weights["pointwise_filter"].transpose(3, 2, 0, 1)
            if use_bias:
                self.output_weights[IR_node.name + "_bias"] = weights["bias"]
        defuse_pad, pad = MXNetEmitter.transfer_pad(attr["pads"].list.i)
        parent = self.parent_variable_name(IR_node)
        code = ""
        if defuse_pad:
            code = self.set_pad(IR_node, code, pad, False) + "\n    "
            parent, pad = IR_node.variable_name + "_pad", [0, 0]
        code += (f"{IR_node.variable_name + '_dw':<15} = mx.sym.Convolution(data={parent}, kernel={kernel}, "
                 f"stride={stride}, dilate={dilate}, pad={tuple(pad)}, num_filter={in_channels * multiplier}, "
                 f"num_group={in_channels}, no_bias=True, layout='NCHW', name='{depthwise_name}')\n    ")
        code += (f"{IR_node.variable_name:<15} = mx.sym.Convolution(data={IR_node.variable_name + '_dw'}, "
                 f"kernel=(1, 1), num_filter={out_channels}, no_bias={not use_bias}, layout='NCHW', "
                 f"name='{IR_node.name}')")
        return code

    def emit_swish(self, IR_node):
        parent, var = self.parent_variable_name(IR_node), IR_node.variable_name
        return [f"{var + '_sigmoid':<15} = mx.sym.sigmoid({parent}, name='{IR_node.name}_sigmoid')",
                f"{var:<15} = mx.sym.elemwise_mul({parent}, {var + '_sigmoid'}, name='{IR_node.name}')"]

    original_reshape = MXNetEmitter.emit_Reshape

    def emit_reshape(self, IR_node):
        shape = list(IR_node.IR_layer.attr["shape"].list.i)
        parent_node = self.IR_graph.get_parent(IR_node.name, [0])
        in_rank = len(parent_node.layer.attr["_output_shapes"].list.shape[0].dim)
        if len(shape) < 3 and in_rank < 3:
            return original_reshape(self, IR_node)
        var, data, code = IR_node.variable_name, self.parent_variable_name(IR_node), ""
        if in_rank >= 3:  # NCHW -> NHWC first, so that the elements are in Keras's order
            axes = (0, *range(2, in_rank), 1)
            code += f"{var + '_nhwc':<15} = mx.sym.transpose({data}, axes={axes})\n    "
            data = var + "_nhwc"
        if len(shape) < 3:
            return code + f"{var:<15} = mx.sym.reshape(data={data}, shape={tuple(shape)}, name='{IR_node.name}')"
        code += f"{var + '_cl':<15} = mx.sym.reshape(data={data}, shape={tuple(shape)})\n    "
        back = (0, len(shape) - 1, *range(1, len(shape) - 1))
        return code + f"{var:<15} = mx.sym.transpose({var + '_cl'}, axes={back}, name='{IR_node.name}')"

    def emit_softmax(self, IR_node):  # Keras's softmax axis -1 is the channels axis, 1 in MXNet's layout
        return (f"{IR_node.variable_name:<15} = mx.sym.softmax(data={self.parent_variable_name(IR_node)}, "
                f"axis=1, name='{IR_node.name}')")

    original_pool = MXNetEmitter.emit_Pool

    def emit_pool(self, IR_node):
        pads = IR_node.get_attr("pads") or []
        if IR_node.get_attr("pooling_type") != "AVG" or IR_node.get_attr("global_pooling") or not any(pads):
            return original_pool(self, IR_node)
        kernel = tuple(IR_node.get_attr("kernel_shape")[1:-1])
        stride = tuple(IR_node.get_attr("strides")[1:-1])
        asymmetric, pad = MXNetEmitter.transfer_pad(pads)
        parent, var, name = self.parent_variable_name(IR_node), IR_node.variable_name, IR_node.name
        if not asymmetric:
            return (f"{var:<15} = mx.sym.Pooling(data={parent}, kernel={kernel}, pool_type='avg', stride={stride}, "
                    f"pad={tuple(pad)}, count_include_pad=False, name='{name}')")
        pad_width = tuple(pad)
        return [f"{var + '_pad':<15} = mx.sym.pad({parent}, mode='constant', pad_width={pad_width}, name='{name}_pad')",
                f"{var + '_sum':<15} = mx.sym.Pooling({var + '_pad'}, kernel={kernel}, pool_type='sum', "
                f"stride={stride}, name='{name}_sum')",
                f"{var + '_real':<15} = mx.sym.pad(mx.sym.ones_like({parent}), mode='constant', "
                f"pad_width={pad_width}, name='{name}_real')",
                f"{var + '_count':<15} = mx.sym.Pooling({var + '_real'}, kernel={kernel}, pool_type='sum', "
                f"stride={stride}, name='{name}_count')",
                f"{var:<15} = mx.sym.broadcast_div({var + '_sum'}, {var + '_count'}, name='{name}')"]

    def merge(op):
        def emit(self, IR_node):
            inputs = [self.parent_variable_name(IR_node, [i]) for i in range(len(IR_node.in_edges))]
            var, lines, acc = IR_node.variable_name, [], inputs[0]
            for i, other in enumerate(inputs[1:], start=1):
                last = i == len(inputs) - 1
                name, target = (IR_node.name, var) if last else (f"{IR_node.name}_{i}", f"{var}_{i}")
                lines.append(f"{target:<15} = mx.sym.{op}({acc}, {other}, name='{name}')")
                acc = target
            return lines
        return emit

    MXNetEmitter.emit_Reshape = emit_reshape
    MXNetEmitter.emit_SeparableConv = emit_separable
    MXNetEmitter.emit_Swish = emit_swish
    MXNetEmitter.emit_Softmax = emit_softmax
    MXNetEmitter.emit_Pool = emit_pool
    MXNetEmitter.emit_Add = merge("broadcast_add")
    MXNetEmitter.emit_Mul = merge("broadcast_mul")
    for name, handler in emitter_handlers().items():  # ScalarOp, Crop, HardSigmoid, ...: see mmdnn_ops
        setattr(MXNetEmitter, name, handler)
    patch_variable_names()
    _applied.add("mxnet")
