"""Shared-memory files that cannot outlive their users, and removal of those that did.

Arrays move between processes in anonymous files (`memfd_create`): they have no name
in /dev/shm and are freed with the last descriptor or mapping, so a `kill -9` of
any process leaks nothing. Where memfd is missing, a file is created in /dev/shm
with the creator's pid in its name and unlinked at once.

`clean_stale_files()` removes what earlier versions or dead processes left behind:
`xvalidate-<pid>-*` files and directories (temporary models, conversions made without the
cache) whose process is gone, and older unnamed-pid `xvalidate-*.bin` /
`xvalidate-<adapter>-*.log` files that no process holds open.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_PID_NAME = re.compile(r"^xvalidate-(\d+)-")
_LEGACY_NAME = re.compile(r"^xvalidate-(?:[A-Za-z0-9_]{8}\.bin|[a-z]+-[A-Za-z0-9_]{8}\.log)$")
_LEGACY_MIN_AGE = 120.0  # seconds: a file that young may be between its writer and its reader


def new_memory_file() -> int:
    """A descriptor of a new, empty, anonymous shared-memory file."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("xvalidate-arrays", os.MFD_CLOEXEC)
    fd, path = tempfile.mkstemp(prefix=f"xvalidate-{os.getpid()}-", suffix=".bin", dir=SHM_DIR)
    os.unlink(path)
    return fd


def stale_files(directories: tuple[str | None, ...] = (SHM_DIR, tempfile.gettempdir())) -> list[Path]:
    """xvalidate's files in `directories` that belong to no live process."""
    import psutil

    found, legacy = [], []
    now = time.time()
    for directory in filter(None, dict.fromkeys(directories)):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            pid = _PID_NAME.match(entry.name)
            if entry.is_dir(follow_symlinks=False):
                if pid and not psutil.pid_exists(int(pid.group(1))):
                    found.append(Path(entry.path))
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            if pid:
                if not psutil.pid_exists(int(pid.group(1))):
                    found.append(Path(entry.path))
            elif _LEGACY_NAME.match(entry.name):
                try:
                    if now - entry.stat().st_mtime > _LEGACY_MIN_AGE:
                        legacy.append(Path(entry.path))
                except OSError:
                    pass
    if legacy:
        held = _held_files()
        found += [p for p in legacy if str(p) not in held]
    return found


def clean_stale_files(directories: tuple[str | None, ...] | None = None) -> tuple[int, int]:
    """Remove the files `stale_files()` finds; return (files removed, bytes freed)."""
    count = size = 0
    for path in stale_files() if directories is None else stale_files(directories):
        try:
            if path.is_dir():
                nbytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                shutil.rmtree(path)
            else:
                nbytes = path.stat().st_size
                path.unlink()
        except OSError:
            continue
        count, size = count + 1, size + nbytes
    return count, size


def _held_files() -> set[str]:
    """Paths that some process we can inspect has open or mapped."""
    held: set[str] = set()
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
            with open(f"/proc/{pid}/maps") as maps:
                held.update(line.split(None, 5)[5].strip() for line in maps if "/xvalidate-" in line)
        except (OSError, IndexError):
            continue
    return held
