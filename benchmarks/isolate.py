"""The cost of isolated checks: `compare(..., isolate=True)` against the plain compare, on ResNet50.

    python benchmarks/isolate.py [--model ResNet50] [--repeat 3]

keras -> onnx (tf2onnx) and keras -> mxnet (MMdnn) conversions of the same model (random weights),
each compared plainly and isolated, best of `--repeat` warm runs each (the conversions are cached and
the workers warm). Prints the wall times and their ratio (goal: at most 3x)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import _best as best  # noqa: E402

import xvalidate  # noqa: E402
from xvalidate.cache import convert_cached  # noqa: E402
from xvalidate.worker import get_worker, shutdown_workers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ResNet50")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="xvalidate-isolate-") as tmp:
        try:
            h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", args.model, str(Path(tmp) / "m.h5"))
            for via, dst in (("onnx", "onnx"), ("mmdnn", "mxnet")):
                conversion = convert_cached(via, h5, "keras", dst, {})
                run = lambda isolate: xvalidate.compare(h5, conversion.dst_source, src="keras", dst=dst,  # noqa: E731
                                                        hints=conversion.hints, isolate=isolate)
                run(True)  # warm both workers and both executors
                plain, isolated = best(lambda: run(False), args.repeat), best(lambda: run(True), args.repeat)
                results[f"keras->{dst} via {via}"] = {"plain_s": round(plain, 2), "isolated_s": round(isolated, 2),
                                                      "ratio": round(isolated / plain, 2)}
                print(args.model, via, results[f"keras->{dst} via {via}"], flush=True)
        finally:
            shutdown_workers()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
