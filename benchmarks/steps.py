"""Timed steps run inside framework workers by benchmarks/run.py (each imports one framework)."""
from __future__ import annotations

import time

import numpy as np


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def keras_capture_vs_plain(model_path: str, batch: int, repeats: int = 5) -> dict:
    """Plain forward vs xvalidate's capture-all on the same Keras model and input, in one process."""
    from xvalidate.registry import get_adapter

    adapter = get_adapter("keras")
    model = adapter.load(model_path)
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(model.input_shape[1:])).astype("float32")
    plain = lambda: model(x, training=False).numpy()  # noqa: E731
    capture = lambda: adapter.run(model, x)  # noqa: E731
    plain(), capture()  # build and warm up both
    outputs = capture()
    return {"plain_s": _best(plain, repeats), "capture_s": _best(capture, repeats), "layers": len(outputs),
            "bytes": int(sum(a.nbytes for a in outputs.values()))}


def keras_per_layer_method(model_path: str, sample: int = 8, repeats: int = 1) -> dict:
    """The seed's method: for each layer a sub-model Model(inputs, layer.output) and predict().
    Times `sample` evenly spaced layers and extrapolates to every layer."""
    from tensorflow import keras

    model = keras.models.load_model(model_path, compile=False)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    x = np.random.default_rng(0).standard_normal((1,) + tuple(model.input_shape[1:])).astype("float32")
    picked = [layers[int(i)] for i in np.linspace(0, len(layers) - 1, sample)]
    times = []
    for layer in picked:
        t = time.perf_counter()
        sub = keras.Model(inputs=model.input, outputs=layer.output)
        sub.predict(x, verbose=0)
        times.append(time.perf_counter() - t)
    per_layer = float(np.mean(times))
    return {"sampled_layers": sample, "per_layer_s": per_layer, "layers": len(layers),
            "extrapolated_s": per_layer * len(layers)}


def timed_plain_forward(adapter_name: str, source: str, x_shape: list[int], repeats: int = 3) -> float:
    """Best time of a forward pass that captures only the final output (the adapter's own run)."""
    from xvalidate.registry import get_adapter

    adapter = get_adapter(adapter_name)
    model = adapter.load(source)
    x = np.random.default_rng(0).standard_normal(x_shape).astype("float32")
    last = [adapter.layers(model)[-1].name]
    adapter.run(model, x, last)
    return _best(lambda: adapter.run(model, x, last), repeats)


def capture_vs_plain(adapter_name: str, source: str, x_shape: list[int], repeats: int = 5) -> dict:
    """The adapter capturing every layer vs capturing only the final output, same model and input."""
    from xvalidate.registry import get_adapter

    adapter = get_adapter(adapter_name)
    model = adapter.load(source)
    x = np.random.default_rng(0).standard_normal(x_shape).astype("float32")
    last = [adapter.layers(model)[-1].name]
    every = adapter.run(model, x)
    adapter.run(model, x, last)
    plain = _best(lambda: adapter.run(model, x, last), repeats)
    adapter.run(model, x)
    capture = _best(lambda: adapter.run(model, x), repeats)
    return {"plain_s": plain, "capture_s": capture, "layers": len(every),
            "bytes": int(sum(a.nbytes for a in every.values()))}
