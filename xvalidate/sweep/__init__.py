"""Sweeps: many models x routes x input sets, each cell one validate(), run by an executor (a local
process pool, or Ray), recorded in SQLite in the output folder so that a rerun skips the cells
already done, and shown as one HTML matrix page linking each cell's report.

    from xvalidate.sweep import sweep
    result = sweep(["a.h5", "b.h5"], dst="mxnet", routes="mmdnn,onnx", out="sweep-out", workers=2)
    result.exit_code, result.matrix
"""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Sequence

from xvalidate.console import EXIT_PASS
from xvalidate.errors import OptionError
from xvalidate.sweep.plan import Cell, InputSet, input_sets, parse_routes, plan, source_adapter

__all__ = ["sweep", "run_cells", "SweepResult", "Cell", "InputSet", "plan", "parse_routes", "input_sets",
           "source_adapter", "EXECUTORS", "MATRIX"]

EXECUTORS = ("local", "ray")
MATRIX = "index.html"


@dataclass
class SweepResult:
    """records: the plan's cell records, in plan order (FIELDS of xvalidate.sweep.cell); ran: cells run
    now; skipped: cells whose record was already in the folder; matrix: the HTML page's path."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    matrix: str = ""

    @property
    def exit_code(self) -> int:
        """The worst cell's exit code: 0 all pass, 1 a divergence, 2 an error."""
        return max((r["exit_code"] for r in self.records), default=EXIT_PASS)


def sweep(models: Sequence[str], dst: str, routes: str | Sequence[tuple[str, str]], *,
          out: str | Path, src: str | None = None, inputs: Sequence[str] = (), seeds: Sequence[int] = (),
          batch: int = 1, executor: str = "local", workers: int = 1, address: str | None = None,
          redo: bool = False, progress: Callable[[str, int, int], None] | None = None,
          **options: Any) -> SweepResult:
    """Validate every model through every route on every input set (a file of `inputs`, or random
    data of each seed in `seeds`, `batch` samples). routes: "mmdnn,onnx" (each to `dst`) or
    "ROUTE:DST" items, or [(via, dst)]. options: further validate() arguments (atol, rtol,
    tolerances, cache, trust_model, timeout)."""
    route_list = parse_routes(routes, dst) if isinstance(routes, str) else list(routes)
    cells = plan(models, route_list, input_sets(inputs, seeds, batch), src=src, options=options)
    return run_cells(cells, out, executor=executor, workers=workers, address=address, redo=redo, progress=progress)


def run_cells(cells: Sequence[Cell], out: str | Path, *, executor: str = "local", workers: int = 1,
              address: str | None = None, redo: bool = False, fresh_workers: bool = False,
              progress: Callable[[str, int, int], None] | None = None) -> SweepResult:
    """Run the cells not yet recorded in `out` (all of them with redo), record each as it finishes,
    and write the matrix of every cell the folder holds. fresh_workers: each cell stops its
    framework workers when done (one model in memory at a time)."""
    from xvalidate.report.sweep import write_matrix
    from xvalidate.sweep.store import Store

    if executor not in EXECUTORS:
        raise OptionError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers < 1:
        raise OptionError(f"--workers: expected a positive number of processes, got {workers}")
    if address and executor != "ray":
        raise OptionError("--address: only the ray executor joins a cluster; add --executor ray")
    folder = _folder(out)
    cells = list({cell.key: cell for cell in cells}.values())
    with Store(folder) as store:
        if redo:
            store.forget(cell.key for cell in cells)
        done = store.done()
        todo = [cell for cell in cells if cell.key not in done]
        result = SweepResult(ran=0, skipped=len(cells) - len(todo), matrix=str(folder / MATRIX))
        _notify(progress, result.skipped, len(cells))
        write_matrix(store.records(), result.matrix)
        with closing(_execute(executor, todo, str(folder), workers, address, fresh_workers)) as finished:
            for _, record in finished:  # recorded as each finishes: an interrupted sweep resumes from here
                store.put(record)
                result.ran += 1
                _notify(progress, result.skipped + result.ran, len(cells))
                write_matrix(store.records(), result.matrix)
        by_key = {r["key"]: r for r in store.records(cell.key for cell in cells)}
    result.records = [by_key[cell.key] for cell in cells if cell.key in by_key]
    return result


def _execute(executor: str, cells: Sequence[Cell], out: str, workers: int, address: str | None,
             fresh_workers: bool) -> Generator[tuple[Cell, dict], None, None]:
    if executor == "ray":
        from xvalidate.sweep.ray_executor import run_ray
        return run_ray(cells, out, workers, address, fresh_workers)
    from xvalidate.sweep.local import run_local
    return run_local(cells, out, workers, fresh_workers)


def _folder(out: str | Path) -> Path:
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    return folder.resolve()


def _notify(progress: Callable[[str, int, int], None] | None, done: int, total: int) -> None:
    if progress is not None:
        progress("cells", done, total)
