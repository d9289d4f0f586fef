"""Worker environments: Python virtual environments of their own for workers whose packages clash
with the main environment's (two packages that both install a top-level `keras`, say).

A route or an adapter declares one with an `Environment` (its `environment` attribute): a name, a
pinned requirement list, and the modules of this project its worker runs. xvalidate creates the
venv on first use under `env_dir()` (a plain venv, no system site-packages, then `pip install` of
the pinned list), or by hand with `xvalidate env create NAME`. A file `xvalidate-env.json` written
last marks a finished environment; an environment without it, or whose pins changed, is created
again.

The worker in such an environment runs the same protocol (`xvalidate.worker`) over the same
shared memory. It does not import the installed xvalidate: the modules it needs (the worker, its
errors and shared-memory helpers, the registry, and the modules the declaration lists) are
copied into `<env>/ship/<digest>/` with empty package `__init__` files, so they need only numpy
and the standard library besides what the environment installs.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xvalidate.errors import OptionError, WorkerError

MARKER = "xvalidate-env.json"
# the modules every worker runs: the protocol, what it imports, and the registry (adapters by name)
WORKER_MODULES = ("xvalidate.worker", "xvalidate.errors", "xvalidate.shm", "xvalidate.registry")
PIP_TIMEOUT = float(os.environ.get("XVALIDATE_ENV_TIMEOUT", "900"))


@dataclass(frozen=True)
class Environment:
    """A worker environment.

    name:         what `xvalidate env create NAME` takes; also the venv's folder name.
    requirements: the pinned pip requirements (`package==version`).
    modules:      this project's modules the worker imports besides the worker's own.
    variables:    environment variables of its workers; "{private}" in a value becomes a directory
                  of that worker's own (removed with it).
    check:        Python code run once the packages are installed; it must exit 0.
    """

    name: str
    requirements: tuple[str, ...]
    modules: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    check: str = "import numpy"

    @property
    def path(self) -> Path:
        """The venv's directory."""
        return env_dir() / self.name

    @property
    def python(self) -> Path:
        """The venv's Python."""
        return self.path / "bin" / "python"

    def pins_digest(self) -> str:
        """What the marker records: the pins and the Python version they were installed for."""
        text = json.dumps([sorted(self.requirements), sys.version_info[:2]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def env_dir() -> Path:
    """Where worker environments live: $XVALIDATE_ENV_DIR, else `envs/` under the cache directory."""
    if os.environ.get("XVALIDATE_ENV_DIR"):
        return Path(os.environ["XVALIDATE_ENV_DIR"])
    from xvalidate.cache import cache_dir
    return cache_dir() / "envs"


def rebuild_hint(env: Environment) -> str:
    """The command that rebuilds `env`."""
    return f"xvalidate env create {env.name} --force"


def declared_environments() -> dict[str, Environment]:
    """{name: Environment} of every registered route and adapter that declares one."""
    from xvalidate.errors import UnknownAdapterError
    from xvalidate.registry import adapter_names, get_adapter, get_route, route_names

    found: dict[str, Environment] = {}
    for names, get in ((route_names(), get_route), (adapter_names(), get_adapter)):
        for name in names:
            try:
                env = getattr(get(name), "environment", None)
            except UnknownAdapterError:
                continue
            if isinstance(env, Environment):
                found.setdefault(env.name, env)
    return found


def environment_named(name: str) -> Environment:
    """The declared environment `name`; OptionError naming the known ones otherwise."""
    known = declared_environments()
    if name not in known:
        raise OptionError(f"unknown environment {name!r}; expected one of: {', '.join(sorted(known)) or 'none'}")
    return known[name]


def is_ready(env: Environment) -> bool:
    """True when `env` was created completely for its current pins."""
    try:
        marker = json.loads((env.path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("pins") == env.pins_digest() and env.python.exists()


def creation_seconds(env: Environment) -> float | None:
    """How long creating `env` took, as its marker records (None when it is not created)."""
    try:
        return float(json.loads((env.path / MARKER).read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure(env: Environment, report: Callable[[str], None] | None = None) -> Path:
    """The Python of `env`, creating the environment first when it is missing or its pins changed
    (with a progress line on stderr, or through `report`). Processes that need it at once wait
    on a lock; the second one finds it made."""
    return env.python if is_ready(env) else create(env, report=report)


def create(env: Environment, force: bool = False, report: Callable[[str], None] | None = None) -> Path:
    """Create `env` (again, with `force`); return its Python. A failure removes the half-made venv and
    raises WorkerError in one line."""
    say = report or (lambda line: print(line, file=sys.stderr, flush=True))
    root = env_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(root / f".{env.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise WorkerError(f"worker environment {env.name}: cannot write {root} ({exc.strerror or exc}); "
                          f"set XVALIDATE_ENV_DIR to a writable directory") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if is_ready(env) and not force:  # made by another process while we waited
            return env.python
        say(f"xvalidate: creating worker environment {env.name} in {env.path} (once; pip install "
            f"{len(env.requirements)} pinned packages)")
        start = time.perf_counter()
        shutil.rmtree(env.path, ignore_errors=True)
        try:
            _build(env)
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise
        seconds = time.perf_counter() - start
        (env.path / MARKER).write_text(json.dumps({"pins": env.pins_digest(), "requirements": list(env.requirements),
                                                   "seconds": round(seconds, 1), "created": time.time()}))
        say(f"xvalidate: worker environment {env.name} ready in {seconds:.0f} s")
        return env.python
    finally:
        os.close(lock_fd)  # releases the lock


def _build(env: Environment) -> None:
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [("create the venv", [base, "-m", "venv", *([] if env.requirements else ["--without-pip"]), str(env.path)])]
    if env.requirements:
        steps.append(("install its packages", [str(env.python), "-m", "pip", "install", "--quiet",
                                               "--disable-pip-version-check", *env.requirements]))
    steps.append(("check it", [str(env.python), "-c", env.check]))
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    for what, cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, env=clean,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkerError(f"worker environment {env.name}: could not {what} ({exc}); "
                              f"retry with `{rebuild_hint(env)}`") from None
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            last = lines[-1][:300] if lines else f"exit code {done.returncode}"
            raise WorkerError(f"worker environment {env.name}: could not {what} ({last}); "
                              f"retry with `{rebuild_hint(env)}`")


def ship(env: Environment) -> Path:
    """The directory to put on the worker's PYTHONPATH: a copy of the modules its worker runs, with
    empty package `__init__` files, made once per content (`<env>/ship/<digest>/`)."""
    files: dict[str, bytes] = {}
    for module in WORKER_MODULES + tuple(env.modules):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise WorkerError(f"worker environment {env.name}: cannot find module {module} to ship")
        parts = module.split(".")
        for depth in range(1, len(parts)):
            files.setdefault("/".join(parts[:depth]) + "/__init__.py", b"")
        files["/".join(parts) + ".py"] = Path(spec.origin).read_bytes()
    digest = hashlib.sha256(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                            .encode()).hexdigest()[:16]
    target = env.path / "ship" / digest
    if target.is_dir():
        os.utime(target)  # in use: kept by _prune_shipped
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    try:
        os.rename(work, target)
    except OSError:  # another process shipped the same content first
        shutil.rmtree(work, ignore_errors=True)
    _prune_shipped(target.parent, SHIPPED_KEPT_SECONDS)
    return target


SHIPPED_KEPT_SECONDS = 24 * 3600


def _prune_shipped(folder: Path, seconds: float) -> None:
    """Remove the copies of other versions of the shipped modules (and half-made ones) not used for
    `seconds`: each version of xvalidate ships its own, and a worker imports them when it starts."""
    limit = time.time() - seconds
    for entry in folder.iterdir():
        try:
            if entry.is_dir() and entry.stat().st_mtime < limit:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:  # removed meanwhile by another process
            continue
