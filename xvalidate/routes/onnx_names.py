"""Name correspondence across the ONNX route: which converted tensor equals which source layer.

Pure Python: reads .onnx files with the `onnx` package (imported lazily) and MXNet
symbol files as JSON; imports no framework.

- tf2onnx names every tensor after the TensorFlow op that produced it, which
  carries the Keras layer name: `resnet50/conv5_block3_out/Relu:0`, and the
  graph output is renamed to the Keras output name (`predictions`). A BatchNorm
  folded into the preceding Conv leaves one Conv node (named after the Keras
  Conv2D) whose output tensor is named after the BatchNormalization layer: that
  tensor equals the BN layer's output, a "fused" pair.
- MXNet's ONNX importer names most symbols after the ONNX node, but not all
  (a Conv becomes `convolution0`); `onnx_steps.onnx_to_mxnet` records the exact
  ONNX tensor -> MXNet output map while importing.
- MXNet's ONNX exporter names the tensor of MXNet node `n` as `n` (`n0`, `n1`...
  for several outputs, `idx_<i>_n` for a repeated name).

A hint dict maps a destination tensor name to (source layer name, "name" | "fused").
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Collection, Iterable, Mapping

from xvalidate.errors import InputFileError

Hints = dict[str, tuple[str, str]]

_PORT = re.compile(r":\d+$")
_INSERTED = re.compile(r"__\d+$")  # tf2onnx's suffix for the nodes it adds
TENSOR_MAP_FILE = "tensor_map.json"  # written by onnx_steps.onnx_to_mxnet beside the symbol


def layer_in_name(name: str, layer_names: Collection[str]) -> str | None:
    """The layer whose name a tf2onnx node or tensor name carries, e.g. `model/block_bn/FusedBatchNormV3:0`
    -> `block_bn` (the rightmost path part that is a layer name; a bare name must be one whole)."""
    parts = _PORT.sub("", name).split("/")
    if len(parts) == 1:
        return parts[0] if parts[0] in layer_names else None
    for end in range(len(parts) - 1, 0, -1):  # the last part is the op
        for start in range(end):
            candidate = "/".join(parts[start:end])
            if candidate in layer_names:
                return candidate
    return None


def keras_onnx_hints(onnx_path: str, keras_layer_names: Iterable[str]) -> Hints:
    """{ONNX tensor: (Keras layer, "name" | "fused")} for a tf2onnx model: for each Keras layer, the one
    tensor equal to its output (the last one its ops produce, not counting layout Transposes).
    "fused" marks a tensor produced by another layer's node (a Conv with the BatchNorm folded in).
    A layer with several outputs (captured as `layer:0`, `layer:1`...) that tf2onnx made one
    LSTM/GRU/RNN node has output k paired with what leaves the layer from that node's output k
    (Keras [sequence or last output, h(, c)] and ONNX [Y, Y_h(, Y_c)])."""
    names = set(keras_layer_names)
    graph = _load_graph(onnx_path)
    multi = {n.rpartition(":")[0] for n in names if _PORT.search(n)} - names
    calls = _repeated_calls(names)
    hints = _keras_hints(graph, names | multi | set(calls), split=set(calls))
    hints = _spread_calls(hints, calls)
    return {t: pair for t, pair in hints.items() if pair[0] not in multi} | _rnn_output_hints(graph, multi, names | multi)


_CALL = re.compile(r"@\d+")
_OP_SUFFIX = re.compile(r"_(\d+)$")


def _repeated_calls(names: Iterable[str]) -> dict[str, list[str]]:
    """{layer: its capture names, first call first} for layers captured more than once ("name",
    "name@1"...; inside a nested model called twice, "outer/inner" and "outer@1/inner")."""
    calls: dict[str, list[str]] = {}
    for name in names:
        base = _CALL.sub("", name)
        if base != name:
            calls.setdefault(base, [base])
            calls[base].append(name)
    return {base: sorted(set(found), key=lambda n: [int(k) for k in re.findall(r"@(\d+)", n)]) for base, found in calls.items()}


def _spread_calls(hints: Hints, calls: Mapping[str, list[str]]) -> Hints:
    """Hints of a repeated layer's calls ("layer#k": TensorFlow numbers the ops of the k-th traced call
    Relu, Relu_1...) given to its capture names in that order. The order TensorFlow traced the calls
    in is not always the order they were made: the aligner checks each pair against the graph and
    swaps the calls of one layer where their inputs say so."""
    out: Hints = {}
    found: dict[str, list[tuple[int, str, str]]] = {}
    for tensor, (layer, how) in hints.items():
        base, sep, k = layer.rpartition("#")
        if sep and base in calls:
            found.setdefault(base, []).append((int(k), tensor, how))
        else:
            out[tensor] = (layer, how)
    for base, tensors in found.items():
        for name, (_, tensor, how) in zip(calls[base], sorted(tensors)):
            out[tensor] = (name, how)
    return out


def mxnet_onnx_hints(onnx_path: str, symbol_path: str, keras_layer_names: Iterable[str],
                     mxnet_names: Collection[str] | None = None) -> Hints:
    """{MXNet tensor: (Keras layer, how)} for the MXNet model that `onnx_steps.onnx_to_mxnet` imported
    from the tf2onnx model at `onnx_path`: `keras_onnx_hints` carried through the importer's tensor map
    (TENSOR_MAP_FILE beside `symbol_path`). MXNet tensors are output names (`convolution0_output`);
    pass the MXNet adapter's layer names as `mxnet_names` to get whichever spelling it uses."""
    map_path = Path(symbol_path).with_name(TENSOR_MAP_FILE)
    try:
        onnx_to_mxnet: Mapping[str, str] = json.loads(map_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{map_path}: cannot read the ONNX -> MXNet tensor map that onnx_to_mxnet "
                             f"writes beside the symbol ({exc})") from exc
    hints: Hints = {}
    for onnx_tensor, pair in keras_onnx_hints(onnx_path, keras_layer_names).items():
        mx_name = _spelled(onnx_to_mxnet.get(onnx_tensor), mxnet_names)
        if mx_name is not None and mx_name not in hints:
            hints[mx_name] = pair
    return hints


def gluon_onnx_hints(symbol_path: str, onnx_path: str, mxnet_names: Collection[str] | None = None) -> Hints:
    """{ONNX tensor: (MXNet tensor, "name")} for an ONNX model written by MXNet's exporter from the
    symbol at `symbol_path`: Gluon's `resnetv10_conv0_fwd` -> ONNX tensor `resnetv10_conv0_fwd`.
    MXNet tensors are output names (`resnetv10_conv0_fwd_output`) unless `mxnet_names` spells them
    otherwise."""
    graph = _load_graph(onnx_path)
    onnx_tensors = {out for node in graph.node for out in node.output}
    with open(symbol_path) as f:
        nodes = json.load(f)["nodes"]
    hints: Hints = {}
    seen: set[str] = set()
    for idx, node in enumerate(nodes):
        name = node["name"]
        exported = f"idx_{idx}_{name}" if name in seen else name  # the exporter's rule for repeated names
        seen.add(name)
        if node["op"] == "null":
            continue
        for onnx_tensor, mx_output in _exported_outputs(exported, name, onnx_tensors):
            mx_name = _spelled(mx_output, mxnet_names)
            if mx_name is not None:
                hints[onnx_tensor] = (mx_name, "name")
    return hints


# ---------------------------------------------------------------- helpers
def _load_graph(onnx_path: str):
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph


def _keras_hints(graph, layer_names: set[str], split: set[str] = frozenset()) -> Hints:
    """{tensor: (layer, how)}; a layer in `split` (called several times) gets one tensor per op-name
    suffix, as "layer#k" for the ops named Op_k (k 0 for no suffix)."""
    chosen: dict[str, tuple[str, str]] = {}  # layer -> (tensor, how); later tensors replace earlier ones
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    owner: dict[str, str] = {}  # tensor -> the layer whose computation it is part of
    moved: dict[str, str] = {}  # output of a layout Transpose -> its input (the same values)
    named_readers: dict[str, set] = {}  # tensor -> the layers named by the nodes that read it
    for node in graph.node:
        layer = layer_in_name(node.name, layer_names) if node.name else None
        for tensor in node.input:
            if layer is not None:
                named_readers.setdefault(tensor, set()).add(layer)
    for inp in graph.input:
        if inp.name in layer_names:
            chosen[inp.name] = (inp.name, "name")
    for node in graph.node:
        if _is_layout_transpose(node):
            moved.update((tensor, node.input[0]) for tensor in node.output)
            continue
        node_layer = layer_in_name(node.name, layer_names) if node.name else None
        for tensor in node.output:
            layer = layer_in_name(tensor, layer_names) or _inherited_layer(node, owner, constants, moved, named_readers)
            if layer is not None:
                owner[tensor] = layer
                key = layer
                if layer in split:
                    suffix = _OP_SUFFIX.search(_PORT.sub("", tensor).rsplit("/", 1)[-1])
                    key = f"{layer}#{suffix.group(1) if suffix else 0}"
                chosen[key] = (tensor, "fused" if node_layer not in (None, layer) else "name")
    _prefer_leaving_tensors(graph, owner, chosen, moved)
    return {tensor: (layer, how) for layer, (tensor, how) in chosen.items()}


_RNN_OPS = ("LSTM", "GRU", "RNN")


def _rnn_output_hints(graph, multi: set[str], names: set[str]) -> Hints:
    """{ONNX tensor: ("layer:k", "name")} for multi-output Keras layers that are one ONNX RNN node:
    the last tensor that the node's output k becomes through nodes of that layer or unnamed ones
    tf2onnx inserted (Squeeze, Slice, Transpose). A bidirectional node's states hold both
    directions: the Slice that takes one of them out decides the Keras output (a Bidirectional
    LSTM returns [output, forward h, forward c, backward h, backward c])."""
    import onnx
    from onnx import numpy_helper

    tables = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    origin: dict[str, tuple[str, int]] = {}  # tensor -> (layer, its Keras output index)
    last: dict[tuple[str, int], str] = {}
    states: dict[str, tuple[str, int, int]] = {}  # bidirectional state tensor -> (layer, ONNX output, states per direction)
    for node in graph.node:
        sources = {origin[i] for i in node.input if i in origin}
        if node.op_type in _RNN_OPS:
            layer = next((m for m in multi if any(layer_in_name(i, {m}) for i in node.input[:1])), None)
            if layer is None and len({src[0] for src in sources}) == 1:
                layer = next(iter(sources))[0]
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            both = attrs.get("direction", b"forward") == b"bidirectional"
            for k, tensor in enumerate(node.output if layer else ()):
                if tensor and both and k:
                    states[tensor] = (layer, k, len(node.output) - 1)
                elif tensor:
                    origin[tensor], last[(layer, k)] = (layer, k), tensor
            continue
        if node.op_type == "Slice" and node.input[0] in states:
            layer, k, per_direction = states[node.input[0]]
            begin = tables.get(node.input[1]) if len(node.input) > 1 else None
            if begin is not None and begin.size == 1 and int(begin.reshape(-1)[0]) in (0, 1):
                source = (layer, k + per_direction * int(begin.reshape(-1)[0]))
                for tensor in node.output:
                    origin[tensor], last[source] = source, tensor
            continue
        if len(sources) != 1:
            continue
        source = next(iter(sources))
        named = layer_in_name(node.name, names) if node.name else None
        if named == source[0] or (named is None and _INSERTED.search(node.name or "")):
            for tensor in node.output:
                origin[tensor] = source
                last[source] = tensor
    return {tensor: (f"{layer}:{k}", "name") for (layer, k), tensor in last.items()}


def _prefer_leaving_tensors(graph, owner: Mapping[str, str], chosen: dict[str, tuple[str, str]],
                           moved: Mapping[str, str]) -> None:
    """A layer whose ops tf2onnx rewrote into unnamed nodes (see `_inherited_layer`) owns tensors after
    its real output in the graph's order: take the last one that leaves the layer (read by another
    layer's node, or a graph output), when the chosen tensor does not."""
    leaving = {o.name for o in graph.output}
    for node in graph.node:
        readers = {owner.get(o) for o in node.output if o} - {None}
        for tensor in map(lambda t: _unmoved(t, moved), node.input):
            if tensor in owner and readers and owner[tensor] not in readers:
                leaving.add(tensor)
    last: dict[str, str] = {}
    for node in graph.node:
        for tensor in node.output:
            if tensor in leaving and tensor in owner:
                last[owner[tensor]] = tensor
    for layer, (tensor, how) in list(chosen.items()):
        if tensor not in leaving and layer in last:
            chosen[layer] = (last[layer], how)


def _unmoved(tensor: str, moved: Mapping[str, str]) -> str:
    """The tensor before any layout Transposes."""
    while tensor in moved:
        tensor = moved[tensor]
    return tensor


def _inherited_layer(node, owner: Mapping[str, str], constants: set[str], moved: Mapping[str, str],
                     named_readers: Mapping[str, set]) -> str | None:
    """The layer of a node tf2onnx inserted (`Gemm__310`, no layer in its name) when its data inputs
    that belong to a layer all belong to that one: its rewrite of that layer's ops (an attention
    layer's Einsums become MatMul, Reshape and Squeeze nodes, so the layer's output has no name of
    its own). An input that a node of another layer reads too has left its layer: the node is then
    the start of the next layer's rewrite, not part of this one."""
    if not _INSERTED.search(node.name or ""):
        return None
    layers = set()
    for tensor in (_unmoved(i, moved) for i in node.input if i and i not in constants):
        layer = owner.get(tensor)
        if layer is not None and named_readers.get(tensor, set()) - {layer}:
            return None
        layers.add(layer)
    layers.discard(None)
    return next(iter(layers)) if len(layers) == 1 else None


def _is_layout_transpose(node) -> bool:
    """A Transpose tf2onnx added to move data between NHWC and NCHW (around a Conv, before a Flatten...):
    it carries the name of a layer whose input or output it moves, but computes nothing of that layer.
    (A Keras Permute layer's Transpose keeps its TensorFlow name, without the suffix.)"""
    return node.op_type == "Transpose" and bool(_INSERTED.search(node.name or ""))


def _exported_outputs(exported: str, name: str, onnx_tensors: set[str]):
    """(ONNX tensor, MXNet output name) for the outputs of one MXNet node."""
    if exported in onnx_tensors:
        yield exported, f"{name}_output"
        return
    for i in range(100):
        if f"{exported}{i}" not in onnx_tensors:
            return
        yield f"{exported}{i}", f"{name}_output{i}"


def _spelled(mx_output: str | None, mxnet_names: Collection[str] | None) -> str | None:
    """An MXNet output name as the caller spells MXNet tensors (None: not among them)."""
    if mx_output is None or mxnet_names is None:
        return mx_output
    if mx_output in mxnet_names:
        return mx_output
    bare = re.sub(r"_output\d*$", "", mx_output)
    return bare if bare in mxnet_names else None
