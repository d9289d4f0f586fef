"""Reshape targets computed at run time, folded to constants for MXNet's ONNX importer.

tf2onnx writes a Dense (or Tensordot) on a tensor of rank > 2 as MatMul between two Reshapes
whose target shape is computed from `Shape(x)` (ConvNeXt's pointwise convolutions). MXNet's
importer needs a constant shape. The shape operands are computed by running the model (ONNX
Runtime, inputs of ones) at batch 1 and batch 2; the one entry that follows the batch becomes
-1 ("the rest"), so the folded graph still runs at any batch size. A shape with two entries that
follow the batch, or a model with an unknown input dimension other than the batch, stays as it
was (the importer's refusal then names the node).
"""
from __future__ import annotations

from typing import Any

BATCHES = (1, 2)


def fold_reshape_shapes(model: Any) -> list[str]:
    """Replace, in place, the run-time shape operand of every Reshape of `model` (an onnx.ModelProto)
    that can be folded by a constant; drop the nodes that computed them. Returns the folded nodes' names."""
    graph = model.graph
    constants = {init.name for init in graph.initializer} | {
        node.output[0] for node in graph.node if node.op_type == "Constant"}
    targets = [node for node in graph.node
               if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] not in constants]
    if not targets:
        return []
    operands = sorted({node.input[1] for node in targets})
    runs = [_computed(model, operands, batch) for batch in BATCHES]
    if None in runs:
        return []
    folded = []
    for node in targets:
        shape = _batch_free([run[node.input[1]] for run in runs])
        if shape is not None:
            _set_constant_operand(graph, node, shape)
            folded.append(node.name)
    _drop_unused(graph)
    return folded


def _computed(model, names: list[str], batch: int) -> dict[str, list[int]] | None:
    """{tensor: value} of `names`, computed by ONNX Runtime on inputs of ones whose first axis is
    `batch`; None when an input has another unknown dimension or the model does not run."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper

    initializers = {init.name for init in model.graph.initializer}
    feeds = {}
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        dims = [d.dim_value or None for d in tensor.type.tensor_type.shape.dim]
        shape = ([batch] if dims and dims[0] is None else dims[:1]) + dims[1:]
        if None in shape:
            return None
        dtype = helper.tensor_dtype_to_np_dtype(tensor.type.tensor_type.elem_type)
        feeds[tensor.name] = np.ones(shape, dtype)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(copy.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(names, feeds)
    except Exception:  # onnxruntime's own error types: leave the shapes to the importer, which names the node
        return None
    return {name: [int(v) for v in np.asarray(value).reshape(-1)] for name, value in zip(names, values)}


def _batch_free(values: list[list[int]]) -> list[int] | None:
    """The shape with -1 where it follows the batch; None when more than one entry does."""
    first, second = values
    if len(first) != len(second):
        return None
    moving = [i for i, (a, b) in enumerate(zip(first, second)) if a != b]
    if len(moving) > 1 or (moving and -1 in first):
        return None
    return [-1 if i in moving else v for i, v in enumerate(first)]


def _set_constant_operand(graph, node, shape: list[int]) -> None:
    import numpy as np
    from onnx import numpy_helper

    name = f"{node.name or node.output[0]}/folded_shape"
    graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), name))
    node.input[1] = name


def _drop_unused(graph) -> None:
    """Remove the nodes none of whose outputs is read (by a node or as a graph output), repeatedly,
    then the initializers no node reads."""
    while True:
        read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        unused = [node for node in graph.node if not any(out in read for out in node.output)]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
    dropped = {init.name for init in graph.initializer if init.name not in read}
    for init in [init for init in graph.initializer if init.name in dropped]:
        graph.initializer.remove(init)
    for tensor in [tensor for tensor in graph.input if tensor.name in dropped]:  # initializers listed as inputs
        graph.input.remove(tensor)
