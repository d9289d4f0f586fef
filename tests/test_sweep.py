"""`xvalidate sweep`: models x routes x input sets on the numpy toy adapter and toy routes (cells cost
a toy worker each, no framework): the local executor with 1 and 2 processes, Ray on a local cluster,
resuming from the SQLite record, the worst cell's exit code, and the matrix page's links."""
import json
import os
import shutil
import sqlite3
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import psutil
import pytest

from test_cli_exit_codes import invoke, one_line_error, toy  # noqa: F401 (toy: the fixture with routes)
from test_interfaces import ROOT, _framework_words
from xvalidate.sweep import parse_routes, source_adapter

ROUTES = "toycopy,toyscale,toybroken"


class Links(HTMLParser):
    """The matrix page's table cells: (class, link) of every td that shows a verdict."""

    def __init__(self):
        super().__init__()
        self.cells, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "cell" in (attrs.get("class") or "").split():
            self._cell = [attrs["class"].split()[-1], None]
            self.cells.append(self._cell)
        elif tag == "a" and self._cell is not None:
            self._cell[1] = attrs["href"]

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None


@pytest.fixture
def models(toy, tmp_path):
    """Two toy models (the fixture's and one with other weights)."""
    rng = np.random.default_rng(1)
    other = tmp_path / "other.npz"
    np.savez(other, w0=rng.standard_normal((4, 6)).astype("float32"), w1=rng.standard_normal((6, 3)).astype("float32"))
    return [toy, other]


def sweep(models, out, *args):
    return invoke("sweep", *models, "--dst", "toy", "--out", out, *args)


def rows(out):
    with sqlite3.connect(Path(out) / "sweep.sqlite") as db:
        db.row_factory = sqlite3.Row
        return {(Path(r["model"]).name, r["via"], r["input_set"]): dict(r) for r in db.execute("SELECT * FROM cells")}


def test_local_sweep_records_links_and_resumes(models, tmp_path):
    out = tmp_path / "out"
    first = sweep(models, out, "--routes", ROUTES, "--seeds", "0,1", "--batch", 3, "--workers", 2)
    assert first.exit_code == 2, first.output  # the worst cell is an ERROR (toybroken)
    assert "12 cells: 4 PASS, 4 FAIL, 4 ERROR (12 run, 0 recorded before)" in first.output
    cells = rows(out)
    assert len(cells) == 12
    for (model, via, input_set), r in cells.items():
        assert input_set in ("seed0-batch3", "seed1-batch3")
        expected = {"toycopy": ("PASS", 0), "toyscale": ("FAIL", 1), "toybroken": ("ERROR", 2)}[via]
        assert (r["status"], r["exit_code"]) == expected, r
        if via == "toybroken":
            assert r["error"] == "RuntimeError: the converter crashed" and r["report_html"] is None
            assert "Traceback" in (out / r["error_file"]).read_text()
        else:
            report = json.loads((out / r["report_json"]).read_text())
            assert report["passed"] is (via == "toycopy") and report["inputs"]["seed"] == int(input_set[4])
            assert r["paired"] == 3 and r["src_layers"] == 3 and r["final_layer"] == "dense1"
        if via == "toyscale":
            assert r["worst_layer"] == "dense1" and r["final_max_abs"] > 0.1 and "dense1" in r["reason"]
        if via == "toycopy":
            assert r["final_max_abs"] == 0 and r["final_passed"] == 1

    page = Links()
    page.feed((out / "index.html").read_text())
    assert sorted(c[0] for c in page.cells) == ["ERROR"] * 4 + ["FAIL"] * 4 + ["PASS"] * 4
    linked = {c[1] for c in page.cells}
    assert linked == {r["report_html"] or r["error_file"] for r in cells.values()} and None not in linked
    assert all((out / link).is_file() for link in linked)

    again = sweep(models, out, "--routes", ROUTES, "--seeds", "0,1", "--batch", 3, "--workers", 1)
    assert again.exit_code == 2 and "(0 run, 12 recorded before)" in again.output, again.output
    assert rows(out) == cells  # nothing ran again: every record, start time included, is the same

    more = sweep(models, out, "--routes", ROUTES, "--seeds", "0,1,2", "--batch", 3)
    assert "18 cells" in more.output and "(6 run, 12 recorded before)" in more.output, more.output
    np.savez(models[1], w0=np.eye(4, 6, dtype="float32"), w1=np.eye(6, 3, dtype="float32"))  # a changed model reruns
    changed = sweep(models, out, "--routes", "toycopy", "--seeds", "0", "--batch", 3)
    assert changed.exit_code == 0 and "(1 run, 1 recorded before)" in changed.output, changed.output
    redo = sweep(models, out, "--routes", "toycopy", "--seeds", "0", "--batch", 3, "--redo")
    assert "(2 run, 0 recorded before)" in redo.output, redo.output


def test_exit_code_is_the_worst_cell(models, tmp_path):
    assert sweep(models, tmp_path / "a", "--routes", "toycopy").exit_code == 0
    mixed = sweep(models, tmp_path / "b", "--routes", "toycopy,toyscale", "--batch", 2)
    assert mixed.exit_code == 1 and "2 PASS, 2 FAIL, 0 ERROR" in mixed.output, mixed.output


def test_input_files_are_input_sets(models, tmp_path):
    np.save(tmp_path / "ones.npy", np.ones((2, 4), np.float32))
    np.save(tmp_path / "wide.npy", np.ones((2, 5), np.float32))  # does not fit the toy models: an ERROR cell each
    result = sweep(models, tmp_path / "o", "--routes", "toycopy", "--input", tmp_path / "ones.npy",
                   "--input", tmp_path / "wide.npy")
    assert result.exit_code == 2, result.output
    statuses = {(model, input_set): r["status"] for (model, _, input_set), r in rows(tmp_path / "o").items()}
    assert statuses == {("toy.npz", "ones.npy"): "PASS", ("other.npz", "ones.npy"): "PASS",
                        ("toy.npz", "wide.npy"): "ERROR", ("other.npz", "wide.npy"): "ERROR"}


def test_ray_executor_matches_local_and_leaves_nothing(models, tmp_path, monkeypatch):
    temp = tempfile.mkdtemp(prefix="xvt-", dir="/tmp")  # short: the local cluster's sockets live under it
    monkeypatch.setattr(tempfile, "tempdir", temp)
    local = sweep(models, tmp_path / "local", "--routes", "toycopy,toyscale", "--batch", 2, "--workers", 2)
    ray = sweep(models, tmp_path / "ray", "--routes", "toycopy,toyscale", "--batch", 2, "--executor", "ray",
                "--workers", 2)
    assert ray.exit_code == local.exit_code == 1, ray.output
    keep = ("status", "exit_code", "paired", "final_max_abs", "worst_layer", "reason")
    assert ({k: {f: r[f] for f in keep} for k, r in rows(tmp_path / "ray").items()}
            == {k: {f: r[f] for f in keep} for k, r in rows(tmp_path / "local").items()})
    names = {p.name() for p in psutil.Process().children(recursive=True)}
    assert not names & {"raylet", "gcs_server"}, names  # the local cluster was shut down
    assert os.listdir(temp) == []  # and its folder removed
    os.rmdir(temp)


@pytest.fixture
def running_cluster(models, tmp_path, monkeypatch):
    """A Ray cluster started apart with `ray start --head` (as on a machine of a multi-node cluster), in a
    process group of its own so that stopping it touches no other cluster; its workers see the toy plugin.
    A token file exists (RAY_AUTH_TOKEN_PATH), so the cluster requires token authentication, as Ray's
    default `ray start` does on a machine that has ~/.ray/auth_token; RAY_AUTH_MODE is left unset."""
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="xvc-", dir="/tmp")  # short: the cluster's sockets live under it
    token = tmp_path / "auth_token"
    token.write_text("0123456789abcdef" * 4)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    start = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                              "--num-cpus=2", f"--temp-dir={temp}", "--include-dashboard=false",
                              "--disable-usage-stats"], env=env, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0, out
        yield f"127.0.0.1:{port}"
    finally:
        try:
            os.killpg(start.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for _ in range(100):  # the kernel reaps them a moment later
            if not any(p.info["cmdline"] and temp in " ".join(p.info["cmdline"])
                       for p in psutil.process_iter(["cmdline"])):
                break
            time.sleep(0.1)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_executor_joins_a_running_cluster_and_leaves_it_running(models, running_cluster, tmp_path):
    """Run as a user would, from a shell: a process of its own, with Ray's state (its token) unshared."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    joined = subprocess.run([sys.executable, "-m", "xvalidate.cli", "sweep", *map(str, models), "--dst", "toy",
                             "--out", str(tmp_path / "ray"), "--routes", "toycopy,toyscale", "--batch", "2",
                             "--executor", "ray", "--address", running_cluster],
                            env=env, capture_output=True, text=True, timeout=300)
    assert joined.returncode == 1, joined.stdout + joined.stderr
    statuses = {k: r["status"] for k, r in rows(tmp_path / "ray").items()}
    assert statuses == {("toy.npz", "toycopy", "seed0-batch2"): "PASS", ("toy.npz", "toyscale", "seed0-batch2"): "FAIL",
                        ("other.npz", "toycopy", "seed0-batch2"): "PASS",
                        ("other.npz", "toyscale", "seed0-batch2"): "FAIL"}
    status = subprocess.run([str(Path(sys.executable).parent / "ray"), "status", f"--address={running_cluster}"],
                            capture_output=True, text=True, timeout=60, env=dict(os.environ, RAY_AUTH_MODE="token"))
    assert status.returncode == 0 and "Active:" in status.stdout, status.stdout + status.stderr  # still up


def test_bad_options_are_one_line_errors(models, tmp_path):
    out = tmp_path / "o"
    one_line_error(sweep([tmp_path / "none.npz"], out, "--routes", "toycopy"), "none.npz: no such model file")
    (tmp_path / "model.xyz").write_text("")
    one_line_error(sweep([tmp_path / "model.xyz"], out, "--routes", "toycopy"), "model.xyz: no adapter reads files with this extension; "
                                                          "give --src")
    one_line_error(sweep(models, out, "--routes", "toycopy,nowhere"), "unknown route 'nowhere'")
    one_line_error(sweep(models, out, "--routes", "toycopy:keras"),
                   "--routes: via='toycopy' cannot convert toy to keras")
    one_line_error(sweep(models, out, "--routes", "toycopy", "--workers", 0), "--workers: expected a positive")
    one_line_error(sweep(models, out, "--routes", "toycopy", "--seeds", "a,b"), "--seeds: expected comma-separated integers")
    one_line_error(sweep(models, out, "--routes", "toycopy", "--address", "auto"), "--address: only the ray executor")
    one_line_error(sweep(models, out, "--routes", "toycopy", "--input", tmp_path / "none.npy"), "--input")
    (tmp_path / "file").write_text("")
    one_line_error(sweep(models, tmp_path / "file" / "o", "--routes", "toycopy"), "--out")
    assert not out.exists() or not (out / "sweep.sqlite").exists() or not rows(out)


def test_source_adapter_from_declared_extensions(toy_plugin):
    assert source_adapter("a/b/model.npz") == "toy"
    assert source_adapter("m.H5") == "keras" and source_adapter("m.onnx") == "onnx"
    assert source_adapter("net-symbol.json") == "mxnet"


def test_the_sweep_modules_name_no_framework():
    modules = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "xvalidate/sweep").glob("*.py"))]
    modules.append("xvalidate/report/sweep.py")
    assert {name: _framework_words(ROOT / name) for name in modules} == {name: [] for name in modules}


def test_parse_routes():
    assert parse_routes("mmdnn, onnx,onnx:onnx", "mxnet") == [("mmdnn", "mxnet"), ("onnx", "mxnet"), ("onnx", "onnx")]
    assert parse_routes("onnx,onnx", "onnx") == [("onnx", "onnx")]
    with pytest.raises(Exception, match="ROUTE:DST"):
        parse_routes("onnx:", "mxnet")
