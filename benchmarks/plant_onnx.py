"""Planting known faults into a correct ONNX model, with the `onnx` package.

Each planter edits a ModelProto in place at one node and returns a short description. The kinds
are the converter bugs people hit: weights perturbed, a kernel spatially transposed, output
channels swapped, BatchNorm statistics or epsilon, an activation dropped or added, padding moved,
average pooling counting its padding, an axis order swapped, a zero input, a NaN appearing.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

ACTIVATION_OPS = ("Relu", "Clip", "Sigmoid", "HardSigmoid", "Softmax", "Tanh", "HardSwish")


# ---------------------------------------------------------------- graph helpers
def node_by_name(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.output), None)


def consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def conv_behind(model: onnx.ModelProto, tensor: str, steps: int = 3) -> onnx.NodeProto | None:
    """The Conv that makes `tensor`, looking through up to `steps` activation/elementwise nodes."""
    node = producer(model, tensor)
    for _ in range(steps):
        if node is None or node.op_type == "Conv":
            return node
        data = [i for i in node.input if i and not _is_initializer(model, i)]
        node = producer(model, data[0]) if data else None
    return node if node is not None and node.op_type == "Conv" else None


def _is_initializer(model: onnx.ModelProto, name: str) -> bool:
    return any(i.name == name for i in model.graph.initializer)


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name == name)


def _set(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Replace initializer `name` by `array` (a private copy when other nodes share it)."""
    init = _initializer(model, name)
    init.CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(init).dtype), name))


def _private(model: onnx.ModelProto, node: onnx.NodeProto, index: int) -> str:
    """Give `node` its own copy of its input initializer `index`; return the copy's name."""
    name = node.input[index]
    users = [n for n in model.graph.node if name in n.input]
    if len(users) > 1:
        copy = numpy_helper.from_array(numpy_helper.to_array(_initializer(model, name)), f"{name}__planted")
        model.graph.initializer.append(copy)
        node.input[index] = copy.name
    return node.input[index]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _bypass(model: onnx.ModelProto, node: onnx.NodeProto, keep_input: int = 0) -> None:
    """Remove `node`: its consumers (and the graph outputs) read its input `keep_input` instead."""
    source, out = node.input[keep_input], node.output[0]
    for other in model.graph.node:
        for i, name in enumerate(other.input):
            if name == out:
                other.input[i] = source
    for output in model.graph.output:
        if output.name == out:  # keep the graph output's name: an Identity carries it
            model.graph.node.append(helper.make_node("Identity", [source], [out], name=out + "__planted"))
    model.graph.node.remove(node)


def _insert_after(model: onnx.ModelProto, tensor: str, op: str, extra_inputs=(), **attrs) -> None:
    """A new node `op(tensor, *extra_inputs)` whose output every consumer of `tensor` reads instead."""
    new_out = tensor + f"__{op.lower()}_planted"
    users = consumers(model, tensor)
    for other in users:
        for i, name in enumerate(other.input):
            if name == tensor:
                other.input[i] = new_out
    at = list(model.graph.node).index(producer(model, tensor)) + 1 if producer(model, tensor) else 0
    model.graph.node.insert(at, helper.make_node(op, [tensor, *extra_inputs], [new_out], name=new_out, **attrs))
    for output in model.graph.output:
        if output.name == tensor:
            raise ValueError(f"{tensor} is a graph output: plant elsewhere")


# ---------------------------------------------------------------- planters
def weights_noise(model, conv: onnx.NodeProto, rng: np.random.Generator, level: float = 0.3) -> str:
    name = _private(model, conv, 1)
    w = numpy_helper.to_array(_initializer(model, name))
    _set(model, name, w + rng.normal(0.0, level * float(w.std()) + 1e-8, w.shape))
    return f"Gaussian noise ({level:.0%} of the kernel's std) on {conv.name}'s kernel"


def kernel_transposed(model, conv: onnx.NodeProto, rng=None) -> str:
    name = _private(model, conv, 1)
    w = numpy_helper.to_array(_initializer(model, name))
    if w.shape[2] != w.shape[3] or w.shape[2] < 2:
        raise ValueError(f"{conv.name}: kernel {w.shape[2:]} is not square")
    _set(model, name, np.ascontiguousarray(w.transpose(0, 1, 3, 2)))
    return f"{conv.name}'s kernel transposed HW->WH"


def channels_swapped(model, conv: onnx.NodeProto, rng=None) -> str:
    w_name = _private(model, conv, 1)
    w = numpy_helper.to_array(_initializer(model, w_name)).copy()
    w[[0, 1]] = w[[1, 0]]
    _set(model, w_name, w)
    if len(conv.input) > 2 and conv.input[2]:
        b_name = _private(model, conv, 2)
        b = numpy_helper.to_array(_initializer(model, b_name)).copy()
        b[[0, 1]] = b[[1, 0]]
        _set(model, b_name, b)
    return f"output channels 0 and 1 of {conv.name} swapped (kernel and bias)"


def folded_bn_scaled(model, conv: onnx.NodeProto, rng: np.random.Generator) -> str:
    """A BatchNorm folded into a Conv with other statistics: every output channel scaled."""
    scale = rng.uniform(0.6, 1.4, numpy_helper.to_array(_initializer(model, conv.input[1])).shape[0])
    w_name = _private(model, conv, 1)
    w = numpy_helper.to_array(_initializer(model, w_name))
    _set(model, w_name, w * scale[:, None, None, None])
    if len(conv.input) > 2 and conv.input[2]:
        b_name = _private(model, conv, 2)
        _set(model, b_name, numpy_helper.to_array(_initializer(model, b_name)) * scale)
    return f"the BatchNorm folded into {conv.name} with its variance changed (per-channel scale 0.6..1.4)"


def bn_variance(model, bn: onnx.NodeProto, rng: np.random.Generator) -> str:
    name = _private(model, bn, 4)
    var = numpy_helper.to_array(_initializer(model, name))
    _set(model, name, var * rng.uniform(1.5, 3.0, var.shape))
    return f"{bn.name}'s moving variance scaled by 1.5..3"


def bn_epsilon(model, bn: onnx.NodeProto, rng=None) -> str:
    _set_attr(bn, "epsilon", 0.5)
    return f"{bn.name}'s epsilon set to 0.5"


def activation_dropped(model, act: onnx.NodeProto, rng=None) -> str:
    _bypass(model, act)
    return f"{act.op_type} node {act.name} removed (its consumers read its input)"


def swish_dropped(model, mul: onnx.NodeProto, rng=None) -> str:
    """x * sigmoid(x) -> x: the Mul bypassed to its non-sigmoid input."""
    keep = next(i for i, name in enumerate(mul.input) if (producer(model, name) or mul).op_type != "Sigmoid")
    _bypass(model, mul, keep)
    return f"swish {mul.name} removed (x * sigmoid(x) -> x)"


def relu_added(model, tensor: str, rng=None) -> str:
    _insert_after(model, tensor, "Relu")
    return f"a Relu inserted after {tensor}"


def _pads_moved(node: onnx.NodeProto, strides: list[int], pads: list[int], moved: list[int], expected: str) -> str:
    """Set `node`'s pads from `pads` to `moved` (the same amounts on other sides); refuse another node."""
    found = list(_attr(node, "pads", [0, 0, 0, 0]))
    if found != pads or list(_attr(node, "strides", [1, 1])) != strides:
        raise ValueError(f"{node.name}: pads {found}, not {expected}")
    _set_attr(node, "pads", moved)
    return f"{node.name}'s pads {_spelled(pads)} -> {_spelled(moved)}"


def _spelled(pads: list[int]) -> str:
    return "[" + ",".join(str(p) for p in pads) + "]"


def padding_moved(model, conv: onnx.NodeProto, rng=None) -> str:
    what = _pads_moved(conv, [1, 1], [1, 1, 1, 1], [0, 0, 2, 2], "a symmetric 1-pixel padding at stride 1")
    return f"{what} (same size, content shifted)"


def strided_padding_moved(model, node: onnx.NodeProto, rng=None) -> str:
    """A stride-2 window's odd extra padding moved from the bottom/right (TensorFlow) to the top/left."""
    what = _pads_moved(node, [2, 2], [0, 0, 1, 1], [1, 1, 0, 0], "TensorFlow's 'same' of a stride 2 on even sizes")
    return f"{what} (stride 2: the extra row/column at the top/left)"


def avgpool_counts_padding(model, pool: onnx.NodeProto, rng=None) -> str:
    before = int(_attr(pool, "count_include_pad", 0))
    _set_attr(pool, "count_include_pad", 1 - before)
    return f"{pool.name}'s count_include_pad {before} -> {1 - before}"


def axes_swapped(model, tensor: str, rng=None) -> str:
    """A Transpose swapping the two spatial axes of a square NCHW map."""
    _insert_after(model, tensor, "Transpose", perm=[0, 1, 3, 2])
    return f"a Transpose (0, 1, 3, 2) inserted after {tensor} (H and W swapped)"


def zero_input(model, conv: onnx.NodeProto, rng=None) -> str:
    zero = numpy_helper.from_array(np.zeros((), np.float32), f"{conv.name}__zero")
    model.graph.initializer.append(zero)
    data = conv.input[0]
    out = data + "__zeroed_planted"
    model.graph.node.insert(list(model.graph.node).index(conv),
                            helper.make_node("Mul", [data, zero.name], [out], name=out))
    conv.input[0] = out
    return f"{conv.name}'s input multiplied by 0"


def nan_bias(model, conv: onnx.NodeProto, rng=None) -> str:
    if len(conv.input) < 3 or not conv.input[2]:
        raise ValueError(f"{conv.name} has no bias")
    name = _private(model, conv, 2)
    b = numpy_helper.to_array(_initializer(model, name)).copy()
    b[0] = np.nan
    _set(model, name, b)
    return f"{conv.name}'s bias[0] set to NaN"
