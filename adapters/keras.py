"""Keras adapter (TensorFlow 2 Keras): .h5 / .keras files and in-memory keras.Model objects.

Capture: one multi-output keras.Model over the outputs of every asked layer, built once per
(model, layer set) and called once per batch. Nested models are flattened: their inner
layers are named "outer/inner" and captured through the nodes that connect them to the
outer graph. A layer with several outputs gives "name:0", "name:1"... Input layers are
not captured. Only a layer's first call inside the model is captured (shared layers).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import check_input, layout_for_rank, pick_layers

_KINDS = {
    "Conv1D": ["conv"], "Conv2D": ["conv"], "Conv3D": ["conv"], "Conv2DTranspose": ["conv"],
    "Conv1DTranspose": ["conv"], "Conv3DTranspose": ["conv"], "DepthwiseConv2D": ["dwconv"],
    "DepthwiseConv1D": ["dwconv"], "SeparableConv2D": ["dwconv", "conv"], "SeparableConv1D": ["dwconv", "conv"],
    "Dense": ["dense"], "BatchNormalization": ["bn"], "LayerNormalization": ["other"],
    "MaxPooling1D": ["maxpool"], "MaxPooling2D": ["maxpool"], "MaxPooling3D": ["maxpool"],
    "AveragePooling1D": ["avgpool"], "AveragePooling2D": ["avgpool"], "AveragePooling3D": ["avgpool"],
    "GlobalAveragePooling1D": ["gpool"], "GlobalAveragePooling2D": ["gpool"], "GlobalAveragePooling3D": ["gpool"],
    "GlobalMaxPooling1D": ["gpool"], "GlobalMaxPooling2D": ["gpool"], "GlobalMaxPooling3D": ["gpool"],
    "Flatten": ["flatten"], "Reshape": ["reshape"], "Permute": ["other"],
    "Add": ["add"], "Subtract": ["other"], "Multiply": ["mul"], "Average": ["other"], "Maximum": ["other"],
    "Concatenate": ["concat"], "ZeroPadding1D": ["pad"], "ZeroPadding2D": ["pad"], "ZeroPadding3D": ["pad"],
    "Dropout": ["identity"], "SpatialDropout1D": ["identity"], "SpatialDropout2D": ["identity"],
    "GaussianNoise": ["identity"], "GaussianDropout": ["identity"], "AlphaDropout": ["identity"],
    "ActivityRegularization": ["identity"], "Softmax": ["softmax"], "LeakyReLU": ["act"], "PReLU": ["act"],
    "ELU": ["act"], "ThresholdedReLU": ["act"],
}
_ACTIVATION_KINDS = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid",
                     "tanh": "tanh", "softmax": "softmax", "swish": "swish", "silu": "swish"}
_ATTRS = ("kernel_size", "strides", "padding", "dilation_rate", "filters", "units", "pool_size", "epsilon",
          "axis", "use_bias", "data_format", "depth_multiplier", "max_value", "momentum", "center", "scale")


def _activation_name(act: Any) -> str | None:
    if act is None:
        return None
    if isinstance(act, str):
        return act
    name = getattr(act, "__name__", None) or getattr(act, "name", None)
    return name if isinstance(name, str) else type(act).__name__


class KerasAdapter(Adapter):
    name = "keras"
    layout = "NHWC"
    extensions = (".h5", ".hdf5", ".keras")

    def __init__(self) -> None:
        self._capture_models: dict[tuple, Any] = {}
        self._entries: dict[int, list] = {}
        self._sources: dict[int, str] = {}

    # ---------------------------------------------------------------- loading
    def owns(self, obj: Any) -> bool:
        return any(c.__module__.split(".")[0] in ("keras", "tensorflow") and c.__name__ in ("Model", "Functional", "Sequential")
                   for c in type(obj).__mro__)

    def load(self, source: Any) -> Any:
        if self.owns(source):
            return source
        path = Path(source)
        if not path.exists():
            raise InputFileError(f"{path}: no such model file")
        if not path.name.lower().endswith(self.extensions):
            raise InputFileError(f"{path}: unknown extension for a Keras model; expected {', '.join(self.extensions)}")
        from tensorflow import keras

        try:
            model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:  # h5py, zipfile and keras raise many types for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputFileError(f"{path}: not a readable Keras model ({first[:200]})") from None
        if not getattr(model, "inputs", None):
            raise InputFileError(f"{path}: the Keras model has no defined inputs (a subclassed model that was never "
                                 "built on an Input); save a functional or Sequential model")
        self._sources[id(model)] = str(path)
        return model

    def release(self, model: Any) -> None:
        key = id(model)
        self._entries.pop(key, None)
        self._sources.pop(key, None)
        for cached in [k for k in self._capture_models if k[0] == key]:
            del self._capture_models[cached]

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        path = Path(directory) / f"{model.name or 'model'}.h5"
        try:
            model.save(str(path))
        except Exception:  # layers that h5 cannot describe: the .keras format can
            path = path.with_suffix(".keras")
            model.save(str(path))
        return str(path)

    # ---------------------------------------------------------------- graph
    def _describe(self, model: Any) -> str:
        return self._sources.get(id(model), f"keras model {model.name!r}")

    def _all_entries(self, model: Any) -> list:
        """[(name, layer, output tensor, inbound layer names)] in topological order, and the
        input tensors the outputs are computed from."""
        if id(model) not in self._entries:
            if any(_is_graph_model(layer) for layer in model.layers):
                self._entries[id(model)] = _inline(model)
            else:
                self._entries[id(model)] = (list(_walk(model)), model.inputs)
        return self._entries[id(model)][0]

    def layers(self, model: Any) -> list[LayerInfo]:
        out = []
        for name, layer, tensor, inputs in self._all_entries(model):
            shape = tuple(None if d is None else int(d) for d in tensor.shape)
            kinds = list(_KINDS.get(type(layer).__name__, ["other"]))
            act = _activation_name(getattr(layer, "activation", None)) if hasattr(layer, "activation") else None
            if type(layer).__name__ == "Activation":
                kinds = [_ACTIVATION_KINDS.get(act, "act")]
            elif type(layer).__name__ == "ReLU":
                kinds = ["relu6" if getattr(layer, "max_value", None) == 6 else "relu"]
            elif act and act != "linear":
                kinds.append(_ACTIVATION_KINDS.get(act, "act"))
            config = {}
            for key in _ATTRS:
                value = getattr(layer, key, None)
                if isinstance(value, (int, float, str, bool, tuple, list)) and not callable(value):
                    config[key] = list(value) if isinstance(value, (tuple, list)) else value
            if "kernel_size" in config:
                config["kernel"] = config["kernel_size"]
            if act:
                config["activation"] = act
            data_format = config.get("data_format", "channels_last")
            out.append(LayerInfo(name=name, op=type(layer).__name__, shape=shape,
                                 layout=layout_for_rank(len(shape), channels_first=data_format == "channels_first"),
                                 kinds=kinds, inputs=inputs, attrs=config))
        return out

    def input_info(self, model: Any) -> InputInfo:
        if len(model.inputs) != 1:
            raise InputShapeError(f"{self._describe(model)}: the model has {len(model.inputs)} inputs; "
                                  "xvalidate compares single-input models")
        tensor = model.inputs[0]
        shape = tuple(None if d is None else int(d) for d in tensor.shape)
        name = getattr(model, "input_names", None) or [tensor.name]
        return InputInfo(name=name[0], shape=shape, dtype=tensor.dtype.name, layout=layout_for_rank(len(shape)))

    # ---------------------------------------------------------------- running
    def run(self, model: Any, x: np.ndarray, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        check_input(x, self.input_info(model).shape, self._describe(model))
        entries = self._all_entries(model)
        chosen = pick_layers([e[0] for e in entries], layers, self._describe(model))
        key = (id(model), tuple(chosen))
        if key not in self._capture_models:
            from tensorflow import keras

            by_name = {e[0]: e[2] for e in entries}
            inputs = self._entries[id(model)][1]
            self._capture_models[key] = keras.Model(inputs, [by_name[n] for n in chosen])
        capture = self._capture_models[key]
        outputs = capture(x.astype(self.input_info(model).dtype, copy=False), training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return {name: np.asarray(t) for name, t in zip(chosen, outputs)}


def _is_graph_model(layer: Any) -> bool:
    from tensorflow import keras
    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def _outputs(name: str, layer: Any, output: Any, inputs: list[str]):
    if isinstance(output, (list, tuple)):
        for i, tensor in enumerate(output):
            yield f"{name}:{i}", layer, tensor, inputs
    else:
        yield name, layer, output, inputs


def _walk(model: Any):
    """Entries of a model without nested models, from each layer's first call."""
    from tensorflow import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = layer.inbound_nodes[0]
        inbound = node.inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        inputs = [l.name for l in inbound if not isinstance(l, keras.layers.InputLayer)]
        yield from _outputs(layer.name, layer, layer.get_output_at(0), inputs)


class _Same:
    """A tensor_dict value for Node.map_arguments that can be popped any number of times."""

    def __init__(self, value: Any):
        self.value = value

    def pop(self) -> Any:
        return self.value


def _inline(model: Any) -> tuple[list, list]:
    """Re-trace `model` on fresh inputs, calling the layers of nested models one by one, so that
    every inner output is a tensor of one flat graph (a nested model called as one layer keeps
    its inner tensors in a graph of its own)."""
    import tensorflow as tf
    from tensorflow import keras

    fresh = [keras.Input(type_spec=t.type_spec, name=t.name.split(":")[0]) for t in model.inputs]
    entries: list = []
    producer: dict[int, str] = {}
    _trace(model, fresh, "", entries, producer, tf)
    return entries, fresh


def _trace(model: Any, inputs: list, prefix: str, entries: list, producer: dict, tf: Any) -> list:
    tensors = {str(id(k)): _Same(v) for k, v in zip(model.inputs, inputs)}  # Node ids are str(id(tensor))
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(t_id not in tensors for t_id in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            layer = node.layer
            if _is_graph_model(layer):
                outs = _trace(layer, tf.nest.flatten(args), prefix + layer.name + "/", entries, producer, tf)
                outs = outs[0] if len(outs) == 1 else outs
            else:
                outs = layer(*args, **kwargs)
                inputs_of = [producer[id(t)] for t in tf.nest.flatten(args) if id(t) in producer]
                made = list(_outputs(prefix + layer.name, layer, outs, inputs_of))
                entries += made
                for name, _, tensor, _ in made:
                    producer[id(tensor)] = name
            for k, v in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outs)):
                tensors[str(id(k))] = _Same(v)
    return [tensors[str(id(t))].pop() for t in model.outputs]
