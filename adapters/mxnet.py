"""MXNet adapter: a `prefix-symbol.json` with its `prefix-NNNN.params` (Gluon `export()` and
Module checkpoints, keys `arg:`/`aux:`), or an in-memory Gluon HybridBlock.

Capture: every non-variable output of `symbol.get_internals()` grouped into one symbol,
bound once per (input shape, layer set) with grad_req="null", one forward (is_train=False).
A bound executor plans and allocates its memory once, at bind, and reuses it on every forward:
static allocation, as a Gluon block hybridized with static_alloc=True (a CachedOp with
static_alloc and static_shape measured the same, to the same values). The forward over every
output costs ~1.03x the plain one (ResNet50); copying the outputs out of oneDNN's layouts into
NCHW numpy arrays is what a capture adds: one reorder per output straight into one numpy block,
reused while the caller holds none of its arrays (`_copy_out`; docs/performance.md).
Names are the internal output names without "_output" ("conv0_fwd"); an op with several
outputs gives "name:0", "name:1"... The input is the one argument with no value in the params
(labels of a Module's SoftmaxOutput, `*_label`, are bound to zeros).

The input's layout is NCHW unless the graph starts by transposing it from NHWC (models
imported from tf2onnx). A `prefix-input.json` beside the symbol ({"name", "shape",
"layout"}), written by `save` and by the routes, records the input shape; `load(...,
input_shape=...)` gives it too. Without either, the channel count is read from the first
convolution and the other dimensions are unknown (None): layer shapes then keep None where
they depend on them. Tensor layouts: a transpose permutes its input's layout, other ops that
keep the rank keep it, anything else is channels-first by rank (NCHW, NCW, NC).
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError, WorkerError
from xvalidate.input_hint import input_hint_path, write_input_hint  # noqa: F401 (re-exported)
from xvalidate.input_hint import read_input_hint as _read_input_hint
from xvalidate.naming import strip_suffixes
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import check_input, input_arrays, layout_for_rank, pick_layers

_OUTPUT = re.compile(r"^(.*)_output(\d*)$")
_PAIRING_SUFFIXES = re.compile(r"(_output\d*|_?fwd)$", re.IGNORECASE)
_KINDS = {
    "Convolution": ["conv"], "Deconvolution": ["conv"], "FullyConnected": ["dense"], "dot": ["dense"],
    "_linalg_gemm2": ["dense"], "BatchNorm": ["bn"],
    "BatchNorm_v1": ["bn"], "_contrib_SyncBatchNorm": ["bn"], "Flatten": ["flatten"], "flatten": ["flatten"],
    "Reshape": ["reshape"], "reshape": ["reshape"], "softmax": ["softmax"], "SoftmaxActivation": ["softmax"],
    "SoftmaxOutput": ["softmax"], "relu": ["relu"], "sigmoid": ["sigmoid"], "tanh": ["tanh"], "LeakyReLU": ["act"],
    "elemwise_add": ["add"], "broadcast_add": ["add"], "_Plus": ["add"], "_plus": ["add"], "add_n": ["add"],
    "ElementWiseSum": ["add"], "elemwise_mul": ["mul"], "broadcast_mul": ["mul"], "_Mul": ["mul"], "_mul": ["mul"],
    "Concat": ["concat"], "concat": ["concat"], "Pad": ["pad"], "pad": ["pad"],
    "Dropout": ["identity"], "transpose": ["identity"], "SwapAxis": ["identity"], "_copy": ["identity"],
    "identity": ["identity"], "BlockGrad": ["identity"], "Cast": ["identity"], "cast": ["identity"],
}
_ACT = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "act", "softsign": "act"}
_RESHAPES = {"Reshape", "reshape", "Flatten", "flatten", "transpose", "SwapAxis", "expand_dims", "squeeze"}
# Framework-neutral names of MXNet attributes, added beside the originals
_ATTR_ALIASES = {"stride": "strides", "pad": "padding", "eps": "epsilon", "num_filter": "filters",
                 "num_hidden": "units", "act_type": "activation"}
# Sizes given to unknown input dimensions for shape inference: a dimension that comes out the
# same for both does not depend on them
_PROBE_SIZES = (224, 256)


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
    out_blocks: dict = field(default_factory=dict)  # {executor key: _OutputBlock}, as executors
    more_inputs: list = field(default_factory=list)  # InputInfo of the data inputs after the first
    input_dtype: str = "float32"  # an integer input (token ids) imported from ONNX keeps its type


@dataclass
class _Op:
    """One captured output: its name, the graph node that makes it (and that node's index in the
    symbol's node list), which of the node's outputs it is, and its position in get_internals()."""

    name: str
    node: dict
    node_index: int
    output_index: int
    position: int


class MXNetAdapter(Adapter):
    name = "mxnet"
    layout = "NCHW"
    extensions = ("-symbol.json", ".json", ".params")
    packages = ("mxnet",)

    @property
    def worker_variables(self) -> dict[str, str]:
        """oneDNN capped below AVX512_CORE in the worker, unless the user caps it: on AVX-512 machines
        its brgemm convolutions compute in NHWC, and oneDNN reorders NHWC to NCHW at ~0.3 ms per MB;
        the AVX-512 convolutions below that level compute in blocked nChw16c, reordered to NCHW at
        ~0.1-0.2 ms per MB. A capture copies every output out, so it gets faster (against the
        fastest plain forward with or without the cap: ResNet50 1.53x -> 1.36x, MobileNetV2
        1.84x -> 1.70x, DenseNet121 2.28x -> 1.95x) although some forwards get slower (DenseNet121's
        by ~30%, MobileNetV2's faster by ~25%); values move by float rounding, ~2.5e-6 of a tensor's
        largest value on ResNet50 (docs/performance.md). No effect on machines without AVX-512."""
        if "DNNL_MAX_CPU_ISA" in os.environ or "ONEDNN_MAX_CPU_ISA" in os.environ:
            return {}
        return {"DNNL_MAX_CPU_ISA": "AVX512_MIC"}

    def pairing_name(self, name: str) -> str:
        """Without what Gluon and MXNet add to a layer's name: `_fwd` (`resnetv10_conv0_fwd`) and an output
        suffix `_output`, `_output1` (`resnetv10_conv0_fwd_output` -> `resnetv10_conv0`)."""
        return strip_suffixes(name, _PAIRING_SUFFIXES)

    def model_files(self, path: str) -> list[str]:
        """The symbol and every `prefix-NNNN.params` beside it."""
        if not path.endswith("-symbol.json"):
            return [path]
        prefix = Path(path[: -len("-symbol.json")])
        return [path] + [str(p) for p in sorted(prefix.parent.glob(prefix.name + "-*.params"))]

    # ---------------------------------------------------------------- loading
    def owns(self, obj: Any) -> bool:
        return any(c.__module__.startswith("mxnet.gluon") and c.__name__ in ("HybridBlock", "Block")
                   for c in type(obj).__mro__)

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        import mxnet as mx

        where = f"gluon block {model.name!r}"
        if not isinstance(model, mx.gluon.HybridBlock):
            raise InputFileError(f"{where}: a Block that is not a HybridBlock has no graph to export; "
                                 "build it from HybridBlocks")
        prefix = str(Path(directory) / "model")
        try:  # a block hybridized and run once has its graph; hybridize() again would drop it
            model.export(prefix)
        except RuntimeError:
            if example is None:
                raise InputFileError(f"{where}: its graph is not known yet; call hybridize() and run it once "
                                     "before passing it, or give example inputs") from None
            model.hybridize()
            model(mx.nd.array(example[:1]))
            model.export(prefix)
        if example is not None:
            write_input_hint(prefix + "-symbol.json", None, [None, *example.shape[1:]], "NCHW")
        return prefix + "-symbol.json"

    def load(self, source: Any, input_shape: Sequence[int | None] | None = None) -> MXNetModel:
        """A symbol file (or its params file) or an in-memory HybridBlock; `input_shape` (batch
        first) overrides the shape recorded beside the symbol."""
        if self.owns(source):
            with tempfile.TemporaryDirectory(prefix="xvalidate-gluon-") as directory:
                model = self.load(self.save(source, directory), input_shape)
            model.source = f"gluon block {source.name!r}"
            return model
        symbol_path, params_path = _files(Path(source))
        import mxnet as mx

        try:
            symbol = mx.sym.load(str(symbol_path))
        except Exception as exc:  # MXNetError, or a decode error on a binary file
            raise InputFileError(f"{symbol_path}: not a readable MXNet symbol file ({_first_line(exc)})") from None
        try:
            saved = mx.nd.load(str(params_path))
        except Exception as exc:  # MXNetError and friends
            raise InputFileError(f"{params_path}: not a readable MXNet params file ({_first_line(exc)})") from None
        if not isinstance(saved, dict):
            raise InputFileError(f"{params_path}: holds unnamed arrays; expected the named parameters that "
                                 "export() or save_checkpoint() write")
        arg_params, aux_params = {}, {}
        for key, value in saved.items():
            kind, _, name = key.partition(":")
            if kind == "aux":
                aux_params[name] = value
            else:
                arg_params[name if kind == "arg" else key] = value
        free = [a for a in symbol.list_arguments() if a not in arg_params and not a.endswith("_label")]
        hint = _read_input_hint(symbol_path)
        listed = {i.get("name"): i for i in hint.get("inputs", [])}
        if len(free) != 1 and set(free) != set(listed):
            raise InputFileError(f"{symbol_path}: expected one data input without a value in {params_path.name}, "
                                 f"found {len(free)}: {', '.join(free[:5])} (a model with several inputs needs "
                                 f"them listed in {input_hint_path(symbol_path).name})")
        model = MXNetModel(symbol, arg_params, aux_params, str(symbol_path), free[0])
        if len(free) > 1:
            hint = listed[free[0]]
            model.more_inputs = [InputInfo(n, (None, *listed[n]["shape"][1:]), listed[n].get("dtype", "float32"),
                                           listed[n]["layout"]) for n in free[1:]]
        model.input_dtype = listed.get(free[0], {}).get("dtype", "float32")
        model.input_layout = hint.get("layout") or _input_layout(symbol, free[0])
        shape = input_shape or hint.get("shape")
        model.input_shape = (None, *shape[1:]) if shape else _guess_input_shape(model)
        return model

    # ---------------------------------------------------------------- graph
    def layers(self, model: MXNetModel) -> list[LayerInfo]:
        graph = _graph(model.symbol)
        shapes = _infer_shapes(model)
        name_of = {(op.node_index, op.output_index): op.name for op in graph.ops}
        layouts = {model.input_name: model.input_layout, **{i.name: i.layout for i in model.more_inputs}}
        infos = []
        for op in graph.ops:
            attrs = {k: _parse(v) for k, v in op.node.get("attrs", {}).items()}
            inputs = [name_of.get((i, j)) or graph.nodes[i]["name"] for i, j, *_ in op.node["inputs"]]
            data_inputs = [n for n in inputs if n in layouts]
            shape = shapes.get(op.position)
            layout = _layout(op.node["op"], attrs, shape, layouts.get(data_inputs[0]) if data_inputs else None)
            layouts[op.name] = layout
            producer = op.node["inputs"][0] if op.node["inputs"] else None
            producer_shape = None if producer is None else shapes.get(graph.position.get((producer[0], producer[1])))
            infos.append(LayerInfo(name=op.name, op=op.node["op"], shape=shape, layout=layout,
                                   kinds=_kinds(op.node["op"], attrs, model, graph.nodes, op.node, producer_shape, shape),
                                   inputs=[n for (i, j, *_), n in zip(op.node["inputs"], inputs) if (i, j) in name_of],
                                   attrs=_small(attrs)))
        return infos

    def supports_isolation(self, model: MXNetModel) -> bool:
        return True

    def run_isolated(self, model: MXNetModel, x: Any, feeds: dict, layers: Sequence[str] | None = None) -> dict:
        import mxnet as mx

        graph = _graph(model.symbol)
        names = [op.name for op in graph.ops]
        chosen = pick_layers(names, layers, model.source)
        pick_layers(names, list(feeds), model.source)  # every fed tensor exists
        x = x if isinstance(x, np.ndarray) else next(iter(x.values()))
        values = {model.input_name: x, **{name + FED: value for name, value in feeds.items()}}
        key = ("isolated", tuple(chosen), tuple((n, v.shape) for n, v in values.items()))
        exe = model.executors.get(key)
        if exe is None:
            symbol = _fed_symbol(model.symbol, graph, chosen, list(feeds))
            args = {name: model.arg_params[name] for name in symbol.list_arguments() if name in model.arg_params}
            used = set(symbol.list_arguments())  # a fed tensor nothing reads is not an argument
            args.update((name, mx.nd.zeros(value.shape)) for name, value in values.items() if name in used)
            for name in symbol.list_arguments():  # labels of SoftmaxOutput heads: unused at inference
                args.setdefault(name, mx.nd.zeros((x.shape[0],)))
            aux = {name: model.aux_params[name] for name in symbol.list_auxiliary_states()}
            try:
                with _no_graph_fusion():
                    exe = symbol.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
            except mx.base.MXNetError as exc:
                raise InputShapeError(f"{model.source}: cannot run with the fed tensors ({_first_line(exc)})") from None
            model.executors = {key: exe}  # one executor at a time, as run() keeps
        for name, value in values.items():
            if name in exe.arg_dict:
                exe.arg_dict[name][:] = np.asarray(value, np.float32)
        return _copy_out(model, key, chosen, exe.forward(is_train=False))

    def kernel(self, model: MXNetModel, name: str) -> np.ndarray | None:
        graph = _graph(model.symbol)
        op = next((o for o in graph.ops if o.name == name), None)
        node = None if op is None else op.node
        for _ in range(3):  # the Convolution itself, or the one behind a BatchNorm / activation
            if node is None:
                return None
            if node["op"] == "Convolution":
                weight = graph.nodes[node["inputs"][1][0]]["name"]
                return model.arg_params[weight].asnumpy() if weight in model.arg_params else None
            if node["op"] not in ("BatchNorm", "Activation", "relu", "clip", "sigmoid", "LeakyReLU"):
                return None
            node = graph.nodes[node["inputs"][0][0]]
        return None

    def input_info(self, model: MXNetModel) -> InputInfo:
        shape = model.input_shape or (None, None, None, None)
        layout = model.input_layout
        if len(shape) != 4 and layout in ("NCHW", "NHWC"):  # the image default: other ranks by what reads it
            layout = _sequence_layout(model.symbol, model.input_name) if len(shape) == 3 else layout_for_rank(len(shape))
        return InputInfo(name=model.input_name, shape=tuple(shape), dtype=model.input_dtype, layout=layout,
                         value_range=_embedding_range(model.symbol, model.input_name))

    def inputs_info(self, model: MXNetModel) -> list[InputInfo]:
        return [self.input_info(model), *model.more_inputs]

    # ---------------------------------------------------------------- running
    def run(self, model: MXNetModel, x: np.ndarray | dict, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        import mxnet as mx

        more = {}
        if isinstance(x, dict) or model.more_inputs:  # {input name: array}
            more = input_arrays(x, self.inputs_info(model), model.source)
            x = more.pop(model.input_name)
        expected = model.input_shape or (None,) * x.ndim
        check_input(x, (None, *expected[1:]), model.source)
        ops = _graph(model.symbol).ops
        chosen = pick_layers([op.name for op in ops], layers, model.source)
        key = (x.shape, *(a.shape for a in more.values()), tuple(chosen))
        exe = model.executors.get(key)
        if exe is None:
            position = {op.name: op.position for op in ops}
            internals = model.symbol.get_internals()
            # by position, not by name: a reused block makes several nodes with one name
            group = mx.sym.Group([internals[position[n]] for n in chosen])
            args = {name: model.arg_params[name] for name in group.list_arguments() if name in model.arg_params}
            dtypes = {info.name: info.dtype for info in self.inputs_info(model)}
            args[model.input_name] = mx.nd.zeros(x.shape, dtype=dtypes[model.input_name])
            args.update((name, mx.nd.zeros(a.shape, dtype=dtypes[name]))
                        for name, a in more.items() if name in group.list_arguments())
            for name in group.list_arguments():  # labels of SoftmaxOutput heads: unused at inference
                if name not in args:
                    args[name] = mx.nd.zeros((x.shape[0],))
            aux = {name: model.aux_params[name] for name in group.list_auxiliary_states()}
            try:
                with _no_graph_fusion():
                    exe = group.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
            except mx.base.MXNetError as exc:
                raise InputShapeError(f"{model.source}: cannot run on an input of shape {tuple(x.shape)} "
                                      f"({_first_line(exc)})") from None
            model.executors = {key: exe}  # one executor at a time: a new shape or layer set binds again
        exe.arg_dict[model.input_name][:] = x.astype(exe.arg_dict[model.input_name].dtype, copy=False)
        for name, a in more.items():
            if name in exe.arg_dict:
                exe.arg_dict[name][:] = a.astype(exe.arg_dict[name].dtype, copy=False)
        try:
            outputs = exe.forward(is_train=False)
            return _copy_out(model, key, chosen, outputs)
        except mx.base.MXNetError as exc:  # an op MXNet cannot run as given (1-D global pooling on oneDNN...)
            raise WorkerError(f"{model.source}: MXNet cannot run the model ({_first_line(exc)})") from None


def _copy_out(model: MXNetModel, key: Any, names: list[str], outputs: list) -> dict[str, np.ndarray]:
    """{name: numpy copy} of an executor's outputs, which it overwrites on its next forward.

    `asnumpy` copies an output held in a oneDNN layout twice (a reorder into a new NCHW NDArray,
    then a copy into a new numpy array), waiting on each. Here each output is reordered once,
    straight into a numpy block (`copyto` an NDArray over it), every copy is queued before one
    wait, and the block is reused on the next call when none of the arrays returned from it is
    alive any more (see _OutputBlock). Values are the same, bit for bit."""
    import mxnet as mx

    block = model.out_blocks.get(key)
    if block is None:
        block = _OutputBlock(outputs)
        model.out_blocks = {key: block}
    targets = block.targets()
    for out, target in zip(outputs, targets):
        if target is not None:
            out.copyto(target)
    mx.nd.waitall()
    return {name: out.asnumpy() if target is None else array
            for name, out, target, array in zip(names, outputs, targets, block.arrays())}


class _OutputBlock:
    """One numpy block that holds a copy of every output of an executor, each at an offset of its own.

    The arrays a call returns are fresh views of the block, so they keep it alive; the block is
    written again only when its reference count says that no such view (nor any view of one)
    is left, and a new block is made otherwise. Between calls the block stays allocated, as the
    executor's own memory does (one executor, and so one block, at a time). Outputs of a type
    DLPack cannot carry, or empty ones, are copied with `asnumpy` instead."""

    _ALIGN = 64

    def __init__(self, outputs: list) -> None:
        self.layout, offset = [], 0
        for out in outputs:
            dtype = np.dtype(out.dtype)
            nbytes = int(np.prod(out.shape, dtype=np.int64)) * dtype.itemsize
            self.layout.append((tuple(out.shape), dtype, offset, nbytes))
            offset += -(-nbytes // self._ALIGN) * self._ALIGN
        self.nbytes = offset
        self.block: np.ndarray | None = None
        self.nd_targets: list = []
        self.idle_refs = -1

    def targets(self) -> list:
        """NDArrays over the block, one per output (None: copied with asnumpy), for this call."""
        if self.block is None or sys.getrefcount(self.block) != self.idle_refs:
            self._new_block()
            self.idle_refs = sys.getrefcount(self.block)  # the block unused: what the next call compares
        return self.nd_targets

    def arrays(self) -> list[np.ndarray]:
        return [self._view(shape, dtype, offset, nbytes) for shape, dtype, offset, nbytes in self.layout]

    def _new_block(self) -> None:
        import mxnet as mx

        self.block = np.empty(self.nbytes, np.uint8)
        supported = set(mx.ndarray.ndarray.DLDataType.TYPE_MAP)
        self.nd_targets = [mx.nd.from_numpy(self._view(shape, dtype, offset, nbytes), zero_copy=True)
                           if nbytes and str(dtype) in supported else None
                           for shape, dtype, offset, nbytes in self.layout]

    def _view(self, shape: tuple, dtype: np.dtype, offset: int, nbytes: int) -> np.ndarray:
        return self.block[offset:offset + nbytes].view(dtype).reshape(shape)


@contextlib.contextmanager
def _no_graph_fusion() -> Iterator[None]:
    """Bind without the oneDNN subgraph backend, which fuses ops (conv + relu...) and then cannot
    hand out the outputs inside a fused group. MXNet reads the variable at each bind."""
    before = os.environ.get("MXNET_SUBGRAPH_BACKEND")
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MXNET_SUBGRAPH_BACKEND"]
        else:
            os.environ["MXNET_SUBGRAPH_BACKEND"] = before


# ---------------------------------------------------------------- files
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
    params = sorted(prefix.parent.glob(prefix.name + "-[0-9]*.params"))
    if not params:
        raise InputFileError(f"{symbol}: no {prefix.name}-NNNN.params file beside it")
    return symbol, params[-1]


def _first_line(exc: BaseException) -> str:
    """The informative line of an error: MXNet's messages start with a C++ traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("MXNetError:")]
    if errors:
        return errors[-1][len("MXNetError:"):].strip()[:200] or type(exc).__name__
    lines = [line for line in lines if not line.startswith(("Traceback", "File "))]
    return (lines[0] if lines else type(exc).__name__)[:200]


# ---------------------------------------------------------------- graph
@dataclass
class _Graph:
    """A symbol's nodes (JSON), its op outputs to capture, and {(node index, output index):
    position in get_internals()}."""

    nodes: list
    ops: list[_Op]
    position: dict


def _graph(symbol: Any) -> _Graph:
    """Every op output of `symbol`'s internals in graph order (variables left out).

    Nodes are told apart by position, never by name: a block called twice (Gluon's reused
    pooling or activation blocks) makes two nodes with the same name. get_internals() lists the
    outputs node by node in the order of the JSON node list; a node's outputs are "name_output"
    (one) or "name_output0", "name_output1"... (several), a variable's is its bare name. The
    second, third... node of a name is captured as "name@1", "name@2"..."""
    nodes = json.loads(symbol.tojson())["nodes"]
    ops, position, seen = [], {}, {}
    node_index, output_index = -1, 0
    for pos, output in enumerate(symbol.get_internals().list_outputs()):
        m = _OUTPUT.match(output)
        if m is None or m.group(2) in ("", "0"):  # a variable, or the first output of an op node
            node_index, output_index = node_index + 1, 0
        else:
            output_index += 1
        node = nodes[node_index]
        position[(node_index, output_index)] = pos
        if node["op"] == "null":
            continue
        if output_index == 0:
            seen[node["name"]] = seen.get(node["name"], -1) + 1
        base = node["name"] + (f"@{seen[node['name']]}" if seen[node["name"]] else "")
        name = base if not m.group(2) else f"{base}:{output_index}"
        ops.append(_Op(name, node, node_index, output_index, pos))
    return _Graph(nodes, ops, position)


FED = "::fed"  # suffix of the variable that replaces a fed tensor for its consumers


def _fed_symbol(symbol: Any, graph: "_Graph", outputs: list[str], fed: list[str]) -> Any:
    """`symbol` with every tensor in `fed` read by its consumers from a new variable (name + FED),
    and `outputs` as its heads. The variables go first in the node list, which keeps it in order."""
    import mxnet as mx

    data = json.loads(symbol.tojson())
    by_name = {op.name: op for op in graph.ops}
    variables = [{"op": "null", "name": name + FED, "inputs": []} for name in fed]
    replaced = {(by_name[name].node_index, by_name[name].output_index): i for i, name in enumerate(fed)}
    shift = len(variables)
    nodes = []
    for node in data["nodes"]:
        node = dict(node)
        node["inputs"] = [[replaced[(i, j)], 0, 0] if (i, j) in replaced else [i + shift, j, v]
                          for i, j, v in node["inputs"]]
        nodes.append(node)
    data["nodes"] = variables + nodes
    data["arg_nodes"] = [i for i, node in enumerate(data["nodes"]) if node["op"] == "null"]
    data["heads"] = [[by_name[name].node_index + shift, by_name[name].output_index, 0] for name in outputs]
    data.pop("node_row_ptr", None)
    return mx.sym.load_json(json.dumps(data))


def _parse(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return {"True": True, "False": False}.get(value, value)


def _infer_shapes(model: MXNetModel) -> dict[int, tuple]:
    """{position in get_internals(): shape with batch None} from the input shape; dimensions that depend on
    unknown input dimensions are None. Empty when the input's rank is unknown or inference fails."""
    if model.input_shape is None:
        return {}
    internals = model.symbol.get_internals()
    results = []
    for size in _PROBE_SIZES:
        probe = (1, *(size if d is None else int(d) for d in model.input_shape[1:]))
        probes = {i.name: (1, *(size if d is None else int(d) for d in i.shape[1:])) for i in model.more_inputs}
        try:
            _, shapes, _ = internals.infer_shape(**{model.input_name: probe}, **probes)
        except Exception:  # MXNetError: shape inference is a nicety, run() reports real shapes
            return {}
        if shapes is None:
            return {}
        results.append(shapes)
        if all(d is not None for d in model.input_shape[1:]):
            break
    out = {}
    for i in range(len(results[0])):
        dims = zip(*(r[i] for r in results))
        out[i] = (None, *(d[0] if len(set(d)) == 1 else None for d in list(dims)[1:]))
    return out


def _layout(op: str, attrs: dict, shape: tuple | None, input_layout: str | None) -> str:
    if shape is None:
        return "none"
    if op == "transpose" and input_layout and len(input_layout) == len(shape) and attrs.get("axes"):
        permuted = "".join(input_layout[a] for a in attrs["axes"])
        return permuted if permuted in ("NCHW", "NHWC", "NCW", "NWC") else "none"
    if op not in _RESHAPES and input_layout and len(input_layout) == len(shape):
        return input_layout
    return layout_for_rank(len(shape), channels_first=True)


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


def _embedding_range(symbol: Any, data: str) -> tuple[int, int] | None:
    """[0, input_dim) when an Embedding reads the input (token ids; MXNet takes them as floats)."""
    nodes = json.loads(symbol.tojson())["nodes"]
    data_index = next(i for i, n in enumerate(nodes) if n["name"] == data)
    for node in nodes:
        if node["op"] == "Embedding" and node.get("inputs") and node["inputs"][0][0] == data_index:
            return (0, int(_parse(node.get("attrs", {}).get("input_dim", "0"))))
    return None


def _sequence_layout(symbol: Any, data: str) -> str:
    """The layout of a 3-D input: NCW when a Convolution reads it first, else a (batch, time,
    features) sequence, NWC."""
    nodes = json.loads(symbol.tojson())["nodes"]
    data_index = next(i for i, n in enumerate(nodes) if n["name"] == data)
    readers = [n["op"] for n in nodes if any(i[0] == data_index for i in n.get("inputs", []))]
    return "NCW" if "Convolution" in readers else "NWC"


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


def _kinds(op: str, attrs: dict, model: MXNetModel, nodes: list, node: dict, producer_shape: tuple | None,
           shape: tuple | None) -> list[str]:
    if op == "Activation":
        return [_ACT.get(attrs.get("act_type"), "act")]
    if op == "Pooling":
        if attrs.get("global_pool") in (True, 1):
            return ["gpool"]
        return ["maxpool" if attrs.get("pool_type", "max") == "max" else "avgpool"]
    if op == "Convolution" and int(attrs.get("num_group", 1)) > 1:
        weight = model.arg_params.get(nodes[node["inputs"][1][0]]["name"])
        return ["dwconv"] if weight is not None and weight.shape[1] == 1 else ["conv"]  # one input channel per group
    if op == "clip" and float(attrs.get("a_min", -1)) == 0.0 and float(attrs.get("a_max", 0)) == 6.0:
        return ["relu6"]
    if op in ("Reshape", "reshape") and shape is not None and len(shape) == 2:
        if producer_shape is not None and len(producer_shape) > 2:
            return ["flatten"]
    return list(_KINDS.get(op, ["other"]))


def _small(attrs: dict) -> dict:
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()
           if isinstance(v, (int, float, str, bool, tuple, list))}
    for mx_name, name in _ATTR_ALIASES.items():
        if mx_name in out and name not in out:
            out[name] = out[mx_name]
    return out
