"""The public entry points: run(), compare(), validate(), compare_routes()."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from xvalidate.core import layout
from xvalidate.core.align import align
from xvalidate.core.comparison import RouteComparison
from xvalidate.core.diff import Differ
from xvalidate.core.hops import locate
from xvalidate.core.report import Report
from xvalidate.core.tolerances import Tolerances
from xvalidate.defaults import DEFAULT_DST, DEFAULT_ROUTES, DEFAULT_SRC, DEFAULT_VIA
from xvalidate.errors import InputFileError, InputShapeError, OptionError
from xvalidate.inputs import load_input_batch, one_or_dict, pair_inputs
from xvalidate.option_checks import check_layer_map_shapes, check_tolerance_names
from xvalidate.registry import get_adapter
from xvalidate.stability import probe
from xvalidate.worker import get_worker
DEFAULT_MEMORY_BUDGET = int(float(os.environ.get("XVALIDATE_MEMORY_BUDGET", 2 * 1024**3)))

# progress(stage, done, total): stages "load", "convert", "run", "diff"
Progress = Callable[[str, int, int], None]


def run(name: str, source: Any, x: np.ndarray | Mapping[str, np.ndarray],
        layers: Sequence[str] | None = None, *, trust_model: bool = False) -> dict[str, np.ndarray]:
    """Outputs of the asked layers (all when None) of a model, captured in ONE forward pass in a
    worker process of adapter `name`. `source`: a model file or an in-memory model. `x`: one
    array, or {input name: array} for a model with several inputs."""
    x = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, Mapping) else np.asarray(x)
    example = next(iter(x.values()), None) if isinstance(x, dict) else x
    with _sources([(name, source)], example=example) as (path,):
        _trust(trust_model, name)
        return get_worker(name).run(path, x, layers)


def compare(src_model: Any, dst_model: Any, src: str = DEFAULT_SRC, dst: str = DEFAULT_DST, inputs: Any = None,
            layer_map: Mapping[str, str] | str | None = None, atol: float | None = None, rtol: float | None = None,
            tolerances: Mapping[str, Any] | None = None, *, batch: int = 1, seed: int = 0, preprocess: str = "unit",
            memory_budget: int | None = None, progress: Progress | None = None, trust_model: bool = False,
            hints: Mapping[str, tuple[str, str]] | None = None, isolate: bool = False) -> Report:
    """Compare two models the user already has, layer by layer, on the same input.

    inputs: None (seeded random data that fits each source input, `batch` samples), an array,
    a .npy file or image files; for several inputs a dict {input name: array} or a .npz file.
    Always in the SOURCE model's layout; the destination gets them in its own layout, its
    inputs paired with the source's by name, then by position. layer_map: {src layer: dst layer} or a JSON file of one.
    atol/rtol: global tolerances; tolerances: per-layer ones ({name or pattern: atol or
    {"atol":, "rtol":}, "default": ...}). hints: a conversion's name correspondence
    ({dst tensor: (src layer, "name" | "fused")}, `Conversion.hints`), to compare a converted model
    that was edited afterwards the way `validate` compares it. isolate: also run every destination
    layer on the source's values of its paired inputs, so that each faulty layer shows on its own
    (`report.roots` then lists every layer whose isolated error fails).
    Either model may be a saved result (a .xvr file from `save_capture` / `xvalidate capture
    --save`): its adapter is read from the file (`src`/`dst` do not apply to it) and the comparison
    runs on the input saved with it (`inputs`, if given, must equal it; `batch`, `seed` do not apply)."""
    tol = Tolerances(atol, rtol, tolerances)
    mapping = _layer_map(layer_map)
    _budget(memory_budget)
    with _sides([(src, src_model), (dst, dst_model)]) as ([(src, src_path), (dst, dst_path)], saved):
        if isolate and "dst" in saved:
            raise OptionError(f"isolate: {dst_path} is a saved result; isolate needs the live destination model")
        live = [name for side, name in (("src", src), ("dst", dst)) if side not in saved]  # run by a worker here
        _trust(trust_model, *live)
        report = _compare_paths(src, src_path, dst, dst_path, inputs, mapping, tol, hints=hints, batch=batch, seed=seed,
                                preprocess=preprocess, memory_budget=memory_budget, progress=progress,
                                names=(_describe(src_model), _describe(dst_model)), isolate=isolate, saved=saved)
    if saved:  # this environment's versions are those of the live side(s) only; each saved side brings its own
        report.meta["versions"] = _versions(*live)
        report.meta["saved"] = {side: result.describe() for side, result in saved.items()}
    return report


def validate(model: Any, src: str = DEFAULT_SRC, dst: str = DEFAULT_DST, via: str = DEFAULT_VIA, inputs: Any = None,
             atol: float | None = None, rtol: float | None = None, tolerances: Mapping[str, Any] | None = None,
             keep: str | None = None, *, cache: bool = True, batch: int = 1, seed: int = 0,
             preprocess: str = "unit", memory_budget: int | None = None, route_options: Mapping | None = None,
             progress: Progress | None = None, trust_model: bool = False, isolate: bool = False,
             hops: bool = True) -> Report:
    """Convert `model` from `src` to `dst` through route `via`, run both, and compare layer by layer.

    keep: a directory to copy the route's artifacts into. cache: reuse a conversion of the same
    model content, route and library versions (see xvalidate.cache). isolate: as in `compare`.
    hops: when the conversion went through an intermediate model (a hub route composing an export
    and an import), also compare source vs intermediate and intermediate vs destination
    (`report.hops`, `report.located`), each model run once per chunk."""
    from xvalidate.cache import convert_cached
    from xvalidate.registry import get_route
    from xvalidate.routes.base import with_input_shape

    tol = Tolerances(atol, rtol, tolerances)
    get_route(via).check(src, dst)  # a wrong option is reported before anything is loaded
    _budget(memory_budget)
    if keep and Path(keep).is_dir() and any(Path(keep).iterdir()):  # never overwrite what is there
        raise OptionError(f"keep: {keep} is not empty; give a new or empty directory")
    _trust(trust_model, src, dst)
    with _sources([(src, model)]) as (src_path,):
        _notify(progress, "convert", 0, 1)
        t0 = time.perf_counter()
        options = with_input_shape(get_route(via), src, dst, src_path, inputs, dict(route_options or {}))
        conversion = convert_cached(via, src_path, src, dst, options, use_cache=cache)
        convert_seconds = time.perf_counter() - t0
        _notify(progress, "convert", 1, 1)
        hub = conversion.intermediate
        through = hub if hops and hub is not None and hub.adapter not in (src, dst) else None
        report = _compare_paths(src, src_path, dst, conversion.dst_source, inputs, {}, tol, hints=conversion.hints,
                                batch=batch, seed=seed, preprocess=preprocess, memory_budget=memory_budget,
                                progress=progress, names=(_describe(model), conversion.dst_source), isolate=isolate,
                                through=through, via=via)
    report.via = via
    report.timings = {"convert": convert_seconds, **report.timings}
    report.meta["cache_hit"] = conversion.cache_hit
    report.meta["conversion_seconds"] = conversion.seconds
    report.meta["versions"] = _versions(src, dst, route=via)
    report.artifacts = dict(conversion.artifacts)
    if keep:
        report.artifacts = _keep_artifacts(conversion.artifacts, keep)
    return report


def compare_routes(model: Any, src: str = DEFAULT_SRC, dst: str = DEFAULT_DST, via: Sequence[str] = DEFAULT_ROUTES,
                   inputs: Any = None, atol: float | None = None, rtol: float | None = None,
                   tolerances: Mapping[str, Any] | None = None, *, cache: bool = True, batch: int = 1,
                   seed: int = 0, progress: Progress | None = None, trust_model: bool = False,
                   **options: Any) -> RouteComparison:
    """Validate the same model through several routes; a route that fails is recorded, not raised."""
    from xvalidate.errors import XValidateError

    reports: dict[str, Report] = {}
    failures: dict[str, str] = {}
    with _sources([(src, model)]) as (src_path,):
        for route in via:
            try:
                reports[route] = validate(src_path, src=src, dst=dst, via=route, inputs=inputs, atol=atol, rtol=rtol,
                                          tolerances=tolerances, cache=cache, batch=batch, seed=seed,
                                          progress=progress, trust_model=trust_model, **options)
            except XValidateError as exc:
                failures[route] = str(exc)
    return RouteComparison(model=_describe(model), src=src, dst=dst, routes=list(via), reports=reports,
                           errors=failures)


# ---------------------------------------------------------------- the comparison loop
def _compare_paths(src: str, src_path: str, dst: str, dst_path: str, inputs: Any, layer_map: Mapping[str, str],
                   tol: Tolerances, *, hints: Mapping | None = None, batch: int, seed: int, preprocess: str,
                   memory_budget: int | None, progress: Progress | None, names: tuple[str, str],
                   isolate: bool = False, through: Any = None, via: str | None = None,
                   saved: Mapping[str, Any] | None = None) -> Report:
    """Compare src vs dst chunk by chunk; with `through` (a routes.base.Intermediate), also source vs
    intermediate and intermediate vs destination on the same captured tensors."""
    saved = saved or {}  # {"src"/"dst": SavedResult}: a saved side answers (and replays its run) from its file
    sides = [_Side(src, src_path, saved.get("src") or get_worker(src)),
             _Side(dst, dst_path, saved.get("dst") or get_worker(dst))]
    if through is not None:
        sides.append(_Side(through.adapter, through.source, get_worker(through.adapter)))
    if isolate and not sides[1].worker.supports_isolation(dst_path):
        raise OptionError(f"isolate is not supported for destination {dst}: its adapter cannot run a layer on "
                          "given input values; compare without isolate")
    timings = {"load": _load_sides(sides, progress)}
    check_tolerance_names({**tol.exact, **dict(tol.patterns)}, sides[0].layers)  # typos fail before any run
    check_layer_map_shapes(layer_map, sides[0].layers, sides[1].layers)
    x, input_desc, input_pairs = _comparison_input(sides, inputs, saved, batch=batch, seed=seed,
                                                   preprocess=preprocess)
    runs = _run_chunks(sides, x, input_pairs, layer_map=layer_map, hints=hints, tol=tol, through=through, via=via,
                       isolate=isolate, budget=_budget(memory_budget), progress=progress)
    rows, roots, finished_hops = _finish_differs(runs, progress)
    timings.update(_run_timings(runs))
    report = Report(src=src, dst=dst, src_model=names[0], dst_model=names[1], **_outcome(rows, roots, runs.alignment),
                    inputs={**input_desc, "chunk": runs.largest}, tolerances=tol.describe(), timings=timings,
                    meta={"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": _versions(src, dst),
                          "layers": {"src": len(sides[0].layers), "dst": len(sides[1].layers)},
                          "outputs": _model_outputs(sides[0].layers, rows)})
    if finished_hops:
        _add_hops(report, sides, (names[0], through.source, names[1]), finished_hops)
    if "src" not in saved:  # a failure the source's own float32 sensitivity explains says so
        stability = probe(report, sides[0].worker, src_path, x, seed)
        if stability is not None:
            report.meta["stability"] = stability
    return report


@dataclass
class _Side:
    """One model of a comparison: its adapter, its file, what runs it (a worker, or a SavedResult), and,
    once loaded, its inputs and layers."""

    adapter: str
    path: str
    worker: Any
    inputs: list = field(default_factory=list)
    layers: list = field(default_factory=list)


@dataclass
class _Runs:
    """What the chunk loop leaves: the Differ of the whole comparison, its pairing (made on the first
    chunk), the hops' [(hop name, Differ, Alignment)], the largest chunk, and seconds spent."""

    differ: Differ | None = None
    alignment: Any = None
    hops: list = field(default_factory=list)
    largest: int = 0
    run_seconds: dict[str, float] = field(default_factory=lambda: {"src": 0.0, "dst": 0.0})
    diff_seconds: float = 0.0


def _load_sides(sides: Sequence[_Side], progress: Progress | None) -> float:
    """Read every side's inputs and layers from its worker, in parallel; return the seconds taken."""
    t0 = time.perf_counter()
    _notify(progress, "load", 0, 1)
    with ThreadPoolExecutor(3) as pool:
        inputs = [pool.submit(side.worker.inputs_info, side.path) for side in sides]
        layers = [pool.submit(side.worker.layers, side.path) for side in sides]
        for side, future in zip(sides, inputs):  # every side's inputs first: their error is the first one raised
            side.inputs = future.result()
        for side, future in zip(sides, layers):
            side.layers = future.result()
    seconds = time.perf_counter() - t0
    _notify(progress, "load", 1, 1)
    return seconds


def _comparison_input(sides: Sequence[_Side], inputs: Any, saved: Mapping[str, Any], *, batch: int, seed: int,
                      preprocess: str) -> tuple[dict[str, np.ndarray], dict, list]:
    """The batch {source input: array} in the source's layout, its description, and for each side after the
    source the (source input, its input) pairs it is fed by. A comparison with a saved side runs on the saved
    input; the destination must accept the batch in its layout (InputShapeError otherwise)."""
    src, dst = sides[0], sides[1]
    if saved:
        from xvalidate.saved.inputs import saved_input
        x, input_desc = saved_input(saved, inputs, src.inputs, dst.inputs, dst.path, preprocess)
    else:
        x, input_desc = load_input_batch(inputs, src.inputs, batch=batch, seed=seed, preprocess=preprocess)
    input_pairs = [pair_inputs(src.inputs, side.inputs, side.path) for side in sides[1:]]
    input_desc["layouts"] = _input_layouts(input_pairs[0])
    for s_info, d_info in input_pairs[0]:
        _check_fits(layout.to_layout(x[s_info.name][:1], s_info.layout, d_info.layout), d_info, dst.path)
    return x, input_desc, input_pairs


def _run_chunks(sides: Sequence[_Side], x: Mapping[str, np.ndarray], input_pairs: Sequence, *,
                layer_map: Mapping[str, str], hints: Mapping | None, tol: Tolerances, through: Any,
                via: str | None, isolate: bool, budget: int, progress: Progress | None) -> _Runs:
    """Run every side on each chunk of the batch (in parallel) and fold the outputs into the Differs, made
    on the first chunk. Chunks are sized from the layers' shapes, or else from what the first one cost."""
    runs = _Runs()
    n, start = len(next(iter(x.values()))), 0
    estimate = _bytes_per_sample_of(sides)  # 0 when shapes are unknown
    chunk = _chunk_for(budget, estimate) if estimate else 1
    with ThreadPoolExecutor(3) as pool:
        while start < n:
            part = {name: a[start:start + chunk] for name, a in x.items()}
            size = len(next(iter(part.values())))
            _notify(progress, "run", start, n)
            outputs = _run_sides(pool, sides, part, input_pairs, runs.run_seconds)
            runs.largest = max(runs.largest, size)
            t1 = time.perf_counter()
            if runs.differ is None:
                _start_differs(runs, sides, outputs, layer_map=layer_map, hints=hints, tol=tol, through=through,
                               via=via)
            runs.differ.add(outputs[0], outputs[1], inputs=part)
            if runs.hops:  # source vs intermediate, intermediate vs destination
                runs.hops[0][1].add(outputs[0], outputs[2])
                runs.hops[1][1].add(outputs[2], outputs[1])
            runs.diff_seconds += time.perf_counter() - t1
            if isolate:
                _add_isolated(runs, sides[1], part, input_pairs[0], outputs[0])
            if start == 0 and not estimate:  # size the next chunks from what one sample cost on every side
                chunk = _chunk_for(budget, sum(_nbytes(out) for out in outputs) / size)
            start += size
            del outputs
    _notify(progress, "run", n, n)
    return runs


def _run_sides(pool: ThreadPoolExecutor, sides: Sequence[_Side], part: Mapping[str, np.ndarray],
               input_pairs: Sequence, seconds: dict[str, float]) -> list[dict[str, np.ndarray]]:
    """Every side's outputs on one chunk, run in parallel: the source on `part`, the others on it under their
    own input names and layouts. Adds each side's run time to `seconds` ("src", "dst", "hub")."""
    futures = [pool.submit(_timed, sides[0].worker.run, sides[0].path, one_or_dict(part))]
    futures += [pool.submit(_timed, side.worker.run, side.path, one_or_dict(_to_dst(part, pairs)))
                for side, pairs in zip(sides[1:], input_pairs)]
    outputs = []
    for key, future in zip(("src", "dst", "hub"), futures):
        out, took = future.result()
        seconds[key] = seconds.get(key, 0.0) + took
        outputs.append(out)
    return outputs


def _start_differs(runs: _Runs, sides: Sequence[_Side], outputs: Sequence[Mapping[str, np.ndarray]], *,
                   layer_map: Mapping[str, str], hints: Mapping | None, tol: Tolerances, through: Any,
                   via: str | None) -> None:
    """Pair the layers on the first chunk's tensors and make the Differ of the whole comparison, and with
    an intermediate model those of its two hops."""
    runs.differ, runs.alignment = _differ(sides[0], sides[1], outputs[0], outputs[1], tol, via,
                                          layer_map=layer_map, hints=hints)
    if through is not None:
        runs.hops = _hop_differs(through, sides, outputs, tol, via)


def _differ(a: _Side, b: _Side, a_out: Mapping[str, np.ndarray], b_out: Mapping[str, np.ndarray],
            tol: Tolerances, via: str | None, **pairing: Any) -> tuple[Differ, Any]:
    """A Differ of side `a` vs side `b` and its Alignment, paired on their first chunk's outputs
    (`pairing`: align's layer_map and hints)."""
    alignment = align(a.layers, b.layers, **pairing, src_shapes={k: v.shape for k, v in a_out.items()},
                      dst_shapes={k: v.shape for k, v in b_out.items()}, dst_names=_pairing_name(b.adapter, via))
    differ = Differ(a.layers, b.layers, alignment, tol.for_layer,
                    parameters=_parameters(a.worker, a.path, b.worker, b.path))
    return differ, alignment


def _hop_differs(through, sides: Sequence[_Side], outputs: Sequence[Mapping[str, np.ndarray]], tol: Tolerances,
                 via: str | None) -> list:
    """[(hop name, Differ, Alignment)] for source vs intermediate ("export") and intermediate vs destination
    ("import"), paired on the first chunk's tensors with each half's hints. `sides` and `outputs` are
    (source, destination, intermediate)."""
    (src, dst, hub), (src_out, dst_out, hub_out) = sides, outputs
    out = []
    for name, (a, a_out), (b, b_out), hints in (("export", (src, src_out), (hub, hub_out), through.src_hints),
                                                ("import", (hub, hub_out), (dst, dst_out), through.dst_hints)):
        differ, alignment = _differ(a, b, a_out, b_out, tol, via, hints=hints)
        out.append((name, differ, alignment))
    return out


def _add_isolated(runs: _Runs, dst: _Side, part: Mapping[str, np.ndarray], input_pairs: Sequence,
                  src_out: Mapping[str, np.ndarray]) -> None:
    """Every destination layer again, on the source's values of its paired inputs, folded into the Differ."""
    iso_out, took = _timed(dst.worker.run, dst.path, one_or_dict(_to_dst(part, input_pairs)), None,
                           runs.differ.feeds(src_out))
    runs.run_seconds["isolated"] = runs.run_seconds.get("isolated", 0.0) + took
    t1 = time.perf_counter()
    runs.differ.add_isolated(src_out, iso_out)
    runs.diff_seconds += time.perf_counter() - t1


def _finish_differs(runs: _Runs, progress: Progress | None) -> tuple[list, list, list]:
    """(rows, roots) of the whole comparison and [(hop name, (rows, roots), Alignment)] of its hops."""
    _notify(progress, "diff", 0, 1)
    t1 = time.perf_counter()
    rows, roots = runs.differ.finish()
    finished_hops = [(name, hop_differ.finish(), hop_alignment) for name, hop_differ, hop_alignment in runs.hops]
    runs.diff_seconds += time.perf_counter() - t1
    _notify(progress, "diff", 1, 1)
    return rows, roots, finished_hops


def _run_timings(runs: _Runs) -> dict[str, float]:
    """The report's timings of the runs and the diff (the load's come first)."""
    timings = {"src_run": runs.run_seconds["src"], "dst_run": runs.run_seconds["dst"], "diff": runs.diff_seconds}
    if "isolated" in runs.run_seconds:
        timings["dst_isolated_run"] = runs.run_seconds["isolated"]
    if "hub" in runs.run_seconds:
        timings["intermediate_run"] = runs.run_seconds["hub"]
    return timings


def _outcome(rows: list, roots: list, alignment) -> dict[str, Any]:
    """The Report fields a comparison's rows, roots and pairing give: layers, verdict, unmatched layers."""
    paired = {r.src for r in rows}
    return {"layers": rows, "passed": not roots and bool(rows), "first_divergence": roots[0] if roots else None,
            "roots": roots, "unmatched": {"src": [p.src for p in alignment.pairs if p.src not in paired],
                                          "dst": alignment.unmatched_dst},
            "unmatched_reasons": dict(alignment.reasons)}


def _add_hops(report: Report, sides: Sequence[_Side], models: Sequence[str], finished_hops: list) -> None:
    """Append the Report of each half of a conversion through an intermediate model to `report.hops`,
    and where it diverges to `report.located`. `models`: (source, intermediate, destination)."""
    chain = (sides[0], sides[2], sides[1])
    for i, (name, (rows, roots), alignment) in enumerate(finished_hops):
        a, b = chain[i], chain[i + 1]
        report.hops.append(Report(src=a.adapter, dst=b.adapter, src_model=models[i], dst_model=models[i + 1],
                                  hop=name, **_outcome(rows, roots, alignment), inputs=report.inputs,
                                  tolerances=report.tolerances,
                                  meta={"layers": {"src": len(a.layers), "dst": len(b.layers)}}))
    report.located = locate(report)


def _trust(trust_model: bool, *adapters: str) -> None:
    """Tell the workers of `adapters` whether they may load model files that run code they carry
    (a layer that runs stored code): off unless the caller trusts the files (docs/security.md)."""
    for name in dict.fromkeys(adapters):
        get_worker(name).set_trust_model(bool(trust_model))


def _parameters(src_worker, src_path: str, dst_worker, dst_path: str):
    """(source layer, destination tensor) -> what the diagnosis may use of the two models' parameters:
    "kernels" (the two sides' convolution kernels, Adapter.kernel: the source's, and the destination's
    or None) and "recurrent" (the destination's
    LSTM weights, Adapter.recurrent_weights), where the adapters give them."""
    from xvalidate.errors import XValidateError

    def parameters(src_name: str, dst_name: str) -> dict:
        out = {}
        try:  # a nicety of the diagnosis: never a reason to fail the comparison
            kernels = src_worker.kernel(src_path, src_name), dst_worker.kernel(dst_path, dst_name)
            if kernels[0] is not None:
                out["kernels"] = kernels
            recurrent = dst_worker.recurrent_weights(dst_path, dst_name)
            if recurrent is not None:
                out["recurrent"] = recurrent
        except XValidateError:
            pass
        return out
    return parameters


def _model_outputs(src_layers: Sequence, rows: Sequence) -> list[dict]:
    """Each of the source model's outputs (layers whose attrs carry "model_output"), in output order, with
    its partner and verdict: a model with several outputs has every one of them compared."""
    by_src = {row.src: row for row in rows}
    outputs = sorted((info.attrs["model_output"], info.name) for info in src_layers if "model_output" in info.attrs)
    return [{"src": name, "dst": getattr(by_src.get(name), "dst", None), "passed": getattr(by_src.get(name), "passed", None),
             "max_abs": (by_src[name].metrics or {}).get("max_abs") if name in by_src else None} for _, name in outputs]


def _budget(memory_budget: float | None) -> int:
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise OptionError(f"memory_budget: expected a positive number of bytes, got {memory_budget}")
    return budget


def _bytes_per_sample(layers) -> int:
    """float32 bytes of one sample's activations, or 0 when a shape is unknown."""
    total = 0
    for info in layers:
        if info.shape is None or any(d is None for d in info.shape[1:]):
            return 0
        total += 4 * int(np.prod(info.shape[1:], dtype=np.int64))
    return total


def _bytes_per_sample_of(sides: Sequence[_Side]) -> int:
    """The sum of the sides' `_bytes_per_sample`; 0 (unknown) when an intermediate model's is unknown."""
    estimate = _bytes_per_sample(sides[0].layers) + _bytes_per_sample(sides[1].layers)
    for hub in sides[2:]:
        hub_bytes = _bytes_per_sample(hub.layers)
        estimate = estimate + hub_bytes if hub_bytes else 0
    return estimate


def _chunk_for(budget: int, bytes_per_sample: float) -> int:
    """How many samples (at least 1) a chunk may hold for `budget` bytes of activations."""
    return max(1, int(budget // max(bytes_per_sample, 1)))


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays.values())


def _check_fits(x: np.ndarray, info, path: str) -> None:
    want = info.shape[1:]
    if len(want) != x.ndim - 1 or any(w is not None and w != d for w, d in zip(want, x.shape[1:])):
        shape = "(None, " + ", ".join("None" if d is None else str(d) for d in want) + ")"
        raise InputShapeError(f"{path}: input {info.name!r} in the destination's layout ({info.layout}) has shape "
                              f"{tuple(x.shape)}, but the model expects {shape}")


def _to_dst(part: Mapping[str, np.ndarray], input_pairs: Sequence) -> dict[str, np.ndarray]:
    """The source inputs keyed by the destination's input names, in the destination's layouts."""
    return {d.name: layout.to_layout(part[s.name], s.layout, d.layout) for s, d in input_pairs}


def _input_layouts(input_pairs: Sequence) -> dict[str, dict]:
    """{source input: its layouts on both sides and whether one was guessed from the shape alone}."""
    return {s.name: {"dst": d.name, "src_layout": s.layout, "dst_layout": d.layout,
                     "guessed": bool(s.layout_guessed or d.layout_guessed)} for s, d in input_pairs}


def _notify(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


# ---------------------------------------------------------------- models given as files or objects
@contextmanager
def _sources(items: Sequence[tuple[str, Any]], example: np.ndarray | None = None) -> Iterator[list[str]]:
    """File paths for (adapter name, model) items; in-memory models are saved to a temporary directory."""
    tmp = None
    paths = []
    try:
        for name, model in items:
            adapter = get_adapter(name)
            if isinstance(model, (str, os.PathLike)):
                paths.append(checked_source(name, model))
                continue
            if not adapter.owns(model):
                raise InputFileError(f"{name} model: expected a file path or an in-memory {name} model, "
                                     f"got {type(model).__module__}.{type(model).__name__}")
            tmp = tmp or tempfile.mkdtemp(prefix=f"xvalidate-{os.getpid()}-model-")  # removed if we die (shm.py)
            paths.append(adapter.save(model, tempfile.mkdtemp(dir=tmp), example))
        yield paths
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _sides(items: Sequence[tuple[str, Any]]) -> Iterator[tuple[list[tuple[str, str]], dict]]:
    """[(adapter, path)] of a comparison's two (adapter name, model) sides, and {"src"/"dst": SavedResult}
    of those that are saved results (.xvr): their adapter comes from the file, and they need no worker."""
    from xvalidate.saved import SavedResult, is_saved

    saved: dict[str, Any] = {}
    try:
        for side, (_, model) in zip(("src", "dst"), items):
            if is_saved(model):
                saved[side] = SavedResult(model)
        with _sources([item for side, item in zip(("src", "dst"), items) if side not in saved]) as paths:
            live = iter(paths)
            yield [(saved[side].adapter, str(saved[side].path)) if side in saved else (name, next(live))
                   for side, (name, _) in zip(("src", "dst"), items)], saved
    finally:
        for result in saved.values():
            result.close()


def _registered_adapter(name: str) -> Any:
    """The adapter registered as `name`, or None: a saved side may come from an adapter not installed here."""
    from xvalidate.errors import UnknownAdapterError

    try:
        return get_adapter(name)
    except UnknownAdapterError:
        return None


def _pairing_name(name: str, via: str | None = None) -> Callable[[str], list[str]]:
    """The names a tensor of adapter `name` pairs by (xvalidate.naming.pairing_names; the name unchanged
    when the adapter is not installed here)."""
    from xvalidate.naming import pairing_names

    adapter = _registered_adapter(name)
    return pairing_names(name, via) if adapter is not None else (lambda tensor: [tensor])


def checked_source(name: str, model: str | os.PathLike) -> str:
    """The absolute path of a model file for adapter `name`; a missing file or a wrong extension
    raises InputFileError."""
    adapter, path = get_adapter(name), Path(model)
    if not path.exists():
        raise InputFileError(f"{path}: no such model file")
    name = path.name.lower()
    if adapter.extensions and not any(name.endswith(ext) for ext in adapter.extensions):
        raise InputFileError(f"{path}: unknown extension for a {adapter.name} model; expected "
                             f"{', '.join(adapter.extensions)}")
    return str(path.resolve())


def _describe(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    label = getattr(model, "name", None) or getattr(model, "prefix", None) or ""
    return f"<in-memory {type(model).__name__}{' ' + repr(label) if label else ''}>"


def _layer_map(layer_map: Mapping[str, str] | str | os.PathLike | None) -> dict[str, str]:
    if layer_map is None:
        return {}
    if isinstance(layer_map, Mapping):
        data, where = dict(layer_map), "layer_map"
    else:
        path = Path(layer_map)
        if not path.is_file():
            raise InputFileError(f"{path}: no such layer-map file")
        try:
            data, where = json.loads(path.read_text()), str(path)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise OptionError(f"{where}: expected an object mapping source layer names to destination layer names")
    return data


def _keep_artifacts(artifacts: Mapping[str, str], keep: str) -> dict[str, str]:
    dest = Path(keep)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"keep: cannot create directory {dest} ({exc.strerror})") from None
    targets = {name: dest / Path(path).name for name, path in artifacts.items()}
    for name, path in artifacts.items():
        shutil.copy2(path, targets[name])
    return {name: str(target) for name, target in targets.items()}


def _versions(*adapters: str, route: str | None = None) -> dict[str, str]:
    """Versions of xvalidate, numpy and the packages the adapters (and the route) declare."""
    from importlib.metadata import PackageNotFoundError, version

    from xvalidate.registry import get_route

    declared = [pkg for name in adapters for pkg in getattr(_registered_adapter(name), "packages", ())]
    declared += list(get_route(route).packages) if route else []
    out = {}
    for pkg in dict.fromkeys(("xvalidate", "numpy", *declared)):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out

