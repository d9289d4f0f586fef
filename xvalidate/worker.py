"""Framework worker processes.

TensorFlow and MXNet crash when loaded into one process, so every adapter runs in
a process of its own: `get_worker("keras")` starts (once) a Python process that
imports only what the keras adapter needs, and talks to it over a socket pair.

Small requests and answers are pickled; arrays never are. They travel through
one file in shared memory (/dev/shm): the sender writes every array into it
once, the receiver maps the file (copy-on-write) and unlinks it, so moving
150 MB costs one memcpy. A worker that dies, or answers nothing within its time
limit, becomes a `WorkerError` naming the adapter and what happened.

Run as `python -m xvalidate.worker FD ADAPTER` by `Worker` itself.
"""
from __future__ import annotations

import atexit
import importlib
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from xvalidate import errors

DEFAULT_TIMEOUT = float(os.environ.get("XVALIDATE_WORKER_TIMEOUT", "1800"))
_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# Quiet framework logs; MXNet's oneDNN graph fusion must be off, or capturing intermediate outputs
# skips fused ops (a ReLU6 after a conv) or fails to bind.
_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0",
               "MXNET_SUBGRAPH_BACKEND": "NONE"}


# ---------------------------------------------------------------- array files
def write_arrays(arrays: Mapping[str, np.ndarray], path: str | None = None) -> dict:
    """Write arrays into one shared-memory file (a new one, or `path` overwritten from its start: its
    pages are already allocated, which makes the write a plain memcpy); return its index."""
    if path is None:
        fd, path = tempfile.mkstemp(prefix="xvalidate-", suffix=".bin", dir=_SHM_DIR)
    else:
        fd = os.open(path, os.O_WRONLY)
    entries, offset = [], 0
    with os.fdopen(fd, "wb", buffering=0) as f:
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            entries.append((name, arr.dtype.str, arr.shape, offset))
            if arr.nbytes:
                f.write(memoryview(arr).cast("B"))
            offset += arr.nbytes
            pad = -offset % 64  # keep every array aligned
            if pad:
                f.write(b"\0" * pad)
                offset += pad
    return {"path": path, "entries": entries, "nbytes": offset}


def read_arrays(index: Mapping, on_release: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Map a file written by `write_arrays`; arrays are copy-on-write views of the mapping.

    Without `on_release` the file is deleted at once. With it, the file is kept and
    `on_release(path)` is called once no returned array is alive any more (the mapping is
    gone), so that the file can be written again."""
    path = index["path"]
    try:
        if index["nbytes"] == 0:
            return {name: np.empty(shape, dtype) for name, dtype, shape, _ in index["entries"]}
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), index["nbytes"], access=mmap.ACCESS_COPY)
        out = {}
        for name, dtype, shape, offset in index["entries"]:
            count = int(np.prod(shape, dtype=np.int64))
            out[name] = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)
        if on_release is not None:
            weakref.finalize(buf, on_release, path)
            path = None
        return out
    finally:
        if path is not None:
            _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- parent side
def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Worker:
    """A process running one adapter. Use `get_worker(name)` rather than creating these."""

    def __init__(self, adapter: str, timeout: float | None = None):
        self.adapter = adapter
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._lock = threading.Lock()
        parent_sock, child_sock = socket.socketpair()
        self.log_path = tempfile.mkstemp(prefix=f"xvalidate-{adapter}-", suffix=".log")[1]
        env = dict(os.environ, **_WORKER_ENV)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "xvalidate.worker", str(child_sock.fileno()), adapter],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )
        child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._free_buffers: list[str] = []  # output files whose arrays are all gone: written again
        self._buffers: set[str] = set()

    # -- public requests
    def layers(self, source: str) -> list:
        """The adapter's LayerInfo list for the model at `source`."""
        from xvalidate_adapters.base import LayerInfo
        return [LayerInfo.from_dict(d) for d in self._request("layers", str(source))]

    def input_info(self, source: str):
        """The adapter's InputInfo for the model at `source`."""
        from xvalidate_adapters.base import InputInfo
        return InputInfo.from_dict(self._request("input_info", str(source)))

    def run(self, source: str, x: np.ndarray, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Capture the asked layers (all when None) of the model at `source` in one forward pass."""
        x_index = write_arrays({"x": np.asarray(x)})
        reuse = self._free_buffers.pop() if self._free_buffers else None
        try:
            index = self._request("run", str(source), x_index, None if layers is None else list(layers), reuse)
        finally:
            _unlink(x_index["path"])
        self._buffers.add(index["path"])
        return read_arrays(index, self._release)

    def _release(self, path: str) -> None:
        if path in self._buffers:
            self._free_buffers.append(path)

    def call(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """Run `package.module:function(*args, **kwargs)` inside the worker and return its (picklable) result."""
        return self._request("call", target, args, kwargs)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, wait: bool = True) -> None:
        """Ask the worker to exit; with `wait`, kill it if it has not within 5 s."""
        if self.alive():
            try:
                self._conn.send(("exit", (), {}))
                if wait:
                    self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._conn.close()
        for path in self._buffers:  # a file still mapped by live arrays stays readable until they go
            _unlink(path)
        self._buffers.clear()
        self._free_buffers.clear()
        _unlink(self.log_path)

    # -- plumbing
    def _request(self, op: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if not self.alive():
                raise self._death()
            try:
                self._conn.send((op, args, kwargs))
            except OSError:
                raise self._death() from None
            deadline = time.monotonic() + self.timeout
            while not self._conn.poll(0.2):
                if not self.alive():
                    raise self._death()
                if time.monotonic() > deadline:
                    self.process.kill()
                    self.process.wait()
                    raise errors.WorkerError(
                        f"{self.adapter} worker: no answer to {op!r} within {self.timeout:g} s; stopped it "
                        f"(raise the limit with XVALIDATE_WORKER_TIMEOUT)")
            try:
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                self.process.wait()
                raise self._death() from None
        if status == "ok":
            return payload
        raise _rebuild_error(self.adapter, payload)

    def _death(self) -> errors.WorkerError:
        code = self.process.wait()
        if code < 0:
            how = f"killed by {_signal_name(code)}"
            if -code == signal.SIGKILL:
                how += " (out of memory, or stopped from outside)"
        else:
            how = f"exited with code {code}"
        tail = _last_line(self.log_path)
        return errors.WorkerError(f"{self.adapter} worker {how}" + (f"; last output: {tail}" if tail else ""))


def _last_line(path: str) -> str:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _rebuild_error(adapter: str, payload: dict) -> Exception:
    cls = getattr(errors, payload["type"], None)
    if isinstance(cls, type) and issubclass(cls, errors.XValidateError):
        err = cls(payload["message"])
    else:
        err = errors.WorkerError(f"{adapter} worker: {payload['type']}: {payload['message']}")
    err.details = payload["traceback"]  # shown by the CLI with --debug
    return err


_workers: dict[str, Worker] = {}
_workers_lock = threading.Lock()


def get_worker(adapter: str, timeout: float | None = None) -> Worker:
    """The live worker for `adapter`, started on first use and reused afterwards."""
    from xvalidate.registry import adapter_names

    with _workers_lock:
        worker = _workers.get(adapter)
        if worker is None or not worker.alive():
            if worker is not None:
                worker.close()  # a dead one: remove its files
            if adapter not in adapter_names():  # unknown names fail here, in the caller's process
                raise errors.UnknownAdapterError(
                    f"unknown adapter {adapter!r}; expected one of: {', '.join(adapter_names())}")
            worker = _workers[adapter] = Worker(adapter, timeout)
        elif timeout is not None:
            worker.timeout = timeout
        return worker


def shutdown_workers(wait: bool = True) -> None:
    """Stop every worker this process started."""
    with _workers_lock:
        for worker in _workers.values():
            worker.close(wait)
        _workers.clear()


# at exit the workers are told to stop and left to do it: they exit at once, and nobody waits for them
atexit.register(shutdown_workers, False)


# ---------------------------------------------------------------- child side
class _Server:
    """The worker's loop: load models (cached by path and modification time) and answer requests."""

    def __init__(self, adapter_name: str):
        self.adapter_name = adapter_name
        self._models: dict[tuple, Any] = {}

    @property
    def adapter(self) -> Any:
        from xvalidate.registry import get_adapter
        return get_adapter(self.adapter_name)

    def model(self, source: str) -> Any:
        try:
            st = os.stat(source)
            key = (source, st.st_mtime_ns, st.st_size)
        except OSError:
            key = (source,)
        if key not in self._models:
            if len(self._models) >= 2:  # big models: keep the two in use (source and destination)
                self.adapter.release(self._models.pop(next(iter(self._models))))
            self._models[key] = self.adapter.load(source)
        return self._models[key]

    def layers(self, source: str) -> list[dict]:
        return [info.to_dict() for info in self.adapter.layers(self.model(source))]

    def input_info(self, source: str) -> dict:
        return self.adapter.input_info(self.model(source)).to_dict()

    def run(self, source: str, x_index: dict, layers: list[str] | None, out_path: str | None = None) -> dict:
        model = self.model(source)
        x = read_arrays(x_index)["x"]
        outputs = self.adapter.run(model, x, layers)
        return write_arrays(outputs, out_path if out_path and os.path.exists(out_path) else None)

    @staticmethod
    def call(target: str, args: tuple, kwargs: dict) -> Any:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _serve(fd: int, adapter_name: str) -> None:
    conn = Connection(fd)
    server = None
    while True:
        try:
            op, args, kwargs = conn.recv()
        except EOFError:  # the parent is gone
            os._exit(0)
        if op == "exit":
            os._exit(0)  # skip tearing down framework state nobody will use
        try:
            if server is None:
                server = _Server(adapter_name)
            reply = ("ok", getattr(server, op)(*args, **kwargs))
        except BaseException as exc:  # everything goes back to the caller
            reply = ("err", {"type": type(exc).__name__, "message": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                             "traceback": traceback.format_exc()})
        conn.send(reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
