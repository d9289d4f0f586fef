"""Atomic writes of report files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from xvalidate.errors import OptionError


def write_atomic(path: str | os.PathLike, text: str) -> str:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    target = Path(path)
    if not target.parent.is_dir():
        raise OptionError(f"{target}: directory {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(target)
