"""Running one cell of a sweep: validate(), its reports written under the output folder, and the
record the sweep stores. Runs in an executor's process (a pool process, a Ray task)."""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from xvalidate.console import EXIT_DIVERGE, EXIT_ERROR, EXIT_PASS
from xvalidate.sweep.plan import Cell

# the record of a cell, in the order of the store's columns
FIELDS = ("key", "model", "src", "dst", "via", "input_set", "status", "exit_code", "error", "started", "seconds",
          "convert_seconds", "paired", "src_layers", "final_layer", "final_max_abs", "final_passed",
          "final_is_output", "worst_layer", "worst_max_abs", "reason", "report_html", "report_json", "error_file")


def context() -> dict[str, Any]:
    """What a cell's process needs of the caller's to see the same adapters and routes: the module
    search path and the XVALIDATE_* environment (registrations, cache folder, worker timeout)."""
    return {"sys_path": [p for p in sys.path if p],
            "env": {k: v for k, v in os.environ.items() if k.startswith("XVALIDATE_")}}


def apply_context(ctx: Mapping[str, Any] | None) -> None:
    """Make this process see what the caller saw (a no-op where it already does)."""
    if not ctx:
        return
    for path in reversed(ctx.get("sys_path", ())):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.update(ctx.get("env", {}))


def run_cell(cell: Cell, out_dir: str, ctx: Mapping[str, Any] | None = None, fresh_workers: bool = False) -> dict:
    """Validate one cell; write its HTML and JSON reports (or, when it raised, an error.txt with the
    traceback) under out_dir/cells/<slug>/; return its record (FIELDS). Never raises for a failed
    conversion or comparison: that is an ERROR record with the one-line message. fresh_workers:
    stop this process's framework workers afterwards (memory goes back at once)."""
    apply_context(ctx)
    import xvalidate
    from xvalidate.worker import set_timeout, shutdown_workers

    folder = Path(out_dir) / "cells" / cell.slug
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {k: None for k in FIELDS}
    record.update(key=cell.key, model=cell.model, src=cell.src, dst=cell.dst, via=cell.via,
                  input_set=cell.input_set.name, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    options = dict(cell.options)
    timeout = options.pop("timeout", None)
    start = time.perf_counter()
    try:
        if timeout:
            set_timeout(timeout)
        report = xvalidate.validate(cell.model, src=cell.src, dst=cell.dst, via=cell.via, inputs=cell.input_set.inputs,
                                    seed=cell.input_set.seed, batch=cell.input_set.batch, **options)
        record.update(summarize(report))
        record["report_json"] = _relative(report.to_json(str(folder / "report.json")), out_dir)
        record["report_html"] = _relative(report.to_html(str(folder / "report.html")), out_dir)
    except Exception as exc:  # noqa: BLE001 (a cell's failure is its record, never the sweep's)
        message = str(exc) if isinstance(exc, xvalidate.XValidateError) else f"{type(exc).__name__}: {exc}"
        record.update(status="ERROR", exit_code=EXIT_ERROR, error=one_line(message))
        (folder / "error.txt").write_text(f"{record['error']}\n\n{traceback.format_exc()}")
        record["error_file"] = _relative(str(folder / "error.txt"), out_dir)
    finally:
        if fresh_workers:
            shutdown_workers()
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


def summarize(report: Any) -> dict[str, Any]:
    """The record's fields that a finished report gives: verdict, pairs, final and worst differences."""
    rows = report.layers
    last = max(rows, key=lambda r: r.index) if rows else None
    worst = report.worst(1)[0] if rows else None
    out = {
        "status": "PASS" if report.passed else "FAIL",
        "exit_code": EXIT_PASS if report.passed else EXIT_DIVERGE,
        "convert_seconds": round(report.timings.get("convert", 0.0), 2),
        "paired": len(rows),
        "src_layers": report.meta["layers"]["src"],
        "final_layer": None if last is None else last.src,
        "final_max_abs": None if last is None else last.metrics.get("max_abs"),
        "final_passed": None if last is None else bool(last.passed),
        "final_is_output": last is not None and last.index == report.meta["layers"]["src"] - 1,
        "worst_layer": None if worst is None else worst.src,
        "worst_max_abs": None if worst is None else worst.metrics.get("max_abs"),
    }
    if not report.passed:
        first = report.first_divergence
        where = f"layer {first.src!r} ({first.src_op})" if first else "no layer pairs"
        out["reason"] = one_line(f"{where}: {first.cause if first and first.cause else ''}".strip(": "))
    return out


def one_line(text: str) -> str:
    """`text` with its whitespace runs folded into single spaces."""
    return " ".join(str(text).split())


def _relative(path: str, root: str) -> str:
    return os.path.relpath(path, root)
