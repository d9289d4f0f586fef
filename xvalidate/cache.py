"""The conversion cache.

A converted model is kept under the cache directory, keyed by the SHA-256 of the
model file's content, the route and its options, the source and destination
adapters, and the versions of xvalidate and of the route's packages. Validating
the same model again reuses it. Location: $XVALIDATE_CACHE_DIR, else
$XDG_CACHE_HOME/xvalidate, else ~/.cache/xvalidate. Delete the directory to
clear it; pass cache=False (CLI: --no-cache) to bypass it.

Safety: the directory and its entries are private (0700): routes' pickled weights
and generated code live there. An entry is built in a private temporary directory
and renamed into place in one step, with a manifest of its files' SHA-256 digests;
an entry whose files no longer match is moved aside and built again. Processes
converting the same model at once wait on one lock per key (flock, released by the
kernel if its holder dies), so the second one reuses the first one's entry. A cache
directory that cannot be written is replaced, for this process, by a temporary
one, with a one-line warning.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

from xvalidate.errors import ConversionError, UnknownAdapterError
from xvalidate.hashing import file_sha256
from xvalidate.registry import get_adapter, get_route
from xvalidate.routes.base import CONVERSION_FORMAT, Conversion

MANIFEST = "manifest.json"
_fallback: Path | None = None


def cache_dir() -> Path:
    """Where conversions are cached."""
    if os.environ.get("XVALIDATE_CACHE_DIR"):
        return Path(os.environ["XVALIDATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xvalidate"


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700; raise OSError when that is impossible
    or when it belongs to someone else."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    probe = tempfile.TemporaryFile(dir=path)  # writable, and room for at least a file
    probe.write(b"x")
    probe.close()
    return path


def usable_cache_dir() -> Path:
    """The cache directory, or (once per process, with a one-line warning) a temporary one when it
    cannot be written: read-only, full, or someone else's."""
    global _fallback
    root = cache_dir()
    if _fallback is not None:
        return _fallback
    try:
        return private_dir(root)
    except OSError as exc:
        _fallback = Path(tempfile.mkdtemp(prefix=f"xvalidate-{os.getpid()}-cache-"))  # pid: see shm.py
        atexit.register(shutil.rmtree, _fallback, True)
        reason = exc.strerror or str(exc)
        print(f"xvalidate: warning: cache directory {root} is not usable ({reason}); "
              f"caching in {_fallback} for this run", file=sys.stderr)
        return _fallback


def _file_digest(path: Path, adapter: str | None = None) -> str:
    """The digest of a model's content: every file its adapter says makes it up (a directory: every
    file under it, with its relative name)."""
    h = hashlib.sha256()
    parts = [Path(p) for p in _model_files(path, adapter)]
    for part in parts:
        files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
        for f in files:
            if part.is_dir():
                h.update(str(f.relative_to(part)).encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _model_files(path: Path, adapter: str | None) -> list[str]:
    try:
        return get_adapter(adapter).model_files(str(path)) if adapter else [str(path)]
    except UnknownAdapterError:  # a route between names no adapter is registered for: the file alone
        return [str(path)]


def cache_key(source: str, via: str, src: str, dst: str, options: Mapping[str, Any]) -> str:
    """The cache key of converting `source` from `src` to `dst` through route `via`."""
    route = get_route(via)
    versions = {}
    for pkg in ("xvalidate",) + tuple(route.packages):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    environment = getattr(route, "environment", None)  # a route converting in a worker environment of its own
    if environment is not None:
        versions["environment"] = f"{environment.name}:{environment.pins_digest()}"
    meta = json.dumps({"via": via, "src": src, "dst": dst, "options": dict(options), "versions": versions,
                       "format": CONVERSION_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256((_file_digest(Path(source), src) + meta).encode()).hexdigest()[:32]


def write_manifest(entry: Path) -> None:
    """Record the SHA-256 of every file of an entry (the manifest itself excepted)."""
    digests = {str(p.relative_to(entry)): file_sha256(p) for p in sorted(entry.rglob("*"))
               if p.is_file() and p.name != MANIFEST}
    (entry / MANIFEST).write_text(json.dumps(digests, indent=0))


def entry_intact(entry: Path) -> bool:
    """True when every file the manifest lists is there with its recorded digest."""
    try:
        digests = json.loads((entry / MANIFEST).read_text())
        return bool(digests) and all(file_sha256(entry / name) == digest for name, digest in digests.items())
    except (OSError, ValueError, AttributeError):
        return False


def convert_cached(via: str, source: str, src: str, dst: str, options: Mapping[str, Any],
                   use_cache: bool = True) -> Conversion:
    """Convert through route `via`, or reuse the cached conversion of the same content."""
    route = get_route(via)
    route.check(src, dst)
    if not use_cache:
        out = Path(tempfile.mkdtemp(prefix=f"xvalidate-{os.getpid()}-{via}-"))
        atexit.register(shutil.rmtree, out, True)
        return route.convert(source, src, dst, out, **options)
    root = usable_cache_dir()
    remove_orphans(root)
    key = cache_key(source, via, src, dst, options)
    entry = root / key
    with _locked(root / f".{key}.lock"):
        if entry.is_dir():
            if (entry / "conversion.json").is_file() and entry_intact(entry):
                return Conversion.load(entry)
            _discard(entry)  # corrupted, or left half-made by an older version: build it again
        for orphan in root.glob(f".partial-{key}-*"):  # we hold the key's lock: their makers are dead
            shutil.rmtree(orphan, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".partial-{key}-", dir=root))
        try:
            conversion = route.convert(source, src, dst, work, **options)
            conversion.save(work)
            write_manifest(work)
            os.rename(work, entry)
        except OSError as exc:
            raise ConversionError(f"cache {root}: cannot store the conversion ({exc.strerror or exc}); "
                                  f"run with --no-cache or set XVALIDATE_CACHE_DIR") from None
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    result = Conversion.load(entry)
    result.cache_hit = False
    result.seconds = conversion.seconds
    return result


def remove_orphans(root: Path) -> int:
    """Remove half-made entries whose maker died (its key's lock is free) and leftovers of discarded
    entries; return how many directories went."""
    removed = 0
    for orphan in root.glob(".partial-*"):
        key = orphan.name[len(".partial-"):].split("-")[0]
        lock = root / f".{key}.lock"
        if len(key) != 32 or not lock.exists():
            continue  # an older version's partial, or one whose maker has not taken its lock yet
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # being made right now
        finally:
            os.close(fd)  # closing releases the lock if we took it
        shutil.rmtree(orphan, ignore_errors=True)
        removed += 1
    for leftover in root.glob(".stale-*"):
        try:
            old = time.time() - leftover.stat().st_mtime > 600  # a young one may still be in use
        except OSError:
            continue
        if old:
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    return removed


def _discard(entry: Path) -> None:
    """Move an entry out of the way in one step, then delete it (a reader never sees half of it)."""
    aside = Path(tempfile.mkdtemp(prefix=".stale-", dir=entry.parent))
    try:
        os.rename(entry, aside / "entry")
    except OSError:
        pass
    shutil.rmtree(aside, ignore_errors=True)


class _locked:
    """An exclusive flock on `path` for the duration of a with-block."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "_locked":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
