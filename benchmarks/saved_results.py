"""Saved results across processes: ResNet50 captured and saved by one `xvalidate capture --save`
process, compared by others against a live run and against a second saved capture.

    .venv/bin/python benchmarks/saved_results.py [--batch 8] [--large 64] [--dir /tmp]

Every step is a separate `xvalidate` process; each is timed and its process tree's peak RSS
sampled (psutil, every 50 ms). The .xvr files go to --dir and are deleted at the end. Writes
benchmarks/saved_results.json; docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
XVALIDATE = [sys.executable, "-m", "xvalidate.cli"]
RESNET50_BYTES_PER_SAMPLE = 148e6  # keras capture-all of ResNet50 (docs/performance.md)


def measured(cmd: list[str]) -> dict:
    """Run `cmd`; its exit code, wall seconds, last output lines and the peak RSS of its process tree."""
    from process_memory import run_watched

    code, seconds, peak, out = run_watched(cmd, merge_stderr=True)
    return {"cmd": " ".join(Path(c).name if i < 3 else c for i, c in enumerate(cmd)), "exit": code,
            "seconds": seconds, "peak_gib": peak / 2**30, "output": out.strip().splitlines()[-3:]}


def capture(h5: str, path: Path, batch: int, budget: float | None = None) -> dict:
    extra = ["--memory-budget", str(budget)] if budget else []
    r = measured([*XVALIDATE, "capture", h5, "--adapter", "keras", "--batch", str(batch), "--save", str(path), *extra])
    r["bytes"] = path.stat().st_size if path.exists() else None
    return r


def compare(a: str, b: str, report: Path, *options: str) -> dict:
    r = measured([*XVALIDATE, "compare", a, b, *options, "--json", str(report)])
    if report.exists():
        data = json.loads(report.read_text())
        r.update(passed=data["passed"], pairs=len(data["layers"]), unmatched=len(data["unmatched"]["src"]),
                 chunk=data["inputs"].get("chunk"), timings=data["timings"])
        report.unlink()
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="batch of the full set of comparisons")
    parser.add_argument("--large", type=int, default=64, help="batch of the large saved file (0: skip)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the .xvr files go (deleted at the end)")
    parser.add_argument("--model", default=str(HERE / "work" / "ResNet50.h5"))
    parser.add_argument("--out", default=str(HERE / "saved_results.json"))
    args = parser.parse_args()
    if not Path(args.model).exists():
        from xvalidate.worker import get_worker
        Path(args.model).parent.mkdir(parents=True, exist_ok=True)
        get_worker("keras").call("xvalidate.models.keras_zoo:save", "ResNet50", args.model)
    work = Path(tempfile.mkdtemp(prefix="xvalidate-saved-bench-", dir=args.dir))
    results: dict = {"batch": args.batch, "large": args.large, "steps": {}}
    steps = results["steps"]
    try:
        a, b = work / "a.xvr", work / "b.xvr"
        steps["capture_a"] = capture(args.model, a, args.batch)
        steps["capture_b"] = capture(args.model, b, args.batch, budget=5e8)  # other chunks than a
        steps["saved_vs_live"] = compare(str(a), args.model, work / "r.json", "--dst", "keras")
        steps["saved_vs_saved"] = compare(str(a), str(b), work / "r.json")
        steps["live_vs_live"] = compare(args.model, args.model, work / "r.json", "--src", "keras", "--dst", "keras",
                                        "--batch", str(args.batch))
        a.unlink()
        b.unlink()
        if args.large:
            need = args.large * RESNET50_BYTES_PER_SAMPLE
            free = shutil.disk_usage(work).free
            if free < 1.5 * need:
                raise SystemExit(f"{work}: {free / 1e9:.1f} GB free, the batch-{args.large} file needs {need / 1e9:.1f}")
            big = work / "large.xvr"
            steps["capture_large"] = capture(args.model, big, args.large)
            steps["large_saved_vs_live"] = compare(str(big), args.model, work / "r.json", "--dst", "keras")
            if shutil.disk_usage(work).free > 1.5 * need:  # room for a second one: two saved sides, no worker at all
                big2 = work / "large2.xvr"
                steps["capture_large_2"] = capture(args.model, big2, args.large, budget=1e9)
                steps["large_saved_vs_saved"] = compare(str(big), str(big2), work / "r.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    for name, r in steps.items():
        size = f", {r['bytes'] / 1e9:.2f} GB" if r.get("bytes") else ""
        verdict = f", passed={r.get('passed')} pairs={r.get('pairs')} chunk={r.get('chunk')}" if "pairs" in r else ""
        print(f"{name}: exit {r['exit']}, {r['seconds']:.1f} s, peak {r['peak_gib']:.2f} GiB{size}{verdict}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
