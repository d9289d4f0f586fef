"""Terminal output shared by the CLI and the demo: exit codes, consoles and stage progress."""
from __future__ import annotations

import sys
from typing import Any

EXIT_PASS, EXIT_DIVERGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def stderr_console():
    """A rich console on stderr (progress, errors)."""
    from rich.console import Console
    return Console(stderr=True)


def stdout_console():
    """The console for tables: the terminal's width, or 150 columns when the output is a file or pipe."""
    from rich.console import Console
    return Console(width=None if sys.stdout.isatty() else 150)


class Progress:
    """Stage progress on a terminal (rich); silent when not enabled (stderr is not a TTY)."""

    LABELS = {"convert": "converting", "load": "loading models", "run": "running both models", "diff": "comparing"}

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
            self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                          TextColumn("{task.completed}/{task.total}"),
                                          TimeElapsedColumn(), console=stderr_console(), transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        label = self.LABELS.get(stage, stage)
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)
