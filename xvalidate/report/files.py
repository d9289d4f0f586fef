"""Atomic writes of report and output files: a temporary file in the target's directory, then a
rename. A reader, or an interrupted run, never sees half a file; an error leaves no temporary."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO, Mapping

import numpy as np

from xvalidate.errors import OptionError


def write_atomic(path: str | os.PathLike, text: str) -> str:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write `data` to `path` atomically."""
    return _atomic(path, lambda f: f.write(data))


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> str:
    """np.savez to `path` atomically (numpy adds no .npz suffix here: `path` is used as given)."""
    return _atomic(path, lambda f: np.savez(f, **arrays))


def temporary_beside(target: Path) -> tuple[int, str]:
    """(descriptor, path) of a new temporary file `.NAME.*.tmp` next to `target`, on the same file system
    so that a rename puts it in place; OptionError when the directory is missing or not writable."""
    if not target.parent.is_dir():
        raise OptionError(f"{target}: directory {target.parent} does not exist")
    try:
        return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OptionError(f"{target}: cannot write in {target.parent} ({exc.strerror})") from None


def new_file_mode() -> int:
    """The permissions a new file gets under the process's umask (mkstemp's temporaries get 0o600)."""
    return 0o666 & ~_umask()


def _atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> str:
    target = Path(path)
    fd, tmp = temporary_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OptionError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise
    return str(target)


def _umask() -> int:
    """The process's umask, read without changing it (other threads may be creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
