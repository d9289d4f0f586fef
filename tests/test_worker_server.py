"""The worker's side of the protocol, served in a thread of the test process: what each request
answers, which descriptors travel and which are closed, and the model cache. (The worker process
runs the same `serve_requests`; tests/test_worker.py covers the process around it.)"""
import os
import socket
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest

from test_worker import params_plugin  # noqa: F401 (fixture)
from xvalidate.worker import _FEED, _Server, _recv_fds, _send_fds, _stamps, read_arrays, serve_requests, write_arrays


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


class Client:
    """The parent's end of a socket pair whose other end `serve_requests` answers in a thread."""

    def __init__(self, adapter: str):
        mine, theirs = socket.socketpair()
        self.conn = Connection(mine.detach())
        self.thread = threading.Thread(target=serve_requests, args=(Connection(theirs.detach()), adapter), daemon=True)
        self.thread.start()
        self.phases: list[str] = []

    def ask(self, op, *args, fds=(), **kwargs):
        """(status, payload, received descriptors); phase messages are collected in `phases`."""
        self.conn.send((op, args, kwargs, len(fds)))
        if fds:
            _send_fds(self.conn, fds)
        while True:
            assert self.conn.poll(30), f"no answer to {op}"
            status, payload, nfds = self.conn.recv()
            if status != "phase":
                return status, payload, _recv_fds(self.conn, nfds) if nfds else []
            self.phases.append(payload)

    def run(self, source, x, layers=None, reuse_fd=None):
        xfile = write_arrays({"x": x})
        fds = [xfile.fd] + ([reuse_fd] if reuse_fd is not None else [])
        status, payload, out = self.ask("run", source, xfile.index, layers, reuse_fd is not None, fds=fds)
        xfile.close()
        return status, payload, out

    def settled_fds(self) -> set[int]:
        """The open descriptors once the server is done with every earlier request (it closes its copies
        of an answer's descriptors after sending them)."""
        assert self.ask("call", "math:hypot", (3, 4), {})[:2] == ("ok", 5.0)
        return _open_fds()

    def close(self):
        self.conn.send(("exit", (), {}, 0))
        self.thread.join(10)
        self.conn.close()


@pytest.fixture
def client(toy_plugin):
    c = Client("toy")
    yield c
    if c.thread.is_alive():
        c.close()


def _toy(model, x):
    w = np.load(model)
    return np.maximum(x @ w["w0"], 0) @ w["w1"]


def test_listing_requests_answer_with_plain_data_and_report_phases(client, toy_plugin):
    status, layers, fds = client.ask("layers", str(toy_plugin))
    assert (status, fds) == ("ok", [])
    assert [(d["name"], d["op"], d["inputs"]) for d in layers] == [
        ("dense0", "matmul", []), ("relu0", "relu", ["dense0"]), ("dense1", "matmul", ["relu0"])]
    assert client.phases == [f"loading {toy_plugin}", f"listing the layers of {toy_plugin}"]
    status, info, _ = client.ask("input_info", str(toy_plugin))
    assert status == "ok" and info["name"] == "x" and list(info["shape"]) == [None, 4]
    status, infos, _ = client.ask("inputs_info", str(toy_plugin))
    assert status == "ok" and [i["name"] for i in infos] == ["x"]
    assert client.phases.count(f"loading {toy_plugin}") == 1  # loaded once, then kept


def test_a_run_answers_an_array_file_and_closes_the_input(client, toy_plugin):
    x = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    before = _open_fds()
    status, index, fds = client.run(str(toy_plugin), x)
    assert status == "ok" and len(fds) == 1
    out = read_arrays(index, fds[0])
    assert sorted(out) == ["dense0", "dense1", "relu0"]
    np.testing.assert_allclose(out["dense1"], _toy(toy_plugin, x), rtol=1e-6)
    assert client.phases[-1] == f"running a chunk of 3 samples through {toy_plugin}"
    del out
    assert client.settled_fds() <= before  # the input file and the answer's descriptor are all closed


def test_a_run_writes_into_the_output_file_it_was_given(client, toy_plugin):
    x = np.ones((2, 4), "float32")
    _, index, (first,) = client.run(str(toy_plugin), x, ["dense1"])
    assert [e[0] for e in index["entries"]] == ["dense1"]
    marker = os.fstat(first).st_ino
    before = client.settled_fds()
    status, index, (again,) = client.run(str(toy_plugin), 2 * x, ["dense1"], reuse_fd=first)
    assert status == "ok" and os.fstat(again).st_ino == marker  # the same file came back
    np.testing.assert_allclose(read_arrays(index, again)["dense1"], _toy(toy_plugin, 2 * x), rtol=1e-6)
    os.close(first)
    assert client.settled_fds() <= before - {first}


def test_fed_tensors_go_to_the_isolated_run(toy_plugin, monkeypatch):
    from xvalidate.registry import get_adapter

    adapter = type(get_adapter("toy"))
    seen = {}

    def run_isolated(self, model, x, feeds, layers):
        seen.update(x=x, feeds=feeds, layers=layers)
        return {"relu0": feeds["dense0"] * 2}

    monkeypatch.setattr(adapter, "run_isolated", run_isolated, raising=False)
    c = Client("toy")
    try:
        xfile = write_arrays({"a": np.ones((1, 4), "float32"), "b": np.zeros((1, 2), "float32"),
                              _FEED + "dense0": np.full((1, 6), 3, "float32")})
        index = dict(xfile.index, named=True, feeds=["dense0"])
        status, out_index, fds = c.ask("run", str(toy_plugin), index, ["relu0"], False, fds=[xfile.fd])
        xfile.close()
        assert status == "ok"
        np.testing.assert_array_equal(read_arrays(out_index, fds[0])["relu0"], np.full((1, 6), 6, "float32"))
        assert sorted(seen["x"]) == ["a", "b"] and sorted(seen["feeds"]) == ["dense0"]
        assert seen["layers"] == ["relu0"]
        assert c.phases[-1] == f"running a chunk of 1 samples through {toy_plugin}"
    finally:
        c.close()


def test_errors_come_back_as_answers_and_the_loop_goes_on(client, toy_plugin):
    status, payload, fds = client.run(str(toy_plugin), np.ones((1, 4), "float32"), ["nope"])
    assert (status, fds) == ("err", [])
    assert payload["type"] == "UnknownLayerError" and payload["message"] == "toy model: no layer 'nope'"
    assert "Traceback" in payload["traceback"]
    status, payload, _ = client.ask("call", "builtins:exec", ("raise ValueError('first line\\nsecond')",), {})
    assert (status, payload["type"], payload["message"]) == ("err", "ValueError", "first line")
    status, payload, _ = client.ask("call", "builtins:next", (iter([]),), {})
    assert (status, payload["type"], payload["message"]) == ("err", "StopIteration", "StopIteration")
    status, payload, _ = client.ask("no_such_request")
    assert (status, payload["type"]) == ("err", "AttributeError")
    status, payload, _ = client.ask("call", "threading:Lock", (), {})
    assert (status, payload["type"]) == ("err", "WorkerError")
    assert payload["message"].startswith("call: the result cannot be sent back (")
    assert client.phases[-1] == "running threading:Lock"
    assert client.ask("call", "math:hypot", (3, 4), {})[:2] == ("ok", 5.0)


def test_exit_and_a_closed_parent_end_the_loop(toy_plugin):
    c = Client("toy")
    c.close()
    assert not c.thread.is_alive()
    mine, theirs = socket.socketpair()
    thread = threading.Thread(target=serve_requests, args=(Connection(theirs.detach()), "toy"), daemon=True)
    thread.start()
    mine.close()
    thread.join(10)
    assert not thread.is_alive()


def test_the_server_keeps_two_models_and_releases_the_oldest(tmp_path):
    loaded, released = [], []

    class Counting:
        trust_model = False

        def model_files(self, path):
            return [path]

        def load(self, source):
            loaded.append(source)
            return f"model of {source}"

        def release(self, model):
            released.append(model)

    class Server(_Server):
        adapter = Counting()

    phases = []
    server = Server("counting", phases.append)
    a, b, c = (str(tmp_path / n) for n in "abc")
    assert server.model(a) == f"model of {a}" and server.model(b) == f"model of {b}"
    assert server.model(a) == f"model of {a}" and loaded == [a, b] and released == []
    server.model(c)
    assert released == [f"model of {a}"] and loaded == [a, b, c]
    assert phases == [f"loading {a}", f"loading {b}", f"loading {c}"]
    Counting.trust_model = True  # trusting a model is another load
    server.model(c)
    assert loaded[-1] == c and len(loaded) == 4 and released[-1] == f"model of {b}"


def test_stamps_cover_every_file_under_a_directory(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "b.bin").write_bytes(b"12")
    (tmp_path / "m" / "sub" / "a.bin").write_bytes(b"1")
    missing = str(tmp_path / "gone.json")
    stamps = _stamps([str(tmp_path / "m"), missing])
    assert [(os.path.relpath(p, tmp_path), size) for p, _, size in stamps] == [
        ("m/b.bin", 2), ("m/sub/a.bin", 1), ("gone.json", None)]
    assert stamps[-1] == (missing, None, None) and all(isinstance(t, int) for _, t, _ in stamps[:2])


def test_parameter_requests_and_trust(params_plugin, monkeypatch):
    from xvalidate import registry

    monkeypatch.setattr(registry, "_instances", {})  # a fresh, untrusted adapter, dropped after the test
    c = Client("toyp")
    try:
        source = str(params_plugin)
        status, kernel, _ = c.ask("kernel", source, "dense0")
        assert status == "ok"
        np.testing.assert_array_equal(kernel, np.load(params_plugin)["w0"].T)
        assert c.ask("kernel", source, "dense1")[:2] == ("ok", None)
        status, (w, r, b), _ = c.ask("recurrent_weights", source, "relu0")
        assert status == "ok" and (w.shape, r.shape, b.shape) == ((4, 6), (6, 3), (3,))
        assert c.ask("supports_isolation", source)[:2] == ("ok", True)
        loads = c.phases.count(f"loading {source}")
        assert c.ask("set_trust_model", True)[:2] == ("ok", None)
        assert c.ask("call", "toy_worker_params:trusted", (), {})[:2] == ("ok", True)
        c.ask("layers", source)
        assert c.phases.count(f"loading {source}") == loads + 1  # trusted, the model is loaded again
    finally:
        c.close()
