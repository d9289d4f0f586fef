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


def _interleaved(fns: dict, rounds: int, clock=time.perf_counter) -> dict:
    """Best time of each function over `rounds` rounds, the functions taking turns within a round
    (on a shared machine a burst of load then hits every function alike)."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = clock()
            fn()
            best[name] = min(best[name], clock() - t)
    return best


def _plain_keras(model, x: np.ndarray) -> dict:
    """A user's fastest plain forwards of a Keras model: the model under tf.function, and predict."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
    compiled = tf.function(lambda t: model(t, training=False), input_signature=[spec])
    return {"tf.function": lambda: compiled(x).numpy(),
            "predict": lambda: model.predict(x, batch_size=len(x), verbose=0)}


def _plain_onnx(path: str, x: np.ndarray) -> dict:
    """onnxruntime on the original model with every graph optimization, the final output only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    return {"onnxruntime, all optimizations": lambda: session.run(None, feed)}


def _plain_mxnet(symbol: str, x: np.ndarray) -> dict:
    """The exported model as a SymbolBlock, hybridized with static_alloc and static_shape, the final output."""
    import mxnet as mx

    prefix = symbol[: -len("-symbol.json")]
    block = mx.gluon.SymbolBlock.imports(symbol, ["data"], prefix + "-0000.params")
    block.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.array(x)
    return {"hybridized static_alloc": lambda: block(data).asnumpy()}


def capture_vs_fastest_plain(adapter_name: str, source: str, shape: list[int], rounds: int = 10,
                             clock: str = "perf_counter", plain_only: bool = False) -> dict:
    """The adapter capturing every layer, in its steady state, against a user's fastest plain forward
    of the same model on the same input, in this process. Keras: the capture after the adapter has
    switched to its traced graph function (it does so once its eager calls have cost what tracing
    costs), against the model under tf.function and predict. `plain_only`: the plain forwards alone
    ({"plains": {name: seconds}})."""
    from xvalidate.registry import get_adapter

    adapter = get_adapter(adapter_name)
    model = adapter.load(source)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    plains = {"keras": lambda: _plain_keras(model, x), "onnx": lambda: _plain_onnx(source, x),
              "mxnet": lambda: _plain_mxnet(source, x)}[adapter_name]()
    if plain_only:
        for fn in plains.values():
            fn()
        return {"plains": _interleaved(plains, rounds, getattr(time, clock))}
    eager_calls = 1
    outputs = adapter.run(model, x)
    if adapter_name == "keras":
        (capture,) = adapter._captures.values()
        while capture.function is None:
            adapter.run(model, x)
            eager_calls += 1
        plains["eager call"] = lambda: model(x, training=False).numpy()
    layers, nbytes = len(outputs), int(sum(a.nbytes for a in outputs.values()))
    del outputs
    timed = {"capture": lambda: adapter.run(model, x), **plains}
    if adapter_name == "mxnet":  # the capture's forward pass alone, its outputs left where MXNet wrote them
        timed["forward only"] = lambda: _mxnet_forward_only(model)
    for fn in timed.values():
        fn()
    best = _interleaved(timed, rounds, getattr(time, clock))
    forward_only = best.pop("forward only", None)
    capture = best.pop("capture")
    eager = best.pop("eager call", None)
    fastest = min(best, key=best.get)
    return {"capture_s": capture, "plain_s": best[fastest], "plain": fastest, "plains": best, "eager_s": eager,
            "forward_only_s": forward_only, "eager_calls": eager_calls, "layers": layers, "bytes": nbytes}


def _mxnet_forward_only(model) -> None:
    import mxnet as mx

    (executor,) = model.executors.values()
    executor.forward(is_train=False)
    mx.nd.waitall()


def _one_thread_onnxruntime() -> None:
    """Sessions made from here on run on one thread (onnxruntime reads no variable for it)."""
    import onnxruntime as ort

    made = ort.SessionOptions

    def one_thread(*args):
        options = made(*args)
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return options

    ort.SessionOptions = one_thread


if __name__ == "__main__":  # benchmarks/run.py runs one measurement per process: steps.py '{json arguments}'
    import json
    import os
    import sys

    arguments = json.loads(sys.argv[1])
    if arguments["adapter_name"] == "onnx" and os.environ.get("OMP_NUM_THREADS") == "1":
        _one_thread_onnxruntime()
    print(json.dumps(capture_vs_fastest_plain(**arguments)))
