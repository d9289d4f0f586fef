"""The cost of the three-way hub report: validate through ONNX between two other frameworks with
`hops=True` (source vs destination, source vs ONNX, ONNX vs destination on one run of each model
per chunk) against `hops=False` (source vs destination only).

    python benchmarks/hub_hops.py [--model MobileNetV2] [--batch 4] [--repeat 3]

keras -> onnx -> mxnet on a keras.applications model (random weights) and on the small ResNet
block; torch -> onnx -> mxnet on the plugin's resnet_small when the torch plugin is installed.
Best of `--repeat` warm runs each (conversions cached, workers warm). Prints the wall times, their
ratio and the pairs of each comparison."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import _best as best  # noqa: E402

import xvalidate  # noqa: E402
from xvalidate.worker import get_worker, shutdown_workers  # noqa: E402


def measure(label: str, model, src: str, batch: int, repeat: int) -> dict:
    run = lambda hops: xvalidate.validate(model, src=src, dst="mxnet", via="onnx", batch=batch, hops=hops)  # noqa: E731
    report = run(True)  # converts (cached) and warms every worker
    two, three = best(lambda: run(False), repeat), best(lambda: run(True), repeat)
    result = {"two_way_s": round(two, 2), "three_way_s": round(three, 2), "ratio": round(three / two, 2),
              "paired": {"whole": len(report.layers), **{h.hop: len(h.layers) for h in report.hops}},
              "passed": {"whole": report.passed, **{h.hop: h.passed for h in report.hops}}}
    print(label, result, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="xvalidate-hops-") as tmp:
        try:
            for name in ("resnet_block", args.model):
                h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", name, str(Path(tmp) / f"{name}.h5"))
                results[f"keras {name}"] = measure(f"keras {name}", h5, "keras", args.batch, args.repeat)
            if "torch" in xvalidate.adapters():
                from xvalidate_torch.nets import build
                results["torch resnet_small"] = measure("torch resnet_small", build("resnet_small"), "torch",
                                                        args.batch, args.repeat)
        finally:
            shutdown_workers()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
