"""The conversion cache.

A converted model is kept under the cache directory, keyed by the SHA-256 of the
model file's content, the route and its options, the source and destination
adapters, and the versions of xvalidate and of the route's packages. Validating
the same model again reuses it. Location: $XVALIDATE_CACHE_DIR, else
$XDG_CACHE_HOME/xvalidate, else ~/.cache/xvalidate. Delete the directory to
clear it; pass cache=False (CLI: --no-cache) to bypass it.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

from xvalidate.registry import get_route
from xvalidate.routes.base import Conversion


def cache_dir() -> Path:
    """Where conversions are cached."""
    if os.environ.get("XVALIDATE_CACHE_DIR"):
        return Path(os.environ["XVALIDATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xvalidate"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    if path.name.endswith("-symbol.json"):  # an MXNet model is its symbol and the params beside it
        for params in sorted(path.parent.glob(path.name[: -len("-symbol.json")] + "-*.params")):
            h.update(params.read_bytes())
    return h.hexdigest()


def cache_key(source: str, via: str, src: str, dst: str, options: Mapping[str, Any]) -> str:
    """The cache key of converting `source` from `src` to `dst` through route `via`."""
    route = get_route(via)
    versions = {}
    for pkg in ("xvalidate",) + tuple(route.packages):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    meta = json.dumps({"via": via, "src": src, "dst": dst, "options": dict(options), "versions": versions},
                      sort_keys=True, default=str)
    return hashlib.sha256((_file_digest(Path(source)) + meta).encode()).hexdigest()[:32]


def convert_cached(via: str, source: str, src: str, dst: str, options: Mapping[str, Any],
                   use_cache: bool = True) -> Conversion:
    """Convert through route `via`, or reuse the cached conversion of the same content."""
    route = get_route(via)
    route.check(src, dst)
    if not use_cache:
        out = Path(tempfile.mkdtemp(prefix=f"xvalidate-{via}-"))
        atexit.register(shutil.rmtree, out, True)
        return route.convert(source, src, dst, out, **options)
    root = cache_dir()
    entry = root / cache_key(source, via, src, dst, options)
    if (entry / "conversion.json").is_file():
        return Conversion.load(entry)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        conversion = route.convert(source, src, dst, work, **options)
        conversion.save(work)
        try:
            os.rename(work, entry)
        except OSError:  # another process cached it first
            shutil.rmtree(work, ignore_errors=True)
        result = Conversion.load(entry)
        result.cache_hit = False
        result.seconds = conversion.seconds
        return result
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
