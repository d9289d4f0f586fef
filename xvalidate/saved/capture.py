"""save_capture(): run one model in its worker, one chunk of the batch at a time, into a `.xvr` file."""
from __future__ import annotations

import os
import platform
import socket
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

from xvalidate.saved.format import SUFFIX
from xvalidate.saved.writer import ResultWriter


def save_capture(model: Any, path: str | os.PathLike, adapter: str, inputs: Any = None, *,
                 layers: Sequence[str] | None = None, batch: int = 1, seed: int = 0, preprocess: str = "unit",
                 memory_budget: int | None = None, progress: Any = None, trust_model: bool = False) -> dict:
    """Capture every layer (or `layers`) of `model` with adapter `adapter` and save the outputs, the
    input, the layer list and the environment to `path` (a .xvr file, docs/saved-results.md).

    inputs, batch, seed, preprocess: as in `compare` (random data fitting the model when None).
    The batch runs in chunks of at most `memory_budget` bytes of activations, each written before
    the next runs. The parameters the diagnosis may ask of a layer (Adapter.kernel, Adapter.recurrent_weights)
    are saved with the outputs. Returns a summary: path, samples, tensors, bytes (inputs and outputs), chunks,
    parameters (tensors, arrays, bytes), seconds."""
    from xvalidate.api import _budget, _describe, _sources, _trust, _versions
    from xvalidate.errors import OptionError
    from xvalidate.inputs import load_input_batch
    from xvalidate.registry import get_adapter
    from xvalidate.worker import get_worker

    if not str(path).lower().endswith(SUFFIX):
        raise OptionError(f"save: {path}: expected a file name ending in {SUFFIX}")
    budget = _budget(memory_budget)
    t0 = time.perf_counter()
    example = inputs if isinstance(inputs, np.ndarray) else None  # what an in-memory model may need to be saved
    with _sources([(adapter, model)], example=example) as (source,):
        _trust(trust_model, adapter)
        worker = get_worker(adapter)
        infos, layer_infos = worker.inputs_info(source), worker.layers(source)
        x, input_desc = load_input_batch(inputs, infos, batch=batch, seed=seed, preprocess=preprocess)
        with ResultWriter(path) as writer:
            writer.add_inputs(x, {info.name: info.to_dict() for info in infos})
            run_s = _write_chunks(writer, worker, source, x, layers, layer_infos, budget, progress)
            t1 = time.perf_counter()
            _write_parameters(writer, worker, source, parameter_layers(layer_infos, writer.layers))
            parameters_s = time.perf_counter() - t1
            saved = writer.finish({
                "adapter": adapter, "layout": get_adapter(adapter).layout, "model": _describe(model),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "input": input_desc,
                "layers": [info.to_dict() for info in layer_infos],
                "environment": environment(), "versions": _versions(adapter),
            })
    return {"path": saved, "samples": writer.samples, "tensors": len(writer.layers), "bytes": writer.nbytes,
            "chunks": len(writer.chunks),
            "parameters": {"tensors": len(writer.parameters), "arrays": writer.parameter_arrays,
                           "bytes": writer.parameter_bytes},
            "seconds": {"run": run_s, "parameters": parameters_s, "total": time.perf_counter() - t0}}


def _write_chunks(writer: ResultWriter, worker: Any, source: str, x: dict[str, np.ndarray],
                  layers: Sequence[str] | None, layer_infos: Sequence, budget: int, progress: Any) -> float:
    """Run the batch `x` one chunk at a time and write each chunk's outputs before the next runs; chunks are
    sized from the layers' shapes, or else from what the first one cost. Returns the seconds spent running."""
    from xvalidate.api import _bytes_per_sample, _chunk_for, _nbytes, _notify
    from xvalidate.inputs import one_or_dict

    n = len(next(iter(x.values())))
    estimate = _bytes_per_sample(layer_infos)
    chunk = _chunk_for(budget, estimate) if estimate else 1
    run_s = 0.0
    start = 0
    while start < n:
        _notify(progress, "run", start, n)
        part = {name: a[start:start + chunk] for name, a in x.items()}
        t1 = time.perf_counter()
        outputs = worker.run(source, one_or_dict(part), list(layers) if layers else None)
        run_s += time.perf_counter() - t1
        writer.add_chunk(outputs)
        size = len(next(iter(part.values())))
        if start == 0 and not estimate:  # size the next chunks from what one sample cost
            chunk = _chunk_for(budget, _nbytes(outputs) / size)
        start += size
        del outputs
    _notify(progress, "run", n, n)
    return run_s


# Kinds of layers that hold parameters an adapter's kernel / recurrent_weights may give ("other": LSTMs and
# any op the adapter does not classify), and how many layers below such a layer an adapter may look for one
# (through a BatchNorm, an activation, a bias Add, the Squeeze after an LSTM).
PARAMETER_KINDS = frozenset({"conv", "dwconv", "dense", "other"})
LOOK_BACK = 4


def parameter_layers(infos: Sequence, captured: Iterable[str]) -> list[str]:
    """The captured tensors that may have parameters: those whose layer, or a layer at most LOOK_BACK layers
    above it, has a PARAMETER_KINDS kind; a tensor the layer list lacks is kept. In capture order."""
    hops: dict[str, float] = {}  # layer -> layers from the nearest one of PARAMETER_KINDS above it (inf: none)
    for info in infos:  # topological order: a layer's inputs come before it
        above = min((hops.get(name, float("inf")) for name in info.inputs), default=float("inf"))
        hops[info.name] = 0 if PARAMETER_KINDS & set(info.kinds) else above + 1
    return [name for name in captured if hops.get(name, 0) <= LOOK_BACK]


def _write_parameters(writer: ResultWriter, worker: Any, source: str, tensors: Sequence[str]) -> None:
    """Ask the worker for the kernel and the recurrent weights of each of `tensors` and save the answers."""
    for name in tensors:
        writer.add_parameters(name, _asked(worker.kernel, source, name),
                              _asked(worker.recurrent_weights, source, name))


def _asked(ask: Any, source: str, name: str) -> Any:
    """`ask(source, name)` when the answer is something the file can hold (an array, or a tuple of arrays
    and None); otherwise, or when the adapter fails to say, None, as a live comparison takes it."""
    from xvalidate.errors import XValidateError

    try:
        value = ask(source, name)
    except XValidateError:
        return None
    if isinstance(value, (tuple, list)):
        arrays = tuple(None if a is None else _numeric(a) for a in value)
        return None if any(a is None and given is not None for a, given in zip(arrays, value)) else arrays
    return None if value is None else _numeric(value)


def _numeric(value: Any) -> np.ndarray | None:
    """`value` when it is a numeric array, else None."""
    return value if isinstance(value, np.ndarray) and value.dtype.kind in "biufc" else None


def environment() -> dict[str, Any]:
    """The machine and interpreter a result was captured on."""
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "hostname": socket.gethostname(), "byteorder": sys.byteorder}
