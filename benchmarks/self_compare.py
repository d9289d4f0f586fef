"""No false alarms: every zoo model compared with itself must PASS with every layer paired.

    make self-compare          # every model below (about 20 minutes on 2 cores)
    python benchmarks/self_compare.py --keras ResNet50 --onnx resnet_block --mxnet resnet18_v1

keras: the smallest member of every keras.applications family of TF 2.12 (random weights,
randomized BatchNorm statistics) against itself; onnx: the keras->onnx conversion (cached) of the
first few against itself; mxnet: every Gluon model-zoo vision net (pretrained=False) against
itself. A row that does not PASS, or leaves a source layer unpaired (other than inference
no-ops), is a false alarm of the pairing or the diff engine. Results: docs/self-compare.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
import xvalidate  # noqa: E402
from xvalidate.cache import convert_cached  # noqa: E402
from xvalidate.worker import get_worker, shutdown_workers  # noqa: E402

KERAS = ("ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0", "InceptionResNetV2", "InceptionV3",
         "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "NASNetMobile", "RegNetX002",
         "ResNet50", "ResNet50V2", "ResNetRS50", "VGG16", "Xception", "seed2_cnn", "resnet_block", "branchy_cnn")
ONNX = ("seed2_cnn", "resnet_block", "branchy_cnn", "ResNet50V2", "MobileNetV2", "DenseNet121")
MXNET = ("alexnet", "densenet121", "inceptionv3", "mobilenet0.25", "mobilenetv2_0.25", "resnet18_v1", "resnet18_v2",
         "resnet50_v1", "resnet50_v2", "squeezenet1.0", "squeezenet1.1", "vgg11", "vgg11_bn")


def one(adapter: str, path: str, label: str, inputs=None) -> dict:
    t0 = time.perf_counter()
    try:
        report = xvalidate.compare(path, path, src=adapter, dst=adapter, inputs=inputs, trust_model=True)
    except xvalidate.XValidateError as exc:
        return {"adapter": adapter, "model": label, "status": "ERROR", "error": str(exc)}
    missing = [n for n in report.unmatched["src"] if "does nothing at inference" not in report.unmatched_reasons.get(n, "")]
    status = "PASS" if report.passed and not missing else "FALSE ALARM"
    return {"adapter": adapter, "model": label, "status": status, "paired": len(report.layers),
            "layers": report.meta["layers"]["src"], "unpaired": missing[:5],
            "root": None if report.first_divergence is None else report.first_divergence.src,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keras", nargs="*", default=list(KERAS))
    parser.add_argument("--onnx", nargs="*", default=list(ONNX))
    parser.add_argument("--mxnet", nargs="*", default=list(MXNET))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "self_compare.json"))
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "self-compare.md"))
    args = parser.parse_args(argv)
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xvalidate-self-") as tmp:
        try:
            for name in args.keras:
                h5 = str(Path(tmp) / f"{name}.h5")
                get_worker("keras").call("xvalidate.models.keras_zoo:save", name, h5)
                rows.append(one("keras", h5, name))
                if name in args.onnx:
                    onnx_path = convert_cached("onnx", h5, "keras", "onnx", {}).dst_source
                    rows.append(one("onnx", onnx_path, f"{name} (tf2onnx)"))
                print(rows[-1], flush=True)
            for name in args.mxnet:
                symbol = get_worker("mxnet").call("xvalidate.models.gluon_zoo:save", name, str(Path(tmp) / name))
                shape = get_worker("mxnet").call("xvalidate.models.gluon_zoo:input_shape", name)
                rows.append(one("mxnet", symbol, name, np.random.default_rng(0).standard_normal(shape).astype("float32")))
                print(rows[-1], flush=True)
        finally:
            shutdown_workers()
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    alarms = [r for r in rows if r["status"] != "PASS"]
    lines = ["# No false alarms: every zoo model against itself", "",
             "`make self-compare` (benchmarks/self_compare.py): each model compared with itself must PASS with "
             "every layer paired (inference no-ops aside).", "",
             f"One run: {len(rows)} comparisons, {len(alarms)} not PASS, {(time.perf_counter() - started) / 60:.0f} "
             "minutes on 2 cores.", "",
             "| adapter | model | status | layers paired | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['adapter']} | {r['model']} | {r['status']} | {r.get('paired', '-')} of {r.get('layers', '-')} | "
              f"{r.get('seconds', '-')} |" for r in rows]
    for r in alarms:
        lines.append(f"\n{r['model']} ({r['adapter']}): {r.get('error') or r.get('unpaired') or r.get('root')}")
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
