"""Kills, Ctrl-C and hangs in the middle of a run: the CLI stops within 2 s with exit 130 and one
line, no worker survives its caller, no file is left in /dev/shm, a hanging worker is stopped at
its time limit naming the adapter and the phase, a worker killed mid-run names the chunk size."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

import xvalidate
from xvalidate import worker as worker_module
from xvalidate.errors import WorkerError, WorkerTimeoutError
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the keras worker
def save_stalling_model(path: str, where: str) -> str:
    """A small Keras model whose Lambda loops forever: at load ("load", while Keras rebuilds the
    graph) or at run time only ("run", when called eagerly)."""
    from tensorflow import keras

    def stall_at_load(t):
        import time
        while True:
            time.sleep(0.05)

    def stall_at_run(t):
        import time

        import tensorflow as tf
        while tf.executing_eagerly():
            time.sleep(0.05)
        return t

    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(8, name="dense")(inputs)
    fn = stall_at_run if where == "run" else lambda t: t
    model = keras.Model(inputs, keras.layers.Lambda(fn, name="stall")(hidden))
    if where == "load":  # built with a harmless function, saved with the looping one's code
        model.get_layer("stall").function = stall_at_load
    model.save(path)
    return path


@pytest.fixture(scope="module")
def stalling(tmp_path_factory):
    d = tmp_path_factory.mktemp("stall")
    keras = get_worker("keras")
    return {where: keras.call("test_reliability_signals:save_stalling_model", str(d / f"{where}.h5"), where)
            for where in ("load", "run")}


def _named_shm_files() -> set[str]:
    return {f for f in os.listdir("/dev/shm") if f.startswith("xvalidate-")}


def _wait(predicate, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _running_a_chunk(proc: psutil.Process) -> bool:
    """The caller holds an anonymous array file while its workers run a chunk."""
    try:
        return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("/memfd:xvalidate")
                   for fd in os.listdir(f"/proc/{proc.pid}/fd"))
    except OSError:
        return False


def _start(args, **kw) -> tuple[subprocess.Popen, psutil.Process]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    ps = psutil.Process(proc.pid)
    assert _wait(lambda: _running_a_chunk(ps), 120), proc.communicate(timeout=5)
    return proc, ps


def test_ctrl_c_stops_the_cli_within_two_seconds(stalling, tmp_path):
    report = tmp_path / "report.json"
    proc, ps = _start([sys.executable, "-m", "xvalidate.cli", "compare", stalling["run"], stalling["run"],
                       "--src", "keras", "--dst", "keras", "--trust-model", "--json", str(report)])
    family = [ps] + ps.children(recursive=True)
    assert len(family) == 2  # the caller and its keras worker
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted: workers stopped, no report written"]
    assert _wait(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family), 2)
    assert not report.exists() and not list(tmp_path.glob(".report.json*"))


def test_kill_9_of_the_caller_leaves_no_worker_and_no_shared_file(stalling):
    before = _named_shm_files()
    script = ("import sys, numpy as np, xvalidate\n"
              "xvalidate.run('keras', sys.argv[1], np.ones((4, 8), np.float32), trust_model=True)\n")
    proc, ps = _start([sys.executable, "-c", script, stalling["run"]])
    workers = ps.children(recursive=True)
    held = [os.readlink(f"/proc/{p.pid}/fd/{fd}") for p in [ps] + workers for fd in os.listdir(f"/proc/{p.pid}/fd")]
    assert not any(path.startswith("/dev/shm/") for path in held)  # arrays live in anonymous files only
    proc.kill()
    proc.wait()
    assert _wait(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 2)
    ours = {str(p.pid) for p in [ps] + workers}  # other programs on the machine may write /dev/shm meanwhile
    assert not [f for f in _named_shm_files() - before if f.split("-")[1] in ours]


def test_a_hanging_worker_is_stopped_at_the_time_limit(stalling):
    keras = get_worker("keras")
    keras.call("builtins:exec", "import tensorflow")  # a warm worker: the limit is spent in the model
    old = worker_module.DEFAULT_TIMEOUT
    worker_module.set_timeout(3)
    try:
        t0 = time.monotonic()
        with pytest.raises(WorkerTimeoutError, match=r"^keras worker: no answer within 3 s while running a chunk of "
                                                     r"2 samples through .*run\.h5; stopped it \(raise the limit "
                                                     r"with --timeout or XVALIDATE_WORKER_TIMEOUT\)$"):
            xvalidate.run("keras", stalling["run"], np.ones((2, 8), np.float32), trust_model=True)
        assert time.monotonic() - t0 < 10
        assert not keras.alive()
    finally:
        worker_module.set_timeout(old)
    assert get_worker("keras").call("operator:add", 1, 2) == 3  # a fresh worker serves the next call


def test_the_cli_timeout_option_names_adapter_and_phase(stalling):
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "xvalidate.cli", "capture", stalling["load"], "--adapter", "keras",
                           "--trust-model", "--timeout", "5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - t0 < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: keras worker: no answer within 5 s while loading ") and "load.h5" in lines[0]


def test_a_worker_killed_mid_run_names_the_chunk_and_the_memory_budget(stalling):
    keras = get_worker("keras")
    keras.set_trust_model(True)

    def kill_when_running():
        if _wait(lambda: keras.phase.startswith("running a chunk"), 60):
            os.kill(keras.process.pid, signal.SIGKILL)  # what the OOM killer does

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        with pytest.raises(WorkerError, match=r"keras worker killed by SIGKILL while running a chunk of 3 samples, "
                                              r"most likely out of memory; lower --memory-budget"):
            keras.run(stalling["run"], np.ones((3, 8), np.float32))
    finally:
        killer.join()
        keras.set_trust_model(False) if keras.alive() else None
