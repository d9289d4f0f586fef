"""The local executor: a pool of N processes (spawned, so none inherits a framework or a lock),
each cell one call of run_cell. Its processes keep their framework workers between cells and stop
them when the pool shuts down."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Iterator, Sequence

from xvalidate.console import EXIT_ERROR
from xvalidate.sweep.cell import FIELDS, context, one_line, run_cell
from xvalidate.sweep.plan import Cell

LOST_CHARS = 300


def run_local(cells: Sequence[Cell], out_dir: str, workers: int = 1,
              fresh_workers: bool = False) -> Iterator[tuple[Cell, dict]]:
    """(cell, record) for every cell, as each finishes, `workers` cells at a time."""
    if not cells:
        return
    ctx = context()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=multiprocessing.get_context("spawn"))
    pending: dict[Future, Cell] = {}
    try:
        pending = {pool.submit(run_cell, cell, out_dir, ctx, fresh_workers): cell for cell in cells}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = pending.pop(future)
                try:
                    yield cell, future.result()
                except Exception as exc:  # noqa: BLE001 (the cell's process died: a record, not a crash)
                    yield cell, lost(cell, f"the cell's process failed: {type(exc).__name__}: {exc}")
    finally:
        if pending:  # interrupted: stop the pool's processes now (their framework workers die with them)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


def lost(cell: Cell, message: str) -> dict:
    """The ERROR record of a cell whose process died before it could record anything."""
    record = {name: None for name in FIELDS}
    message = one_line(message)
    if len(message) > LOST_CHARS:  # an executor's own report can run to pages (Ray's memory monitor)
        message = message[:LOST_CHARS] + "..."
    record.update(key=cell.key, model=cell.model, src=cell.src, dst=cell.dst, via=cell.via,
                  input_set=cell.input_set.name, status="ERROR", exit_code=EXIT_ERROR, error=message)
    return record
