"""xvalidate benchmarks: every figure is a ratio measured in this one run, on this machine.

    make bench                       # or: .venv/bin/python benchmarks/run.py [--only NAME ...]

Writes benchmarks/results.json and prints a table. See docs/performance.md.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # `steps` is imported by the workers through PYTHONPATH

import xvalidate  # noqa: E402
from xvalidate.worker import get_worker  # noqa: E402

BENCHES = ("capture", "scale", "per_layer", "polygraphy", "validate", "memory")
# Capture vs plain runs in a fresh process per measurement, every framework on one thread, timed in
# CPU time: on a shared 2-core machine a two-thread run's wall time depends on the other jobs more than
# on the run (a busy core stalls the other thread), while one thread's CPU time is the work it did
# (onnxruntime reads no variable: steps.py gives its sessions one thread when OMP_NUM_THREADS is 1)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
# (adapter, model key, sample shape): the same three networks in each framework
SCALE_MODELS = {"keras": [("MobileNetV2", (224, 224, 3)), ("ResNet50", (224, 224, 3)), ("DenseNet121", (224, 224, 3))],
                "onnx": [("MobileNetV2", (224, 224, 3)), ("ResNet50", (224, 224, 3)), ("DenseNet121", (224, 224, 3))],
                "mxnet": [("mobilenetv2_1.0", (3, 224, 224)), ("resnet50_v1", (3, 224, 224)),
                          ("densenet121", (3, 224, 224))]}


def build_models(work: Path) -> dict:
    resnet18 = work / "resnet18_v1-symbol.json"
    if not resnet18.exists():
        get_worker("mxnet").call("xvalidate.models.gluon_zoo:save_resnet18", str(work / "resnet18_v1"))
    keras = get_worker("keras")
    h5 = work / "ResNet50.h5"
    if not h5.exists():
        keras.call("xvalidate.models.keras_zoo:save", "ResNet50", str(h5))
    onnx_path = work / "ResNet50.onnx"
    if not onnx_path.exists():
        keras.call("xvalidate.routes.onnx_steps:keras_to_onnx", str(h5), str(onnx_path), 11)
    models = {"h5": str(h5), "onnx": str(onnx_path), "resnet18": str(resnet18)}
    for name, _ in SCALE_MODELS["keras"]:
        models[("keras", name)] = str(work / f"{name}.h5")
        models[("onnx", name)] = str(work / f"{name}.onnx")
        if not (work / f"{name}.h5").exists():
            keras.call("xvalidate.models.keras_zoo:save", name, str(work / f"{name}.h5"))
        if not (work / f"{name}.onnx").exists():
            keras.call("xvalidate.routes.onnx_steps:keras_to_onnx", str(work / f"{name}.h5"),
                       str(work / f"{name}.onnx"), 11)
    for name, _ in SCALE_MODELS["mxnet"]:
        models[("mxnet", name)] = str(work / f"{name}-symbol.json")
        if not (work / f"{name}-symbol.json").exists():
            get_worker("mxnet").call("xvalidate.models.gluon_zoo:save", name, str(work / name))
    return models


_MEASURED: dict = {}


def capture_vs_plain(models: dict, adapter: str, name: str, shape: tuple, rounds: int) -> dict:
    """steps.capture_vs_fastest_plain in a process of its own on one thread, CPU time (kept for reuse).
    The process has the environment variables the adapter's worker has (the capture runs as in a
    worker); when there are any, the plain forwards are also timed in a process without them (a
    user's own run), and the faster of the two counts."""
    key = (adapter, name, shape)
    if key not in _MEASURED:
        args = {"adapter_name": adapter, "source": models[(adapter, name)], "shape": list(shape),
                "rounds": rounds, "clock": "process_time"}
        variables = _worker_variables(adapter)
        r = _step(args, variables)
        if variables:
            plains = _step(dict(args, plain_only=True), {})["plains"]
            r["plains"].update((f"{k} (without {' '.join(variables)})", v) for k, v in plains.items())
            r["plain"] = min(r["plains"], key=r["plains"].get)
            r["plain_s"] = r["plains"][r["plain"]]
        _MEASURED[key] = r
    return _MEASURED[key]


def _worker_variables(adapter: str) -> dict:
    """The environment variables the adapter's worker runs with (not those naming a private folder)."""
    from xvalidate.registry import get_adapter

    variables = getattr(get_adapter(adapter), "worker_variables", None) or {}
    return {k: v for k, v in variables.items() if "{private}" not in v}


def _step(args: dict, variables: dict) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "steps.py"), json.dumps(args)], check=True,
                         capture_output=True, text=True, env=dict(os.environ, **ONE_THREAD, **variables)).stdout
    return json.loads(out.strip().splitlines()[-1])


def _capture_row(adapter: str, name: str, batch: int, r: dict) -> dict:
    ratio = r["capture_s"] / r["plain_s"]
    others = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["plains"].items() if k != r["plain"])
    extra = []
    if r["eager_s"] is not None:
        extra.append(f"eager call {r['eager_s'] * 1000:.0f} ms; traced after {r['eager_calls']} eager calls")
    if r["forward_only_s"] is not None:
        extra.append(f"the capture's forward without copying out {r['forward_only_s'] * 1000:.0f} ms")
    return {"name": f"{adapter} capture-all vs fastest plain forward, {name}, batch {batch}", "value": ratio,
            "unit": "x", "goal": "<= 1.15", "ok": ratio <= 1.15,
            "detail": "; ".join([f"capture {r['capture_s'] * 1000:.0f} ms vs {r['plain']} {r['plain_s'] * 1000:.0f} ms"
                                 + (f" ({others})" if others else ""), *extra,
                                 f"{r['layers']} layers, {r['bytes'] / 1e6:.0f} MB"])}


def bench_capture(models: dict) -> list[dict]:
    rows = []
    for adapter in ("keras", "onnx", "mxnet"):
        name = SCALE_MODELS[adapter][1][0]  # ResNet50 (Gluon's resnet50_v1 for mxnet)
        for batch, rounds in ((1, 10), (8, 4)):
            shape = (batch, *SCALE_MODELS[adapter][1][1])
            rows.append(_capture_row(adapter, name, batch, capture_vs_plain(models, adapter, name, shape, rounds)))
    r = get_worker("keras").call("steps:keras_capture_vs_plain", models["h5"], 1)  # in the worker, wall time
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype("float32")
    xvalidate.run("keras", models["h5"], x)  # warm
    t = time.perf_counter()
    xvalidate.run("keras", models["h5"], x)
    through_worker = time.perf_counter() - t
    transfer = max(through_worker - r["capture_s"], 0.0)
    rows.append({"name": "array transfer from the worker vs the forward pass, ResNet50, batch 1",
                 "value": transfer / r["plain_s"], "unit": "x", "goal": "< 0.5",
                 "ok": transfer / r["plain_s"] < 0.5,
                 "detail": f"xvalidate.run {through_worker:.3f} s - capture in worker {r['capture_s']:.3f} s "
                           f"= {transfer * 1000:.0f} ms for {r['bytes'] / 1e6:.0f} MB"})
    return rows


def bench_scale(models: dict) -> list[dict]:
    """How capture's cost grows with the model (layers, activation bytes) and with the batch."""
    rows = []
    for adapter, entries in SCALE_MODELS.items():
        for name, sample in entries:
            r = capture_vs_plain(models, adapter, name, (1, *sample), 10)
            rows.append(_scale_row(adapter, name, 1, r))
        name, sample = entries[1]
        for batch, rounds in ((8, 4), (32, 2)):
            rows.append(_scale_row(adapter, name, batch, capture_vs_plain(models, adapter, name, (batch, *sample), rounds)))
    return rows


def _scale_row(adapter: str, name: str, batch: int, r: dict) -> dict:
    mb = r["bytes"] / 1e6
    return {"name": f"scale: {adapter} {name}, batch {batch}", "value": r["capture_s"] / r["plain_s"], "unit": "x",
            "goal": "report", "ok": True,
            "detail": f"capture {r['capture_s'] * 1000:.0f} ms, plain {r['plain_s'] * 1000:.0f} ms "
                      f"(+{(r['capture_s'] - r['plain_s']) * 1000:.0f} ms); {r['layers']} layers, {mb:.0f} MB "
                      f"captured; extra {max(r['capture_s'] - r['plain_s'], 0) * 1000 / mb:.2f} ms per MB"}


def bench_per_layer(models: dict) -> list[dict]:
    seed = get_worker("keras").call("steps:keras_per_layer_method", models["h5"], 8)
    ours = get_worker("keras").call("steps:keras_capture_vs_plain", models["h5"], 1, 3)
    ratio = seed["extrapolated_s"] / ours["capture_s"]
    return [{"name": "seed's per-layer sub-model method vs capture-all, ResNet50, batch 1",
             "value": ratio, "unit": "x faster", "goal": ">= 100", "ok": ratio >= 100,
             "detail": f"{seed['per_layer_s']:.2f} s per layer (mean of {seed['sampled_layers']} sampled layers, "
                       f"extrapolated to {seed['layers']}: {seed['extrapolated_s']:.0f} s) vs {ours['capture_s']:.3f} s"}]


def _wall(cmd: list[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def bench_polygraphy(models: dict, work: Path) -> list[dict]:
    polygraphy = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
    if polygraphy is None:
        return [{"name": "onnx adapter vs Polygraphy", "value": None, "unit": "x", "goal": "<= 1.0", "ok": False,
                 "detail": "polygraphy is not installed (make bench installs the bench extra)"}]
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype("float32")
    np.save(work / "x.npy", x)
    from polygraphy.json import save_json

    inputs = get_worker("onnx").input_info(models["onnx"])
    save_json([{inputs.name: x}], str(work / "x.json"))
    xv = [str(Path(sys.executable).parent / "xvalidate"), "capture", models["onnx"], "--adapter", "onnx",
          "--input", str(work / "x.npy")]
    pg = [polygraphy, "run", models["onnx"], "--onnxrt", "--onnx-outputs", "mark", "all",
          "--load-inputs", str(work / "x.json")]
    t_xv, t_pg = _wall(xv), _wall(pg)
    return [{"name": "onnx adapter (xvalidate capture) vs polygraphy run --onnx-outputs mark all, ResNet50",
             "value": t_xv / t_pg, "unit": "x", "goal": "<= 1.0", "ok": t_xv <= t_pg,
             "detail": f"whole command: xvalidate {t_xv:.2f} s, polygraphy {t_pg:.2f} s"}]


def bench_validate(models: dict) -> list[dict]:
    cold = xvalidate.validate(models["h5"], src="keras", dst="mxnet", via="mmdnn", cache=False)
    t0 = time.perf_counter()
    cold = xvalidate.validate(models["h5"], src="keras", dst="mxnet", via="mmdnn", cache=False)
    t_cold = time.perf_counter() - t0
    xvalidate.validate(models["h5"], src="keras", dst="mxnet", via="mmdnn")  # fill the cache
    t0 = time.perf_counter()
    warm = xvalidate.validate(models["h5"], src="keras", dst="mxnet", via="mmdnn")
    t_warm = time.perf_counter() - t0
    conversion = sum(cold.meta["conversion_seconds"].values())
    keras_fwd = get_worker("keras").call("steps:timed_plain_forward", "keras", models["h5"], [1, 224, 224, 3])
    mx_fwd = get_worker("mxnet").call("steps:timed_plain_forward", "mxnet", cold.dst_model, [1, 3, 224, 224])
    parts = conversion + keras_fwd + mx_fwd
    overhead = t_cold / parts - 1
    return [{"name": "validate keras->mxnet via mmdnn, ResNet50, cold: overhead over its parts",
             "value": overhead * 100, "unit": "%", "goal": "<= 50", "ok": overhead <= 0.5,
             "detail": f"cold {t_cold:.2f} s vs conversion {conversion:.2f} s + keras forward {keras_fwd:.3f} s + "
                       f"mxnet forward {mx_fwd:.3f} s = {parts:.2f} s; passed={cold.passed}"},
            {"name": "validate, warm cache vs cold", "value": t_warm / t_cold, "unit": "x", "goal": "faster by >= conversion",
             "ok": t_cold - t_warm >= conversion * 0.9 and warm.meta["cache_hit"],
             "detail": f"warm {t_warm:.2f} s (cache hit {warm.meta['cache_hit']}), cold {t_cold:.2f} s, "
                       f"conversion {conversion:.2f} s"}]


MEMORY_SCRIPT = """
import sys, numpy as np, xvalidate
batch = int(sys.argv[2])
x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype("float32")
r = xvalidate.compare(sys.argv[1], sys.argv[1], src="keras", dst="keras", inputs=x)
print(r.passed, r.inputs.get("chunk"))
"""


def _peak_tree_rss(cmd: list[str]) -> tuple[float, str]:
    from process_memory import run_watched

    _, _, peak, out = run_watched(cmd)
    return peak / 2**30, out.strip()


def bench_memory(models: dict) -> list[dict]:
    rows, peaks = [], {}
    for batch in (1, 16, 64):
        peak, out = _peak_tree_rss([sys.executable, "-c", MEMORY_SCRIPT, models["h5"], str(batch)])
        peaks[batch] = peak
        rows.append({"name": f"peak memory of compare (process tree), ResNet50 keras vs keras, batch {batch}",
                     "value": peak, "unit": "GiB", "goal": "<= 6 at batch 64, flat", "ok": peak <= 6,
                     "detail": f"passed, chunk: {out}"})
    # batch 1 holds one sample; from the batch that fills the memory budget on, chunks stop growing
    rows.append({"name": "memory growth batch 16 -> 64 (both past the 2 GiB chunk budget)",
                 "value": peaks[64] / peaks[16], "unit": "x", "goal": "flat", "ok": peaks[64] / peaks[16] < 1.2,
                 "detail": f"batch 1 -> 64: {peaks[64] / peaks[1]:.2f}x (batch 1 is below the budget)"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=BENCHES, help="run only these benchmarks")
    parser.add_argument("--work", default=str(HERE / "work"), help="directory for the models (kept between runs)")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if "XVALIDATE_CACHE_DIR" not in os.environ:  # a cache of the run's own, removed when it ends
        cache = tempfile.mkdtemp(prefix="xvalidate-bench-cache-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        os.environ["XVALIDATE_CACHE_DIR"] = cache
    models = build_models(work)
    chosen = args.only or BENCHES
    rows = []
    for name in chosen:
        print(f"running {name}...", file=sys.stderr, flush=True)
        fn = globals()[f"bench_{name}"]
        rows += fn(models, work) if name == "polygraphy" else fn(models)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="xvalidate benchmarks", header_style="bold")
    for col in ("benchmark", "value", "goal", "ok", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.3g} {r['unit']}"
        table.add_row(r["name"], value, r["goal"], "yes" if r["ok"] else "NO", r["detail"])
    Console().print(table)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    Path(args.out).write_text(json.dumps({"machine": machine, "when": time.strftime("%Y-%m-%d %H:%M"),
                                          "results": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
