"""Framework worker processes.

TensorFlow and MXNet crash when loaded into one process, so every adapter runs in
a process of its own: `get_worker("keras")` starts (once) a Python process that
imports only what the keras adapter needs, and talks to it over a socket pair.

Small requests and answers are pickled; arrays never are. They travel in an
anonymous shared-memory file (`memfd_create`): the sender writes every array into
it once and passes its descriptor over the socket; the receiver maps it
copy-on-write. No such file has a name in /dev/shm, so nothing outlives the two
processes, whatever kills them: the memory goes back when the last descriptor and
mapping are gone. The worker's log is an unlinked file too. A worker exits when its
parent dies (it watches its parent's pid), ignores SIGINT (the parent decides), and
a worker that dies, or answers nothing within its time limit, becomes a
`WorkerError` naming the adapter and what it was doing.

Run as `python -m xvalidate.worker FD ADAPTER` by `Worker` itself.
"""
from __future__ import annotations

import atexit
import importlib
import mmap
import os
import pickle
import shutil
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
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from xvalidate import errors
from xvalidate.shm import clean_stale_files, new_memory_file

# Seconds a worker may take to answer one request (a conversion step, loading a model, one chunk).
_FEED = "\x00feed:"  # prefix of fed tensors in a run's array file (no input name starts with a NUL)
DEFAULT_TIMEOUT = float(os.environ.get("XVALIDATE_WORKER_TIMEOUT", "600"))
# Quiet framework logs; MXNet's oneDNN graph fusion must be off, or capturing intermediate outputs
# skips fused ops (a ReLU6 after a conv) or fails to bind.
_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0",
               "MXNET_SUBGRAPH_BACKEND": "NONE"}
_WRITE_BLOCK = 1 << 30  # one write() moves at most ~2 GiB on Linux


# ---------------------------------------------------------------- array files
class ArrayFile:
    """Arrays written into an anonymous shared-memory file: `index` (pickled) and `fd` (passed)."""

    def __init__(self, index: dict, fd: int):
        self.index, self.fd = index, fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write_arrays(arrays: Mapping[str, np.ndarray], fd: int | None = None) -> ArrayFile:
    """Write arrays into a new shared-memory file, or into `fd` from its start (its pages are
    already allocated, which makes the write a plain memcpy)."""
    if fd is None:
        fd = new_memory_file()
    else:
        os.lseek(fd, 0, os.SEEK_SET)
    entries, offset = [], 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        entries.append((name, arr.dtype.str, arr.shape, offset))
        if arr.nbytes:
            _write_all(fd, memoryview(arr).cast("B"))
        offset += arr.nbytes
        pad = -offset % 64  # keep every array aligned
        if pad:
            _write_all(fd, memoryview(b"\0" * pad))
            offset += pad
    return ArrayFile({"entries": entries, "nbytes": offset}, fd)


def _write_all(fd: int, view: memoryview) -> None:
    while len(view):
        done = os.write(fd, view[:_WRITE_BLOCK])
        view = view[done:]


def read_arrays(index: Mapping, fd: int, on_release: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """Map a file written by `write_arrays`; arrays are copy-on-write views of the mapping.

    Without `on_release` the descriptor is closed at once (the mapping keeps the memory alive
    while an array does). With it, the caller keeps `fd`, and `on_release()` is called once
    no returned array is alive any more, so that the file can be written again."""
    try:
        if index["nbytes"] == 0:
            return {name: np.empty(shape, dtype) for name, dtype, shape, _ in index["entries"]}
        buf = mmap.mmap(fd, index["nbytes"], access=mmap.ACCESS_COPY)
        out = {}
        for name, dtype, shape, offset in index["entries"]:
            count = int(np.prod(shape, dtype=np.int64))
            out[name] = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)
        if on_release is not None:
            weakref.finalize(buf, on_release)
        return out
    finally:
        if on_release is None:
            os.close(fd)


def _send_fds(conn: Connection, fds: Sequence[int]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(conn.fileno())) as sock:
        socket.send_fds(sock, [b"F"], list(fds))


def _recv_fds(conn: Connection, count: int) -> list[int]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(conn.fileno())) as sock:
        msg, fds, _, _ = socket.recv_fds(sock, 1, count)
    if msg != b"F" or len(fds) != count:
        for fd in fds:
            os.close(fd)
        raise OSError("worker protocol: expected file descriptors")
    return fds


# ---------------------------------------------------------------- parent side
def _samples(x: np.ndarray | Mapping[str, np.ndarray]) -> int:
    """The batch size of one input array or of a dict of them."""
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class _Buffer:
    """An output file of a worker that the parent keeps to have it written again."""

    def __init__(self, fd: int):
        self.fd = fd


class Worker:
    """A process running one adapter. Use `get_worker(name)` rather than creating these."""

    def __init__(self, adapter: str, timeout: float | None = None, environment: Any = None,
                 variables: Mapping[str, str] | None = None):
        """`environment`: an xvalidate.environments.Environment to run in (its venv's Python, created
        on first use) instead of this Python; `variables`: environment variables of the worker, where
        "{private}" becomes a directory of its own (removed with it)."""
        self.adapter = adapter
        self.environment = environment
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.phase = "starting"
        self._answered = False  # nothing heard yet: a death now means the worker could not start
        self.stopped = False  # killed on purpose (Ctrl-C): waiting requests give up at once
        self._lock = threading.Lock()
        python, env = self._python_and_env(variables)
        parent_sock, child_sock = socket.socketpair()
        log_fd, log_path = tempfile.mkstemp(prefix=f"xvalidate-{os.getpid()}-{adapter}-", suffix=".log")
        os.unlink(log_path)  # the worker writes into it, we read its tail: nobody needs the name
        self._log_fd = log_fd
        self.process = subprocess.Popen(
            [python, "-m", "xvalidate.worker", str(child_sock.fileno()), adapter, str(os.getpid()),
             "main" if threading.current_thread() is threading.main_thread() else "thread"],
            pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, env=env,
        )
        child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._free_buffers: list[_Buffer] = []  # output files whose arrays are all gone: written again
        self._buffers: list[_Buffer] = []

    # -- public requests
    def layers(self, source: str) -> list:
        """The adapter's LayerInfo list for the model at `source`."""
        from xvalidate_adapters.base import LayerInfo
        return [LayerInfo.from_dict(d) for d in self._request("layers", str(source))]

    def input_info(self, source: str):
        """The adapter's InputInfo for the model at `source`."""
        from xvalidate_adapters.base import InputInfo
        return InputInfo.from_dict(self._request("input_info", str(source)))

    def inputs_info(self, source: str) -> list:
        """The adapter's InputInfo of every input of the model at `source`."""
        from xvalidate_adapters.base import InputInfo
        return [InputInfo.from_dict(d) for d in self._request("inputs_info", str(source))]

    def set_trust_model(self, trust: bool) -> None:
        """Whether the adapter may load models whose loading runs code they carry (a Keras Lambda)."""
        self._request("set_trust_model", bool(trust))

    def run(self, source: str, x: np.ndarray | Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None, feeds: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Capture the asked layers (all when None) of the model at `source` in one forward pass.
        `x`: one array, or {input name: array} for a model with several inputs. `feeds`: values
        for internal tensors that their consumers read instead (Adapter.run_isolated)."""
        named = isinstance(x, Mapping)
        x = {k: np.asarray(v) for k, v in x.items()} if named else np.asarray(x)
        arrays = dict(x) if named else {"x": x}
        arrays.update((_FEED + name, np.asarray(value)) for name, value in (feeds or {}).items())
        x_file = write_arrays(arrays)
        x_file.index["named"] = named
        x_file.index["feeds"] = list(feeds or ())
        reuse = self._free_buffers.pop() if self._free_buffers else None
        fds = [x_file.fd] + ([reuse.fd] if reuse else [])
        try:
            index, out_fds = self._request("run", str(source), x_file.index,
                                           None if layers is None else list(layers), reuse is not None, fds=fds)
        except errors.WorkerTimeoutError:
            raise
        except errors.WorkerError as exc:
            if self.process.poll() == -signal.SIGKILL and self.phase.startswith("running a chunk"):
                raise errors.WorkerError(
                    f"{self.adapter} worker killed by SIGKILL while running a chunk of {_samples(x)} samples, most likely "
                    f"out of memory; lower --memory-budget (memory_budget=) to run smaller chunks") from exc
            raise
        finally:
            x_file.close()
        if reuse is not None:  # the worker wrote into our file and sent it back: keep our own descriptor
            os.close(out_fds[0])
            buffer = reuse
        else:
            buffer = _Buffer(out_fds[0])
            self._buffers.append(buffer)
        return read_arrays(index, buffer.fd, lambda: self._release(buffer))

    def _release(self, buffer: _Buffer) -> None:
        if buffer in self._buffers:
            self._free_buffers.append(buffer)

    def recurrent_weights(self, source: str, name: str) -> tuple | None:
        """The adapter's `recurrent_weights(model, name)` for the model at `source`."""
        return self._request("recurrent_weights", str(source), name)

    def supports_isolation(self, source: str) -> bool:
        """The adapter's `supports_isolation(model)` for the model at `source`."""
        return self._request("supports_isolation", str(source))

    def kernel(self, source: str, name: str) -> np.ndarray | None:
        """The adapter's `kernel(model, name)` for the model at `source` (see Adapter.kernel)."""
        return self._request("kernel", str(source), name)

    def call(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """Run `package.module:function(*args, **kwargs)` inside the worker and return its (picklable) result."""
        return self._request("call", target, args, kwargs)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Stop the worker at once (SIGKILL). Safe in a signal handler: takes no lock."""
        self.stopped = True
        if self.process.poll() is None:
            try:
                self.process.kill()
            except OSError:
                pass

    def close(self, wait: bool = True) -> None:
        """Ask the worker to exit; with `wait`, kill it if it has not within 5 s."""
        if self.alive():
            try:
                self._conn.send(("exit", (), {}, 0))
                if wait:
                    self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._conn.close()
        for buffer in self._buffers:  # a file still mapped by live arrays stays readable until they go
            os.close(buffer.fd)
        self._buffers.clear()
        self._free_buffers.clear()
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        if self._private:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def _python_and_env(self, variables: Mapping[str, str] | None) -> tuple[str, dict]:
        """The worker's Python and environment variables: this Python and its sys.path, or the
        declared environment's Python with only the modules shipped into it on its path."""
        env = dict(os.environ, **_WORKER_ENV)
        wanted = dict(variables or {})
        if self.environment is None:
            python = sys.executable
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        else:
            from xvalidate import environments

            python = str(environments.ensure(self.environment))
            for name in ("PYTHONHOME", "VIRTUAL_ENV"):
                env.pop(name, None)
            env["PYTHONPATH"] = str(environments.ship(self.environment))
            env["PYTHONNOUSERSITE"] = "1"
            wanted.update(self.environment.variables)
        self._private = None
        if any("{private}" in value for value in wanted.values()):  # pid in the name: see shm.py
            self._private = tempfile.mkdtemp(prefix=f"xvalidate-{os.getpid()}-{self.adapter}-home-")
        env.update((name, value.replace("{private}", self._private or "")) for name, value in wanted.items())
        return python, env

    # -- plumbing
    def _request(self, op: str, *args: Any, fds: Sequence[int] = (), **kwargs: Any) -> Any:
        with self._lock:
            if not self.alive():
                raise self._death()
            self.phase = op
            try:
                self._conn.send((op, args, kwargs, len(fds)))
                if fds:
                    _send_fds(self._conn, fds)
                return self._answer(op)
            except errors.XValidateError:
                raise
            except BaseException:  # an interrupt in the middle of a request: its answer would come to the next
                if self.alive() and not self._conn.closed:
                    self.kill()
                raise

    def _answer(self, op: str) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            while not self._conn.poll(0.1):
                if self.stopped:  # the kernel may take a while to free a big process: do not wait for it
                    raise errors.WorkerError(f"{self.adapter} worker stopped while {self.phase}")
                if not self.alive():
                    raise self._death()
                if time.monotonic() > deadline:
                    self.kill()
                    self.process.wait()
                    raise errors.WorkerTimeoutError(
                        f"{self.adapter} worker: no answer within {self.timeout:g} s while {self.phase}; stopped it "
                        f"(raise the limit with --timeout or XVALIDATE_WORKER_TIMEOUT)")
            try:
                status, payload, nfds = self._conn.recv()
                fds = _recv_fds(self._conn, nfds) if nfds else []
            except (EOFError, OSError):
                raise self._death() from None
            self._answered = True
            if status == "phase":
                self.phase = payload
                continue
            if status == "ok":
                return (payload, fds) if fds else payload
            if self.environment is not None and payload["type"] in ("ImportError", "ModuleNotFoundError"):
                raise self._broken(payload["message"])
            raise _rebuild_error(self.adapter, payload)

    def _broken(self, why: str) -> errors.WorkerError:
        from xvalidate.environments import rebuild_hint

        return errors.WorkerError(f"worker environment {self.environment.name} at {self.environment.path} is broken "
                                  f"({why}); rebuild it with `{rebuild_hint(self.environment)}`")

    def _death(self) -> errors.WorkerError:
        code = self.process.wait()
        if code < 0:
            how = f"killed by {_signal_name(code)}"
            if -code == signal.SIGKILL:
                how += " (out of memory, or stopped from outside)"
        else:
            how = f"exited with code {code}"
        tail = self._log_tail()
        if self.environment is not None and not self._answered:  # it died before saying anything
            return self._broken(f"its worker {how}" + (f": {tail}" if tail else ""))
        return errors.WorkerError(f"{self.adapter} worker {how} while {self.phase}"
                                  + (f"; last output: {tail}" if tail else ""))

    def _log_tail(self) -> str:
        try:
            size = os.fstat(self._log_fd).st_size
            data = os.pread(self._log_fd, 4096, max(0, size - 4096)).decode(errors="replace")
        except OSError:
            return ""
        lines = data.strip().splitlines()
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
_cleaned = False


def get_worker(adapter: str, timeout: float | None = None) -> Worker:
    """The live worker for `adapter`, started on first use and reused afterwards (in the adapter's
    declared worker environment, if any)."""
    from xvalidate.registry import adapter_names, get_adapter

    global _cleaned
    with _workers_lock:
        if not _cleaned:  # files that older versions or dead processes left in /dev/shm and the temp dir
            clean_stale_files()
            _cleaned = True
        worker = _workers.get(adapter)
        if worker is None or not worker.alive() or worker.stopped:
            if worker is not None:
                worker.close()  # a dead one: free what it held
            if adapter not in adapter_names():  # unknown names fail here, in the caller's process
                raise errors.UnknownAdapterError(
                    f"unknown adapter {adapter!r}; expected one of: {', '.join(adapter_names())}")
            try:
                declared = get_adapter(adapter)
            except errors.UnknownAdapterError:  # one the parent cannot import: the worker says why
                declared = None
            worker = _workers[adapter] = Worker(adapter, timeout, environment=getattr(declared, "environment", None),
                                                variables=getattr(declared, "worker_variables", None))
        elif timeout is not None:
            worker.timeout = timeout
        return worker


def get_env_worker(environment: Any, timeout: float | None = None) -> Worker:
    """The live worker running in the worker environment `environment` (an
    xvalidate.environments.Environment), for `call`s of the modules it ships; the environment is
    created on first use."""
    global _cleaned
    key = f"env:{environment.name}:{','.join(environment.modules)}"  # one worker per set of shipped modules
    with _workers_lock:
        if not _cleaned:
            clean_stale_files()
            _cleaned = True
        worker = _workers.get(key)
        if worker is None or not worker.alive() or worker.stopped:
            if worker is not None:
                worker.close()
            worker = _workers[key] = Worker(environment.name, timeout, environment=environment)
        elif timeout is not None:
            worker.timeout = timeout
        return worker


def set_timeout(seconds: float) -> None:
    """The time limit, in seconds, of one request to a worker: for workers started from now on and live ones."""
    global DEFAULT_TIMEOUT
    if not seconds > 0:
        raise errors.OptionError(f"timeout: expected a positive number of seconds, got {seconds!r}")
    DEFAULT_TIMEOUT = float(seconds)
    for worker in list(_workers.values()):
        worker.timeout = DEFAULT_TIMEOUT


def kill_workers() -> None:
    """Kill every worker at once (Ctrl-C). Takes no lock, so a signal handler may call it."""
    for worker in list(_workers.values()):
        worker.kill()


def shutdown_workers(wait: bool = True) -> None:
    """Stop every worker this process started."""
    with _workers_lock:
        for worker in _workers.values():
            worker.close(wait)
        _workers.clear()


# at exit the workers are told to stop and left to do it: they exit at once, and nobody waits for them
atexit.register(shutdown_workers, False)


# ---------------------------------------------------------------- child side
def _stamps(paths: list[str]) -> tuple:
    """(path, modification time, size) of every file of a model (under a directory: every file in it),
    so that a model is loaded again when any of its files changes, not only the one named."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
        else:
            files.append(path)
    stamps = []
    for path in files:
        try:
            st = os.stat(path)
            stamps.append((path, st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append((path, None, None))
    return tuple(stamps)


class _Server:
    """The worker's loop: load models (cached by path, their files' modification times and sizes, and
    trust) and answer requests."""

    def __init__(self, adapter_name: str, report_phase: Callable[[str], None]):
        self.adapter_name = adapter_name
        self.report_phase = report_phase
        self._models: dict[tuple, Any] = {}

    @property
    def adapter(self) -> Any:
        from xvalidate.registry import get_adapter
        return get_adapter(self.adapter_name)

    def set_trust_model(self, trust: bool) -> None:
        self.adapter.trust_model = trust

    def model(self, source: str) -> Any:
        trust = getattr(self.adapter, "trust_model", False)
        key = (source, trust, _stamps(self.adapter.model_files(source)))
        if key not in self._models:
            if len(self._models) >= 2:  # big models: keep the two in use (source and destination)
                self.adapter.release(self._models.pop(next(iter(self._models))))
            self.report_phase(f"loading {source}")
            self._models[key] = self.adapter.load(source)
        return self._models[key]

    def layers(self, source: str) -> list[dict]:
        model = self.model(source)
        self.report_phase(f"listing the layers of {source}")
        return [info.to_dict() for info in self.adapter.layers(model)]

    def input_info(self, source: str) -> dict:
        return self.adapter.input_info(self.model(source)).to_dict()

    def kernel(self, source: str, name: str) -> Any:
        return self.adapter.kernel(self.model(source), name)

    def supports_isolation(self, source: str) -> bool:
        return bool(self.adapter.supports_isolation(self.model(source)))

    def recurrent_weights(self, source: str, name: str) -> Any:
        return self.adapter.recurrent_weights(self.model(source), name)

    def inputs_info(self, source: str) -> list[dict]:
        return [info.to_dict() for info in self.adapter.inputs_info(self.model(source))]

    def run(self, source: str, x_index: dict, layers: list[str] | None, reuse: bool, *, fds: list[int]) -> tuple:
        model = self.model(source)
        arrays = read_arrays(x_index, fds[0], lambda: None)  # the serving loop closes the descriptor
        feeds = {name: arrays.pop(_FEED + name) for name in x_index.get("feeds", [])}
        x = arrays if x_index.get("named") else arrays["x"]  # {input name: array} or one array
        self.report_phase(f"running a chunk of {_samples(x)} samples through {source}")
        outputs = self.adapter.run_isolated(model, x, feeds, layers) if feeds else self.adapter.run(model, x, layers)
        out = write_arrays(outputs, fds[1] if reuse else None)
        return out.index, [out.fd]

    def call(self, target: str, args: tuple, kwargs: dict) -> Any:
        self.report_phase(f"running {target}")
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _watch_parent(parent_pid: int) -> None:
    """Exit as soon as the parent is gone (killed with -9, say): nobody will ask for anything more."""
    while True:
        time.sleep(0.25)
        if os.getppid() != parent_pid:
            os._exit(0)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies, busy or not. The kernel ties this
    to the thread that started us, so the parent asks for it only when its main thread did."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died before the call
        os._exit(0)


def _serve(fd: int, adapter_name: str, parent_pid: int, started_by: str = "thread") -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    if started_by == "main" and sys.platform.startswith("linux"):
        _die_with_parent(parent_pid)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()  # and when the GIL is free
    serve_requests(Connection(fd), adapter_name)
    os._exit(0)  # skip tearing down framework state nobody will use


def serve_requests(conn: Connection, adapter_name: str) -> None:
    """Answer the requests arriving on `conn` with adapter `adapter_name` until "exit" or until the
    other end is gone. Every error goes back to the caller as an "err" answer."""
    server = None
    while True:
        try:
            op, args, kwargs, nfds = conn.recv()
            fds = _recv_fds(conn, nfds) if nfds else []
        except (EOFError, OSError):  # the parent is gone
            return
        if op == "exit":
            return
        if server is None:
            server = _Server(adapter_name, lambda phase: conn.send(("phase", phase, 0)))
        reply, out_fds = _answer_request(server, op, args, kwargs, fds)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an answer that cannot travel
            conn.send(("err", {"type": "WorkerError", "message": f"{op}: the result cannot be sent back ({exc})",
                               "traceback": traceback.format_exc()}, 0))
            _close_all(out_fds)
            out_fds = []
        if out_fds:
            _send_fds(conn, out_fds)
            _close_all(out_fds)


def _answer_request(server: _Server, op: str, args: tuple, kwargs: dict, fds: list[int]) -> tuple[tuple, list[int]]:
    """Run one request: (the answer to send, the descriptors to pass with it). The received
    descriptors are closed, except an output file reused for the answer."""
    out_fds: list[int] = []
    try:
        if fds:
            kwargs = dict(kwargs, fds=fds)
        result = getattr(server, op)(*args, **kwargs)
        if op == "run":
            result, out_fds = result
        reply = ("ok", result, len(out_fds))
    except BaseException as exc:  # everything goes back to the caller
        text = str(exc).strip()
        reply = ("err", {"type": type(exc).__name__, "message": text.splitlines()[0] if text else type(exc).__name__,
                         "traceback": traceback.format_exc()}, 0)
    finally:
        _close_all(fd for fd in fds if fd not in out_fds)  # the reused output file goes back with the answer
    return reply, out_fds


def _close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


if __name__ == "__main__":  # serve with the importable module: one copy of its globals in this process
    from xvalidate import worker

    worker._serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
