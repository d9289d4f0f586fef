"""Coverage of the sequence, attention and multi-input models (xvalidate/models/keras_seq_zoo.py)
through the three routes from Keras; writes docs/coverage-sequence.md.

    .venv/bin/python benchmarks/coverage_sequence.py [--out docs/coverage-sequence.md] [MODEL ...]
"""
from __future__ import annotations

import argparse
import re
import time
import tempfile
from pathlib import Path

import xvalidate
from xvalidate.errors import XValidateError
from xvalidate.worker import get_worker

MODELS = ("text_cnn", "text_classifier", "bidirectional_tagger", "small_bert", "two_tower", "multi_output",
          "transformer_block", "two_inputs")
ROUTES = (("onnx", "onnx"), ("mmdnn", "mxnet"), ("onnx", "mxnet"))
HEADER = """# Coverage: sequence, attention and multi-input models

The models of `xvalidate/models/keras_seq_zoo.py`, built in code (seed 0), validated from Keras through
each route on seeded random inputs that fit them (token ids below each Embedding's `input_dim`,
batch 2), default tolerances. Produced by `benchmarks/coverage_sequence.py` on a 2-core machine;
times in seconds (conversion included). A route that stops names the converter's limit.

| model | route | verdict | layers paired | final max abs diff | worst layer | seconds |
|---|---|---|---|---|---|---|
"""


def row(name: str, path: str, via: str, dst: str) -> str:
    start = time.perf_counter()
    try:
        report = xvalidate.validate(path, src="keras", dst=dst, via=via, cache=False, batch=2)
    except XValidateError as exc:
        reason = str(exc).replace("|", "/").replace(str(Path(path).parent) + "/", "")
        return f"| {name} | {via} -> {dst} | stops | | | {_short(reason)} | {time.perf_counter() - start:.1f} |"
    rows = report.layers
    worst = max(rows, key=lambda r: r.metrics.get("max_abs") or 0.0)
    verdict = "pass" if report.passed else f"FAIL at {report.first_divergence.src}"
    return (f"| {name} | {via} -> {dst} | {verdict} | {len(rows)} of {report.meta['layers']['src']} | "
            f"{rows[-1].metrics['max_abs']:.1e} | {worst.src} ({worst.metrics['max_abs']:.1e}) | "
            f"{time.perf_counter() - start:.1f} |")


def _short(text: str) -> str:
    """One line without the temporary directory's path, cut at 220 characters."""
    text = re.sub(r"^/\S*?/([^/\s]+: )", r"\1", " ".join(text.split()))
    return text if len(text) <= 220 else text[:217] + "..."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--out", default="docs/coverage-sequence.md")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            path = get_worker("keras").call("xvalidate.models.keras_seq_zoo:save", name, f"{tmp}/{name}.h5")
            for via, dst in ROUTES:
                lines.append(row(name, path, via, dst))
                print(lines[-1], flush=True)
    Path(args.out).write_text(HEADER + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
