"""Model coverage: every test-matrix model through every route, written to docs/coverage.md.

    .venv/bin/python benchmarks/coverage.py [--models ResNet50 ...] [--out docs/coverage.md]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import xvalidate
from xvalidate.models.keras_zoo import APPLICATIONS
from xvalidate.worker import get_worker

MODELS = ("seed2_cnn",) + APPLICATIONS
ROUTES = (("mmdnn", "mxnet"), ("onnx", "mxnet"), ("onnx", "onnx"))


def measure(h5: str, via: str, dst: str) -> dict:
    start = time.perf_counter()
    try:
        report = xvalidate.validate(h5, src="keras", dst=dst, via=via, cache=False)
    except xvalidate.XValidateError as exc:
        return {"error": str(exc)}
    worst = report.worst(1)[0] if report.layers else None
    return {
        "passed": report.passed,
        "paired": len(report.layers),
        "src_layers": report.meta["layers"]["src"],
        "final_max_abs": report.layers[-1].metrics.get("max_abs") if report.layers else None,
        "worst": None if worst is None else worst.src,
        "worst_max_abs": None if worst is None else worst.metrics.get("max_abs"),
        "timings": {k: round(v, 2) for k, v in report.timings.items()},
        "conversion": {k: round(v, 2) for k, v in report.meta["conversion_seconds"].items()},
        "total_s": round(time.perf_counter() - start, 1),
        "first_divergence": None if report.first_divergence is None else
        f"{report.first_divergence.src}: {report.first_divergence.cause}",
    }


def fmt(v) -> str:
    return "-" if v is None else (f"{v:.1e}" if isinstance(v, float) else str(v))


def to_markdown(results: dict) -> str:
    lines = ["# Model coverage", "",
             "Every model is built in code (`weights=None`, BatchNorm statistics randomized, seed 0), validated "
             "from Keras through each route on one seeded random input (batch 1) with the default tolerances "
             "(atol 1e-4, rtol 1e-3). Produced by `benchmarks/coverage.py` on a 2-core machine; times in seconds.", ""]
    for model, routes in results.items():
        lines += [f"## {model}", "",
                  "| route | verdict | layers paired | final max abs diff | worst layer | its max abs diff | convert | src run | dst run | diff |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for key, r in routes.items():
            if "error" in r:
                lines.append(f"| {key} | error: {r['error']} | | | | | | | | |")
                continue
            t = r["timings"]
            lines.append(f"| {key} | {'pass' if r['passed'] else 'FAIL'} | {r['paired']} of {r['src_layers']} | "
                         f"{fmt(r['final_max_abs'])} | {r['worst']} | {fmt(r['worst_max_abs'])} | {t.get('convert')} | "
                         f"{t.get('src_run')} | {t.get('dst_run')} | {t.get('diff')} |")
            if r["first_divergence"]:
                lines.append(f"| | first divergence: {r['first_divergence']} | | | | | | | | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--work", default=str(Path(__file__).resolve().parent / "work"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "coverage.md"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    raw = Path(args.out).with_suffix(".json")
    if raw.exists():
        results = json.loads(raw.read_text())
    for model in args.models:
        h5 = work / f"{model}.h5"
        if not h5.exists():
            get_worker("keras").call("xvalidate.models.keras_zoo:save", model, str(h5))
        results[model] = {}
        for via, dst in ROUTES:
            print(f"{model} via {via} -> {dst}", file=sys.stderr, flush=True)
            results[model][f"{via} -> {dst}"] = measure(str(h5), via, dst)
        raw.write_text(json.dumps(results, indent=1))
        Path(args.out).write_text(to_markdown(results) + "\n")
    print(to_markdown(results))


if __name__ == "__main__":
    main()
