"""Steps of the route keras -> tflite: the conversion (in the keras worker) and the name hints (in the
tflite worker)."""
from __future__ import annotations

import time
from typing import Iterable

from xvalidate.errors import ConversionError

ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "softmax", "act")


def keras_to_tflite(source: str, tflite_path: str) -> dict:
    """Convert the Keras model at `source` (loaded as the keras adapter loads it) to a float32 .tflite."""
    import tensorflow as tf

    from xvalidate.registry import get_adapter

    model = get_adapter("keras").load(source)
    start = time.perf_counter()
    try:
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as exc:  # the converter raises whatever fails in it
        line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{source}: TFLiteConverter failed: {type(exc).__name__}: {line}") from None
    with open(tflite_path, "wb") as f:
        f.write(data)
    return {"tflite": tflite_path, "seconds": time.perf_counter() - start}


def tflite_hints(tflite_path: str, keras_names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{tflite tensor: (Keras layer, "name" | "fused")}. A tensor name lists the TensorFlow ops it
    stands for, the last computed first (`model/conv1_relu/Relu;model/conv1_bn/FusedBatchNormV3;...`);
    the Keras layer is the path part of the first that names one. Several layers: "fused"."""
    from xvalidate.registry import get_adapter

    adapter = get_adapter("tflite")
    known = set(keras_names)
    infos = adapter.layers(adapter.load(tflite_path))
    hints: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for info in reversed(infos):  # the last tensor of a layer wins
        layers = [_layer(part, known) for part in info.name.split(";")]
        layers = list(dict.fromkeys(layer for layer in layers if layer))
        if layers and layers[0] not in taken:
            taken.add(layers[0])
            hints[info.name] = (layers[0], "fused" if len(layers) > 1 else "name")
    return _through_activations(hints, infos)


def _through_activations(hints: dict, infos: list) -> dict:
    """A layer's activation that the converter made an op of its own, under a name that carries no
    layer (a Dense's softmax becomes `StatefulPartitionedCall:0`): the hint moves to it, "fused"."""
    consumers: dict[str, list] = {}
    for info in infos:
        for name in info.inputs:
            consumers.setdefault(name, []).append(info)
    moved = {}
    for tensor, (layer, how) in hints.items():
        after = consumers.get(tensor, [])
        if len(after) == 1 and after[0].kinds[0] in ACTIVATIONS and after[0].name not in hints:
            moved[after[0].name] = (layer, "fused")
        else:
            moved[tensor] = (layer, how)
    return moved


def _layer(part: str, known: set[str]) -> str | None:
    for piece in reversed(part.split("/")[:-1] or part.split("/")):
        if piece in known:
            return piece
    return None
