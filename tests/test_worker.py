"""Worker processes: array transfer, crashes and time limits, third-party adapters via entry points."""
import os
import signal

import numpy as np
import pytest

from conftest import add_plugin
import xvalidate
from xvalidate.errors import UnknownLayerError, WorkerError
from xvalidate.worker import Worker, read_arrays, write_arrays



def test_entry_point_adapter_runs_in_a_worker(toy_plugin):
    assert "toy" in xvalidate.adapters()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype("float32")
    out = xvalidate.run("toy", str(toy_plugin), x)
    assert list(out) == ["dense0", "relu0", "dense1"]
    w = np.load(toy_plugin)
    np.testing.assert_allclose(out["dense1"], np.maximum(x @ w["w0"], 0) @ w["w1"], rtol=1e-6)
    assert list(xvalidate.run("toy", str(toy_plugin), x, layers=["relu0"])) == ["relu0"]
    with pytest.raises(UnknownLayerError, match="no layer 'nope'"):
        xvalidate.run("toy", str(toy_plugin), x, layers=["nope"])


def test_entry_point_adapter_compares_with_itself(toy_plugin):
    report = xvalidate.compare(str(toy_plugin), str(toy_plugin), src="toy", dst="toy", batch=3)
    assert report.passed and len(report.layers) == 3
    assert all(row.match == "name" and row.metrics["max_abs"] == 0 for row in report.layers)


def test_arrays_round_trip_through_shared_memory():
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 2, 3], dtype=np.int64),
              "empty": np.zeros((0, 5), np.float32), "t": np.ones((2, 3, 4), np.float64).transpose(2, 0, 1)}
    written = write_arrays(arrays)
    assert os.readlink(f"/proc/self/fd/{written.fd}").startswith("/memfd:")  # no name in /dev/shm
    back = read_arrays(written.index, written.fd)  # maps, then closes the descriptor
    with pytest.raises(OSError):
        os.fstat(written.fd)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(back[name], arr)
        assert back[name].dtype == arr.dtype
    back["a"][0, 0] = 99  # copy-on-write: writable, and private
    assert arrays["a"][0, 0] == 0


def test_a_crashed_worker_is_a_clear_error():
    worker = Worker("onnx")
    try:
        with pytest.raises(WorkerError, match=r"onnx worker killed by SIGSEGV"):
            worker.call("os:kill", worker.call("os:getpid"), signal.SIGSEGV)
        with pytest.raises(WorkerError, match="onnx worker killed by SIGSEGV"):
            worker.call("os:getpid")
    finally:
        worker.close()


def test_a_killed_worker_names_memory():
    worker = Worker("onnx")
    try:
        with pytest.raises(WorkerError, match=r"SIGKILL \(out of memory"):
            worker.call("os:kill", worker.call("os:getpid"), signal.SIGKILL)
    finally:
        worker.close()


def test_a_worker_past_its_time_limit_is_stopped():
    worker = Worker("onnx")
    try:
        assert worker.call("operator:add", 1, 1) == 2  # started: the limit below is spent in the call
        worker.timeout = 1
        with pytest.raises(WorkerError, match=r"no answer within 1 s while running time:sleep; stopped it"):
            worker.call("time:sleep", 30)
        assert not worker.alive()
    finally:
        worker.close()


def test_an_exception_in_the_worker_comes_back_with_its_type():
    worker = Worker("onnx")
    try:
        with pytest.raises(WorkerError, match="ZeroDivisionError"):
            worker.call("operator:truediv", 1, 0)
        assert worker.call("operator:add", 2, 3) == 5  # still serving
    finally:
        worker.close()


def test_workers_are_reused():
    from xvalidate.worker import get_worker

    assert get_worker("onnx") is get_worker("onnx")
    assert get_worker("onnx").call("os:getpid") != os.getpid()


def test_output_files_are_reused_only_once_their_arrays_are_gone(toy_plugin):
    worker = Worker("toy")
    try:
        x = np.random.default_rng(2).standard_normal((4, 4)).astype("float32")
        dense0 = x @ np.load(toy_plugin)["w0"]
        first = worker.run(str(toy_plugin), x)
        kept = first["dense0"].copy()
        second = worker.run(str(toy_plugin), x * 2)  # the first arrays are alive: a new file
        np.testing.assert_array_equal(first["dense0"], kept)
        assert len(worker._buffers) == 2 and not worker._free_buffers
        del first
        assert len(worker._free_buffers) == 1
        third = worker.run(str(toy_plugin), x * 3)  # written into the freed file
        assert len(worker._buffers) == 2
        np.testing.assert_allclose(third["dense0"], 3 * dense0, rtol=1e-5)
        np.testing.assert_allclose(second["dense0"], 2 * dense0, rtol=1e-5)
    finally:
        worker.close()


def test_a_result_that_cannot_be_pickled_is_an_error_not_a_dead_worker():
    worker = Worker("onnx")
    try:
        with pytest.raises(WorkerError, match=r"call: the result cannot be sent back"):
            worker.call("importlib:import_module", "json")  # a module object
        assert worker.call("operator:add", 2, 3) == 5
    finally:
        worker.close()


def test_a_worker_started_by_the_main_thread_dies_with_its_parent_even_when_busy():
    import subprocess
    import sys
    import time

    import psutil

    script = ("import time\nfrom xvalidate.worker import Worker\nw = Worker('onnx')\nprint(w.process.pid, flush=True)\n"
              "w.call('re:match', r'(a+)+$', 'a' * 64 + 'b')\n")  # backtracking in C: the GIL stays held
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = psutil.Process(int(parent.stdout.readline()))
    time.sleep(1.0)
    assert worker.is_running()
    parent.kill()
    parent.wait()
    worker.wait(2)  # raises TimeoutExpired if it outlives its parent by 2 s


def test_a_model_is_loaded_again_when_any_of_its_files_changes(tmp_path):
    """A worker keeps loaded models; one whose weights file (not the file named) was rewritten is stale."""
    import os

    from xvalidate.worker import _Server

    symbol, params = tmp_path / "m-symbol.json", tmp_path / "m-0000.params"
    symbol.write_text("graph")
    params.write_bytes(b"weights")
    loads = []

    class TwoFiles:
        def model_files(self, path):
            return [path, str(params)]

        def load(self, source):
            loads.append(source)
            return len(loads)

        def release(self, model):
            pass

    class Server(_Server):
        adapter = TwoFiles()

    server = Server("two-files", lambda phase: None)
    assert server.model(str(symbol)) == server.model(str(symbol)) == 1
    st = params.stat()
    params.write_bytes(b"WEIGHTS")
    os.utime(params, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert server.model(str(symbol)) == 2
    assert len(loads) == 2


PARAMS_ADAPTER = '''
import numpy as np
from toy_adapter import ToyAdapter


class ParamsAdapter(ToyAdapter):
    """The toy model, answering for its parameters and isolation, with a worker variable of its own."""
    name = "toyp"
    worker_variables = {"XV_TEST_HOME": "{private}/home"}

    def kernel(self, model, name):
        return model["w0"].T.copy() if name == "dense0" else None

    def recurrent_weights(self, model, name):
        return (model["w0"], model["w1"], np.zeros(3)) if name == "relu0" else None

    def supports_isolation(self, model):
        return True


def trusted():
    from xvalidate.registry import get_adapter
    return getattr(get_adapter("toyp"), "trust_model", False)
'''


@pytest.fixture
def params_plugin(toy_plugin):
    add_plugin(toy_plugin.parent / "site", "toy_worker_params", PARAMS_ADAPTER, "xvalidate.adapters",
               {"toyp": "toy_worker_params:ParamsAdapter"})
    return toy_plugin


def test_parameter_and_capability_requests_come_back_in_their_types(params_plugin):
    from xvalidate.worker import get_worker

    source = str(params_plugin)
    w, weights = get_worker("toyp"), np.load(params_plugin)
    np.testing.assert_array_equal(w.kernel(source, "dense0"), weights["w0"].T)
    assert w.kernel(source, "dense1") is None
    wr, r, b = w.recurrent_weights(source, "relu0")
    np.testing.assert_array_equal(wr, weights["w0"]) and np.testing.assert_array_equal(r, weights["w1"])
    assert b.shape == (3,) and w.recurrent_weights(source, "dense1") is None
    assert w.supports_isolation(source) is True
    info = w.input_info(source)
    assert (info.name, tuple(info.shape), info.layout) == ("x", (None, 4), "NC")
    assert w.call("toy_worker_params:trusted") is False
    w.set_trust_model(1)
    assert w.call("toy_worker_params:trusted") is True
    toy = get_worker("toy")
    assert toy.kernel(source, "dense0") is None and toy.supports_isolation(source) is False


def test_set_timeout_applies_to_live_and_later_workers(toy_plugin, monkeypatch):
    from xvalidate import worker as worker_module
    from xvalidate.errors import OptionError

    monkeypatch.setattr(worker_module, "DEFAULT_TIMEOUT", worker_module.DEFAULT_TIMEOUT)
    live = worker_module.get_worker("toy")
    before = live.timeout
    try:
        worker_module.set_timeout(42)
        assert worker_module.DEFAULT_TIMEOUT == 42.0 and live.timeout == 42.0
        for bad in (0, -1.5):
            with pytest.raises(OptionError, match=f"timeout: expected a positive number of seconds, got {bad!r}"):
                worker_module.set_timeout(bad)
        assert live.timeout == 42.0
    finally:
        live.timeout = before


def test_kill_and_shutdown_stop_every_worker_and_the_next_request_starts_one(toy_plugin):
    from xvalidate import worker as worker_module

    first = worker_module.get_worker("toy")
    first.layers(str(toy_plugin))
    worker_module.kill_workers()
    first.process.wait(10)
    assert not first.alive() and first.process.returncode == -signal.SIGKILL
    second = worker_module.get_worker("toy")
    assert second is not first and len(second.layers(str(toy_plugin))) == 3
    worker_module.shutdown_workers()
    assert worker_module._workers == {} and second.process.wait(10) == 0  # asked to exit: exits cleanly
    assert worker_module.get_worker("toy").layers(str(toy_plugin))[0].name == "dense0"


def die_loudly(code, lines):
    """(In a worker.) Write `lines` to stderr, then end the process with exit code `code` at once."""
    import sys
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()
    os._exit(code)


def test_a_worker_that_exits_names_its_code_and_its_last_output(toy_plugin):
    long_line = "x" * 350
    cases = [(3, ["first words", "last words"], "; last output: last words"),
             (0, ["noise"] * 600 + [long_line], f"; last output: {long_line[:300]}"),  # > 4 KiB of log
             (5, [], "")]
    for code, lines, tail in cases:
        worker = Worker("toy")
        try:
            worker.layers(str(toy_plugin))
            with pytest.raises(WorkerError) as info:
                worker.call("test_worker:die_loudly", code, lines)
            assert str(info.value) == f"toy worker exited with code {code} while running test_worker:die_loudly{tail}"
        finally:
            worker.close()


def test_a_worker_killed_by_a_signal_names_it_and_memory_only_for_sigkill(toy_plugin):
    worker = Worker("toy", timeout=7.5)
    try:
        assert worker.timeout == 7.5
        with pytest.raises(WorkerError) as info:
            worker.call("os:kill", worker.call("os:getpid"), signal.SIGTERM)
        assert str(info.value) == "toy worker killed by SIGTERM while running os:kill"
    finally:
        worker.close()


def test_declared_worker_variables_reach_the_worker_and_its_private_folder_goes_with_it(params_plugin, monkeypatch):
    import tempfile
    import threading

    from xvalidate import worker as worker_module
    from xvalidate.errors import UnknownAdapterError

    worker_module.shutdown_workers()
    w = worker_module.get_worker("toyp", timeout=9)
    assert w.timeout == 9 and worker_module.get_worker("toyp", timeout=11) is w and w.timeout == 11
    home = w.call("os:getenv", "XV_TEST_HOME")
    private = os.path.dirname(home)
    assert os.path.basename(private).startswith(f"xvalidate-{os.getpid()}-toyp-home-") and os.path.isdir(private)
    assert os.path.dirname(private) == tempfile.gettempdir()
    assert w.call("os:getenv", "MXNET_SUBGRAPH_BACKEND") == "NONE"  # the workers' own settings too
    started_by = psutil_cmdline(w.process.pid)[-1]
    assert started_by == ("main" if threading.current_thread() is threading.main_thread() else "thread")
    w.close()
    assert not os.path.exists(private)
    with pytest.raises(UnknownAdapterError, match=r"^unknown adapter 'nope'; expected one of: .*\btoy, toyp\b"):
        worker_module.get_worker("nope")


def psutil_cmdline(pid):
    import psutil
    return psutil.Process(pid).cmdline()


def test_a_worker_started_from_another_thread_says_so(toy_plugin):
    import threading

    made = []
    thread = threading.Thread(target=lambda: made.append(Worker("toy")))
    thread.start()
    thread.join(30)
    try:
        assert psutil_cmdline(made[0].process.pid)[-1] == "thread"
        assert made[0].layers(str(toy_plugin))[0].name == "dense0"
    finally:
        made[0].close()


def test_a_worker_in_an_environment_runs_its_python_with_only_the_shipped_modules(tmp_path, monkeypatch):
    """The variables a worker environment gets, built without starting anything."""
    from xvalidate import environments
    from xvalidate.environments import Environment

    env = Environment(name="xv-test-vars", requirements=(), variables={"KERAS_HOME": "{private}/keras"})
    monkeypatch.setattr(environments, "ensure", lambda e: tmp_path / e.name / "bin" / "python")
    monkeypatch.setattr(environments, "ship", lambda e: tmp_path / e.name / "ship" / "abc")
    monkeypatch.setenv("PYTHONHOME", "/elsewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/some/venv")
    worker = Worker.__new__(Worker)
    worker.adapter, worker.environment = "toy", env
    python, variables = worker._python_and_env({"EXTRA": "1"})
    try:
        assert python == str(tmp_path / "xv-test-vars" / "bin" / "python")
        assert variables["PYTHONPATH"] == str(tmp_path / "xv-test-vars" / "ship" / "abc")
        assert variables["PYTHONNOUSERSITE"] == "1" and "PYTHONHOME" not in variables and "VIRTUAL_ENV" not in variables
        assert variables["EXTRA"] == "1" and variables["KERAS_HOME"] == os.path.join(worker._private, "keras")
        assert os.path.isdir(worker._private) and variables["TF_CPP_MIN_LOG_LEVEL"] == "3"
    finally:
        import shutil
        shutil.rmtree(worker._private)
    worker.environment = None
    python, variables = worker._python_and_env(None)
    assert python == __import__("sys").executable and worker._private is None
    assert variables["PYTHONPATH"] == os.pathsep.join(p for p in __import__("sys").path if p)
    assert variables["PYTHONHOME"] == "/elsewhere"  # this Python's own environment is kept
