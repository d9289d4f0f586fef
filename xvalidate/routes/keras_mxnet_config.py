"""A tf.keras 2.12 model config made readable by Keras 2.2.4 (keras-mxnet), or a one-line error
naming the first layer it cannot take.

Run in the keras-mxnet environment (shipped there: numpy and the standard library besides keras).
Per layer: the class must exist in keras 2.2.4's `keras.layers`; initializers, regularizers and
constraints are dropped (the weights come from the h5 file, and inference does not use the
others); an argument Keras 2.2.4 does not take is dropped when it holds the value that means
what Keras 2.2.4 does anyway (`groups=1`, `keepdims=False`...), and is refused otherwise; an
activation must be one Keras 2.2.4 has.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

# arguments tf.keras 2.12 writes that Keras 2.2.4 lacks, and the values that change nothing
NEUTRAL: dict[str, tuple] = {
    "groups": (1,), "keepdims": (False,), "ragged": (False,), "sparse": (False,), "synchronized": (False,),
    "type_spec": (None,), "seed": (None,), "noise_shape": (None,), "dtype": ("float32",),
}
DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# keyword arguments every Keras 2.2.4 layer takes (keras.engine.base_layer.Layer.__init__)
LAYER_KWARGS = {"input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable", "weights",
                "input_dtype"}
MODEL_CLASSES = ("Functional", "Model")

Unsupported = Callable[[str, str, str], Exception]  # (layer, class, reason) -> the error to raise


def translate(config: dict, unsupported: Unsupported) -> dict:
    """`{"class_name", "config"}` of a tf.keras functional model -> the same for Keras 2.2.4's
    `Model.from_config`. Raises `unsupported(layer, class, reason)` for a layer it cannot take."""
    import keras

    if config.get("class_name") not in MODEL_CLASSES:
        raise unsupported(config.get("config", {}).get("name", "?"), config.get("class_name", "?"),
                          "only functional models are read")
    body = dict(config["config"])
    body["layers"] = [_layer(layer, keras, unsupported) for layer in body["layers"]]
    return {"class_name": "Model", "config": body}


def _layer(layer: dict, keras: Any, unsupported: Unsupported) -> dict:
    kind, name = layer["class_name"], layer.get("name") or layer["config"].get("name", "?")
    if kind in MODEL_CLASSES:
        return {**translate(layer, unsupported), "name": layer.get("name"), "inbound_nodes": layer["inbound_nodes"]}
    cls = getattr(keras.layers, kind, None)
    if not isinstance(cls, type) or kind == "Lambda":  # a Lambda carries TensorFlow code
        raise unsupported(name, kind, f"keras-mxnet (Keras 2.2.4) has no {kind} layer")
    config = {k: v for k, v in layer["config"].items() if not k.endswith(DROPPED_SUFFIXES)}
    accepted = _arguments(cls) | LAYER_KWARGS
    for key in list(config):
        value = config[key]
        if key == "dtype" and isinstance(value, dict):  # a dtype policy
            value = config[key] = value.get("config", {}).get("name", value)
        if key in accepted and key != "dtype":
            continue
        if value in NEUTRAL.get(key, ()):
            if key not in accepted:
                del config[key]
            continue
        raise unsupported(name, kind, f"Keras 2.2.4 has no argument {key}={value!r}")
    activation = config.get("activation")
    if isinstance(activation, str) and not callable(getattr(keras.activations, activation, None)):
        raise unsupported(name, kind, f"Keras 2.2.4 has no activation {activation!r}")
    if not (activation is None or isinstance(activation, str)):
        raise unsupported(name, kind, f"activation {activation!r} is not a built-in one")
    if kind == "BatchNormalization" and isinstance(config.get("axis"), list):
        if len(config["axis"]) != 1:
            raise unsupported(name, kind, f"Keras 2.2.4 normalizes over one axis, not {config['axis']}")
        config["axis"] = config["axis"][0]
    return {**layer, "config": config}


def _arguments(cls: type) -> set[str]:
    """The keyword arguments `cls.__init__` and the initializers it passes them to take."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names.update(p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break  # it passes nothing further up
    return names
