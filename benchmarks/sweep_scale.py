"""Sweep timings by executor: 12 small Keras models built in code x 3 routes (keras -> mmdnn -> mxnet,
keras -> onnx -> mxnet, keras -> onnx -> onnx), run by the local executor with 1 and with 2 processes
and by Ray on a local cluster of 2 CPUs; wall time of each whole sweep into benchmarks/sweep_scale.json.

    .venv/bin/python benchmarks/sweep_scale.py [--runs local1 local2 ray2] [--models seed2_cnn ...]

Every sweep starts from an empty output folder and converts without the conversion cache, so each
executor does the same work; the models are built once under benchmarks/work/sweep_scale/.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTES = [("mmdnn", "mxnet"), ("onnx", "mxnet"), ("onnx", "onnx")]
RUNS = {"local1": ("local", 1), "local2": ("local", 2), "ray2": ("ray", 2)}
# name -> (keras.applications constructor or zoo builder, keyword arguments)
MODELS = {
    "seed2_cnn": ("zoo", {}),
    "resnet_block": ("zoo", {}),
    "branchy_cnn": ("zoo", {}),
    "MobileNet_a025_96": ("MobileNet", {"alpha": 0.25, "input_shape": (96, 96, 3)}),
    "MobileNet_a050_128": ("MobileNet", {"alpha": 0.5, "input_shape": (128, 128, 3)}),
    "MobileNetV2_a035_96": ("MobileNetV2", {"alpha": 0.35, "input_shape": (96, 96, 3)}),
    "MobileNetV2_a050_128": ("MobileNetV2", {"alpha": 0.5, "input_shape": (128, 128, 3)}),
    "ResNet50_64": ("ResNet50", {"input_shape": (64, 64, 3)}),
    "ResNet50V2_64": ("ResNet50V2", {"input_shape": (64, 64, 3)}),
    "VGG16_64": ("VGG16", {"input_shape": (64, 64, 3)}),
    "DenseNet121_64": ("DenseNet121", {"input_shape": (64, 64, 3)}),
    "InceptionV3_75": ("InceptionV3", {"input_shape": (75, 75, 3)}),
}


def build(name: str, path: str) -> str:
    """In a Keras worker: build model `name` (random weights, 10 classes, BatchNorm statistics
    randomized, seed 0) and save it to `path`."""
    from xvalidate.models import keras_zoo

    kind, kwargs = MODELS[name]
    if kind == "zoo":
        model = keras_zoo.BUILDERS[name](0)
    else:
        keras = keras_zoo._keras(0)
        model = getattr(keras.applications, kind)(weights=None, classes=10, **kwargs)
        keras_zoo.randomize_batchnorm(model, 0)
    model.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "sweep_scale"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "sweep_scale.json"))
    args = parser.parse_args()

    from xvalidate.sweep import sweep
    from xvalidate.worker import get_worker, shutdown_workers

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files = []
    for name in args.models:
        path = work / f"{name}.h5"
        if not path.exists():
            get_worker("keras").call("sweep_scale:build", name, str(path))
        files.append(str(path))
    shutdown_workers()  # the sweeps' processes start their own

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for run in args.runs:
        executor, workers = RUNS[run]
        folder = work / f"out-{run}"
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        result = sweep(files, "mxnet", ROUTES, out=folder, executor=executor, workers=workers, cache=False)
        wall = time.perf_counter() - start
        statuses = [r["status"] for r in result.records]
        results[run] = {"executor": executor, "workers": workers, "models": len(files), "routes": len(ROUTES),
                        "cells": len(result.records), "wall_s": round(wall, 1),
                        "cell_s_sum": round(sum(r["seconds"] or 0 for r in result.records), 1),
                        "counts": {s: statuses.count(s) for s in ("PASS", "FAIL", "ERROR")},
                        "exit_code": result.exit_code, "when": time.strftime("%Y-%m-%d %H:%M"),
                        "machine": f"{platform.python_version()}, {platform.machine()}"}
        print(run, json.dumps(results[run]), file=sys.stderr, flush=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
