"""save_capture(): run one model in its worker, one chunk of the batch at a time, into a `.xvr` file."""
from __future__ import annotations

import os
import platform
import socket
import sys
import time
from typing import Any, Sequence

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
    the next runs. Returns a summary: path, samples, tensors, bytes, chunks, seconds."""
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
            saved = writer.finish({
                "adapter": adapter, "layout": get_adapter(adapter).layout, "model": _describe(model),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "input": input_desc,
                "layers": [info.to_dict() for info in layer_infos],
                "environment": environment(), "versions": _versions(adapter),
            })
    return {"path": saved, "samples": writer.samples, "tensors": len(writer.layers), "bytes": writer.nbytes,
            "chunks": len(writer.chunks), "seconds": {"run": run_s, "total": time.perf_counter() - t0}}


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


def environment() -> dict[str, Any]:
    """The machine and interpreter a result was captured on."""
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "hostname": socket.gethostname(), "byteorder": sys.byteorder}
