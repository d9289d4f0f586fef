"""Keras adapter (TensorFlow 2 Keras): .h5 / .keras files and in-memory keras.Model objects.

Capture: one multi-output keras.Model over the outputs of every asked layer, built once per
(model, layer set). It is called eagerly until its eager calls have cost about what tracing it
into a graph function costs; from then on the traced function runs (about 2x faster on
ResNet50, but tracing takes ~1 s, which a one-batch run never earns back). Its input signature
has a None batch, so one trace serves chunks of every size; traced and eager captures are equal.

Names: a layer's name; inside a nested model "outer/inner" (nested models are inlined: their
layers are called one by one on the outer graph's tensors, so that one pass captures them);
"name:0", "name:1"... for a layer with several outputs; "name@1", "name@2"... for the second,
third... call of a layer (or nested model) used more than once. Input layers are not captured.
Layouts: 4-D tensors are NHWC (NCHW for layers with data_format="channels_first").
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xvalidate.errors import InputFileError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.keras_safety import check_trusted
from xvalidate_adapters.common import input_arrays, layout_for_rank, pick_layers

_KINDS = {
    "Conv1D": ["conv"], "Conv2D": ["conv"], "Conv3D": ["conv"], "Conv1DTranspose": ["conv"],
    "Conv2DTranspose": ["conv"], "Conv3DTranspose": ["conv"], "DepthwiseConv1D": ["dwconv"],
    "DepthwiseConv2D": ["dwconv"], "SeparableConv1D": ["dwconv", "conv"], "SeparableConv2D": ["dwconv", "conv"],
    "Dense": ["dense"], "BatchNormalization": ["bn"],
    "MaxPooling1D": ["maxpool"], "MaxPooling2D": ["maxpool"], "MaxPooling3D": ["maxpool"],
    "AveragePooling1D": ["avgpool"], "AveragePooling2D": ["avgpool"], "AveragePooling3D": ["avgpool"],
    "GlobalAveragePooling1D": ["gpool"], "GlobalAveragePooling2D": ["gpool"], "GlobalAveragePooling3D": ["gpool"],
    "GlobalMaxPooling1D": ["gpool"], "GlobalMaxPooling2D": ["gpool"], "GlobalMaxPooling3D": ["gpool"],
    "Flatten": ["flatten"], "Reshape": ["reshape"], "Add": ["add"], "Multiply": ["mul"], "Concatenate": ["concat"],
    "ZeroPadding1D": ["pad"], "ZeroPadding2D": ["pad"], "ZeroPadding3D": ["pad"],
    "Dropout": ["identity"], "SpatialDropout1D": ["identity"], "SpatialDropout2D": ["identity"],
    "SpatialDropout3D": ["identity"], "GaussianNoise": ["identity"], "GaussianDropout": ["identity"],
    "AlphaDropout": ["identity"], "ActivityRegularization": ["identity"], "Softmax": ["softmax"],
    "LeakyReLU": ["act"], "PReLU": ["act"], "ELU": ["act"], "ThresholdedReLU": ["act"],
}
# layers whose `activation` is applied to their result (an LSTM's is not: its kinds stay ["other"])
_ACTIVATED = {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
              "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "Dense"}
_ACTIVATION_KINDS = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid",
                     "tanh": "tanh", "softmax": "softmax", "swish": "swish", "silu": "swish", "linear": "identity"}
# TFOpLambda layers (TensorFlow functions called on Keras tensors), by the function's name
_TF_OP_KINDS = {"nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
                "math.tanh": "tanh", "nn.tanh": "tanh", "nn.softmax": "softmax", "nn.silu": "swish",
                "nn.swish": "swish", "__operators__.add": "add", "math.add": "add", "math.multiply": "mul",
                "concat": "concat", "reshape": "reshape", "transpose": "identity", "identity": "identity"}
_ATTRS = ("kernel_size", "strides", "padding", "dilation_rate", "filters", "units", "pool_size", "epsilon",
          "axis", "use_bias", "data_format", "depth_multiplier", "max_value", "momentum", "center", "scale",
          "rate", "target_shape")
# Tracing a capture model into a graph function costs about this much per captured tensor
# (ResNet50: 0.95 s for 176 tensors, MobileNetV2: 0.93 s for 155, on 2 cores).
_TRACE_SECONDS_PER_OUTPUT = 0.006


@dataclass
class _Entry:
    """One captured tensor: its name, the layer that made it, the tensor, the names of its inputs."""

    name: str
    layer: Any
    tensor: Any
    inputs: list[str]


@dataclass
class _Graph:
    """A model's capturable tensors in topological order, and the input tensors they come from."""

    entries: list[_Entry]
    inputs: list
    outputs: list | None = None  # the model's output tensors, in order


class _Capture:
    """A multi-output keras.Model over some tensors of a model: eager calls until they have cost
    about what tracing it would, then a traced tf.function (ski rental between the two)."""

    def __init__(self, model: Any):
        self.model = model
        self.function = None
        self.eager_seconds = 0.0
        self.trace_seconds = _TRACE_SECONDS_PER_OUTPUT * len(model.outputs)

    def __call__(self, xs: list[np.ndarray]) -> list:
        """Outputs for the model's inputs `xs`, in the order of model.inputs."""
        import tensorflow as tf

        x = xs[0] if len(xs) == 1 else list(xs)
        if self.function is None and self.eager_seconds >= self.trace_seconds:
            # batch None: one trace serves chunks of every size (the last chunk is often smaller)
            specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype) for t in self.model.inputs]
            self.function = tf.function(lambda *t: self.model(t[0] if len(t) == 1 else list(t), training=False),
                                        input_signature=specs)
        if self.function is not None:
            outputs = self.function(*xs)
        else:
            start = time.perf_counter()
            outputs = self.model(x, training=False)
            self.eager_seconds += time.perf_counter() - start
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]


class KerasAdapter(Adapter):
    packages = ("tensorflow-cpu", "h5py")
    name = "keras"
    layout = "NHWC"
    extensions = (".h5", ".hdf5", ".keras")
    trust_model = False  # True: load files whose Lambda layers run code (see keras_safety)
    # a keras.json of its own: ~/.keras/keras.json may be set up for another Keras (keras-mxnet's backend
    # and channels_first), which would change how tf.keras builds models
    worker_variables = {"KERAS_HOME": "{private}/keras"}

    def __init__(self) -> None:
        self._graphs: dict[int, _Graph] = {}
        self._captures: dict[tuple, _Capture] = {}
        self._sources: dict[int, str] = {}

    # ---------------------------------------------------------------- loading
    def owns(self, obj: Any) -> bool:
        return any(c.__module__.split(".")[0] in ("keras", "tensorflow")
                   and c.__name__ in ("Model", "Functional", "Sequential") for c in type(obj).__mro__)

    def load(self, source: Any) -> Any:
        if self.owns(source):
            _check_built(source, f"keras model {source.name!r}")
            return source
        path = Path(source)
        if not path.exists():
            raise InputFileError(f"{path}: no such model file")
        if not path.name.lower().endswith(self.extensions):
            raise InputFileError(f"{path}: unknown extension for a Keras model; expected {', '.join(self.extensions)}")
        check_trusted(path, self.trust_model)  # before Keras reads anything: a Lambda's code runs while loading
        from tensorflow import keras

        try:
            model = keras.models.load_model(str(path), compile=False, safe_mode=not self.trust_model,
                                            custom_objects=_application_layers())
        except Exception as exc:  # h5py, zipfile and keras raise many types for a bad file
            raise InputFileError(f"{path}: not a readable Keras model ({_first_line(exc)})") from None
        _check_built(model, str(path))
        self._sources[id(model)] = str(path)
        return model

    def release(self, model: Any) -> None:
        key = id(model)
        self._graphs.pop(key, None)
        self._sources.pop(key, None)
        for cached in [k for k in self._captures if k[0] == key]:
            del self._captures[cached]

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        path = Path(directory) / f"{model.name or 'model'}.h5"
        try:
            model.save(str(path))
        except Exception:  # layers that HDF5 cannot describe: the .keras format can
            path = path.with_suffix(".keras")
            try:
                model.save(str(path))
            except Exception as exc:  # a subclassed layer without get_config, ...
                raise InputFileError(f"keras model {model.name!r}: cannot be saved as .h5 or .keras "
                                     f"({_first_line(exc)})") from None
        return str(path)

    # ---------------------------------------------------------------- graph
    def _describe(self, model: Any) -> str:
        return self._sources.get(id(model), f"keras model {model.name!r}")

    def _graph(self, model: Any) -> _Graph:
        if id(model) not in self._graphs:
            self._graphs[id(model)] = _trace_graph(model)
        return self._graphs[id(model)]

    def layers(self, model: Any) -> list[LayerInfo]:
        graph = self._graph(model)
        outputs = {id(t): k for k, t in enumerate(graph.outputs or ())}
        infos = [_layer_info(entry) for entry in graph.entries]
        for info, entry in zip(infos, graph.entries):
            if id(entry.tensor) in outputs:  # the model's k-th output: every one is compared and listed
                info.attrs["model_output"] = outputs[id(entry.tensor)]
        return infos

    def kernel(self, model: Any, name: str) -> np.ndarray | None:
        entries = {e.name: e for e in self._graph(model).entries}
        entry = entries.get(name)
        for _ in range(3):  # the layer, or a convolution behind its BatchNorm / activation
            if entry is None:
                return None
            found = _conv_kernel(entry.layer)
            if found is not None:
                return found
            if type(entry.layer).__name__ not in _LOOKED_THROUGH or len(entry.inputs) != 1:
                return None
            entry = entries.get(entry.inputs[0])
        return None

    def inlined(self, model: Any) -> Any:
        """`model` with the layers of its nested models called one by one (the same layer objects, so
        the same weights): one flat functional model for converters that read a single graph. The
        model itself when nothing is nested."""
        from tensorflow import keras

        if not any(_is_graph_model(layer) for layer in model.layers):
            return model
        graph = self._graph(model)
        return keras.Model(graph.inputs, graph.outputs, name=model.name)

    def input_info(self, model: Any) -> InputInfo:
        return self.inputs_info(model)[0]

    def inputs_info(self, model: Any) -> list[InputInfo]:
        names = getattr(model, "input_names", None) or [t.name.split(":")[0] for t in model.inputs]
        ranges = _value_ranges(model)
        out = []
        for name, tensor in zip(names, model.inputs):
            shape = (None, *(None if d is None else int(d) for d in tensor.shape[1:]))
            dtype = tensor.dtype.name
            value_range = ranges.get(id(tensor))
            if value_range is None and (dtype == "bool" or ("mask" in name.lower() and dtype.startswith("int"))):
                value_range = (0, 2)
            out.append(InputInfo(name=name, shape=shape, dtype=dtype, layout=layout_for_rank(len(shape)),
                                 value_range=value_range))
        return out

    # ---------------------------------------------------------------- running
    def run(self, model: Any, x: np.ndarray | dict, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        infos = self.inputs_info(model)
        arrays = input_arrays(x, infos, self._describe(model))
        graph = self._graph(model)
        chosen = pick_layers([e.name for e in graph.entries], layers, self._describe(model))
        key = (id(model), tuple(chosen))
        if key not in self._captures:
            from tensorflow import keras

            by_name = {e.name: e.tensor for e in graph.entries}
            self._captures[key] = _Capture(keras.Model(graph.inputs, [by_name[n] for n in chosen]))
        outputs = self._captures[key]([arrays[info.name].astype(info.dtype, copy=False) for info in infos])
        # np.asarray shares the memory of a CPU tensor: no copy
        return {name: np.asarray(t) for name, t in zip(chosen, outputs)}


def _value_ranges(model: Any) -> dict[int, tuple[int, int]]:
    """{id(input tensor): [0, input_dim)} for inputs that feed an Embedding layer."""
    ranges = {}
    inputs = {id(t) for t in model.inputs}
    for layer in model.layers:
        if type(layer).__name__ != "Embedding":
            continue
        for node in layer._inbound_nodes:
            for tensor in node.keras_inputs:
                if id(tensor) in inputs:
                    ranges[id(tensor)] = (0, int(layer.input_dim))
    return ranges


_LOOKED_THROUGH = {"BatchNormalization", "Activation", "ReLU"}


def _conv_kernel(layer: Any) -> np.ndarray | None:
    """A Conv/DepthwiseConv layer's kernel as (out, in per group, *spatial); None for other layers."""
    op = type(layer).__name__
    if op in ("Conv1D", "Conv2D", "Conv3D"):
        w = layer.kernel.numpy()  # (*spatial, in, out)
        n = w.ndim
        return np.ascontiguousarray(w.transpose(n - 1, n - 2, *range(n - 2)))
    if op == "DepthwiseConv2D":
        w = layer.depthwise_kernel.numpy()  # (kh, kw, in, multiplier): output channel = in * multiplier + m
        kh, kw, c, m = w.shape
        return np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))
    return None


def _application_layers() -> dict:
    """The keras.applications layers that Keras 2.12 cannot load by name (ConvNeXt's: unregistered)."""
    from keras.applications import convnext

    return {name: getattr(convnext, name) for name in ("LayerScale", "StochasticDepth") if hasattr(convnext, name)}


def _check_built(model: Any, where: str) -> None:
    if not getattr(model, "inputs", None):
        raise InputFileError(f"{where}: the Keras model has no defined inputs (a subclassed or never-built model); "
                             "give a functional or Sequential model built on an Input")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# ---------------------------------------------------------------- walking the graph
def _is_graph_model(layer: Any) -> bool:
    from tensorflow import keras

    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def _calls(model: Any) -> list:
    """The model's layer calls (Keras nodes) in topological order, input layers left out: by
    depth, and within a depth in the order of model.layers, then of the calls."""
    position = {id(layer): i for i, layer in enumerate(model.layers)}
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        nodes += sorted(model._nodes_by_depth[depth],
                        key=lambda n: (position.get(id(n.layer), -1), _inbound_index(n)))
    return [n for n in nodes if not n.is_input]


def _inbound_index(node: Any) -> int:
    return next((i for i, other in enumerate(node.layer._inbound_nodes) if other is node), 0)


def _call_numbers(calls: list) -> dict[int, int]:
    """{id(node): k} where the node is the k-th call (from 0) of its layer in this model, in the order
    the calls were made (the order TensorFlow numbers their ops: Relu, Relu_1...)."""
    by_layer: dict[int, list] = {}
    for node in calls:
        by_layer.setdefault(id(node.layer), []).append(node)
    return {id(node): k for nodes in by_layer.values() for k, node in enumerate(sorted(nodes, key=_inbound_index))}


class _Same:
    """A tensor_dict value for Node.map_arguments that can be popped any number of times."""

    def __init__(self, value: Any):
        self.value = value

    def pop(self) -> Any:
        return self.value


def _trace_graph(model: Any) -> _Graph:
    """The capturable tensors of `model`. Without nested models they are the model's own layer
    outputs. With nested models, the model is re-traced on fresh inputs, calling the layers of
    nested models one by one: a nested model called as one layer keeps its inner tensors in a
    graph of its own, which a capture model over the outer inputs cannot reach."""
    from tensorflow import keras

    entries: list[_Entry] = []
    if not any(_is_graph_model(layer) for layer in model.layers):
        outputs = _walk(model, None, "", entries, {})
        return _Graph(entries, list(model.inputs), outputs)
    fresh = [keras.Input(type_spec=t.type_spec, name=t.name.split(":")[0]) for t in model.inputs]
    outputs = _walk(model, fresh, "", entries, {})
    return _Graph(entries, fresh, outputs)


def _walk(model: Any, inputs: list | None, prefix: str, entries: list[_Entry], producer: dict) -> list:
    """Append the entries of `model`'s calls to `entries`; return its output tensors.
    inputs None: take the model's own tensors; else call every layer again on `inputs`."""
    import tensorflow as tf

    tensors = None if inputs is None else {str(id(k)): _Same(v) for k, v in zip(model.inputs, inputs)}
    calls = _calls(model)
    number = _call_numbers(calls)
    for node in calls:
        if tensors is None:
            args, kwargs, outputs = None, None, node.outputs
            flat_in = node.keras_inputs
        elif all(t_id in tensors for t_id in node.flat_input_ids):
            args, kwargs = node.map_arguments(tensors)
            flat_in = tf.nest.flatten((args, kwargs))
        else:
            continue  # a call that does not descend from the model's inputs
        layer = node.layer
        name = prefix + layer.name + (f"@{number[id(node)]}" if number[id(node)] else "")
        if tensors is not None and _is_graph_model(layer):
            outputs = _walk(layer, tf.nest.flatten(args), name + "/", entries, producer)
            outputs = outputs[0] if len(outputs) == 1 else outputs
        else:
            if tensors is not None:
                outputs = layer(*args, **kwargs)
            inputs_of = [producer[id(t)] for t in flat_in if id(t) in producer]
            flat_out = tf.nest.flatten(outputs)
            names = [name] if len(flat_out) == 1 else [f"{name}:{i}" for i in range(len(flat_out))]
            for out_name, tensor in zip(names, flat_out):
                entries.append(_Entry(out_name, layer, tensor, inputs_of))
                producer[id(tensor)] = out_name
        if tensors is not None:
            for k, v in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
                tensors[str(id(k))] = _Same(v)
    if tensors is None:
        return list(model.outputs)
    return [tensors[str(id(t))].pop() for t in model.outputs]


# ---------------------------------------------------------------- describing layers
def _activation_name(act: Any) -> str | None:
    if act is None:
        return None
    if isinstance(act, str):
        return act
    name = getattr(act, "__name__", None) or getattr(act, "name", None)
    return name if isinstance(name, str) else type(act).__name__


def _plain(value: Any) -> Any:
    """`value` as plain Python (lists, not tuples or TensorFlow's ListWrapper), or None when it is not data."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None for i in items) else items
    return None


def _kinds(layer: Any, op: str, activation: str | None) -> list[str]:
    if op == "Activation":
        return [_ACTIVATION_KINDS.get(activation, "act")]
    if op == "ReLU":
        plain = not layer.negative_slope and not layer.threshold
        if plain and layer.max_value is not None and float(layer.max_value) == 6.0:
            return ["relu6"]
        return ["relu"] if plain and layer.max_value is None else ["act"]
    if op == "TFOpLambda":
        return [_TF_OP_KINDS.get(getattr(layer, "symbol", ""), "other")]
    kinds = list(_KINDS.get(op, ["other"]))
    if op in _ACTIVATED and activation and activation != "linear":
        kinds.append(_ACTIVATION_KINDS.get(activation, "act"))
    return kinds


def _layer_info(entry: _Entry) -> LayerInfo:
    layer, op = entry.layer, type(entry.layer).__name__
    shape = (None, *(None if d is None else int(d) for d in entry.tensor.shape[1:]))
    activation = _activation_name(getattr(layer, "activation", None))
    attrs = {key: _plain(getattr(layer, key, None)) for key in _ATTRS}
    attrs = {key: value for key, value in attrs.items() if value is not None}
    if "kernel_size" in attrs:
        attrs["kernel"] = attrs["kernel_size"]
    if activation:
        attrs["activation"] = activation
    channels_first = attrs.get("data_format") == "channels_first"
    return LayerInfo(name=entry.name, op=op, shape=shape, layout=layout_for_rank(len(shape), channels_first),
                     kinds=_kinds(layer, op, activation), inputs=list(entry.inputs), attrs=attrs)
