"""Worker environments: creation with a progress line, the worker inside one (same protocol, same
shared memory, none of the main environment's packages), and one-line errors for a broken one."""
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner

import xvalidate
from xvalidate import environments, registry
from xvalidate.cli import main
from xvalidate.environments import Environment
from xvalidate.errors import WorkerError
from xvalidate.worker import get_env_worker, get_worker

# no requirements: a venv without pip, made in a second or two
BARE = Environment(name="xv-test-bare", requirements=(), check="import sys")


def test_bare_environment_created_once_shipped_and_broken():
    """One test for the one environment it recreates: created with progress lines and a marker, the
    modules shipped, then its worker fails (no numpy there) with a one-line rebuild hint."""
    lines = []
    python = environments.create(BARE, force=True, report=lines.append)
    assert python == BARE.python and python.exists()
    assert lines[0].startswith("xvalidate: creating worker environment xv-test-bare in ")
    assert lines[1].startswith("xvalidate: worker environment xv-test-bare ready in ")
    assert environments.is_ready(BARE) and environments.creation_seconds(BARE) > 0
    again = []
    assert environments.ensure(BARE, report=again.append) == python and again == []  # made: nothing to do
    assert environments.is_ready(Environment(name="xv-test-bare", requirements=(), check="import os"))  # no pin
    assert not environments.is_ready(Environment(name="xv-test-bare", requirements=("numpy==1.23.5",)))

    shipped = environments.ship(BARE)
    files = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*.py"))
    assert files == ["xvalidate/__init__.py", "xvalidate/errors.py", "xvalidate/registry.py", "xvalidate/shm.py",
                     "xvalidate/worker.py"]
    assert (shipped / "xvalidate" / "__init__.py").read_text() == ""  # not the package's: that imports rich
    assert environments.ship(BARE) == shipped  # once per content

    with pytest.raises(WorkerError) as info:
        get_env_worker(BARE).call("os:getpid")
    message = str(info.value)
    assert "\n" not in message and "No module named 'numpy'" in message
    assert message.startswith("worker environment xv-test-bare at ") and " is broken (" in message
    assert message.endswith("rebuild it with `xvalidate env create xv-test-bare --force`")


def test_a_failed_creation_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XVALIDATE_ENV_DIR", str(tmp_path))
    bad = Environment(name="xv-test-bad", requirements=(), check="import numpy")  # its check fails
    with pytest.raises(WorkerError) as info:
        environments.create(bad, report=lambda line: None)
    message = str(info.value)
    assert "\n" not in message and "could not check it (ModuleNotFoundError: No module named 'numpy')" in message
    assert message.endswith("retry with `xvalidate env create xv-test-bad --force`")
    assert not bad.path.exists()


def test_an_adapter_in_an_environment_runs_over_shared_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_registered", {"adapters": {}, "routes": {}})
    monkeypatch.setenv(registry.ENV_VAR, "{}")
    xvalidate.register_adapter("envtoy", "env_toy_adapter:EnvToyAdapter")
    rng = np.random.default_rng(0)
    model = tmp_path / "toy.npz"
    w0, w1 = rng.standard_normal((4, 6)).astype("float32"), rng.standard_normal((6, 3)).astype("float32")
    np.savez(model, w0=w0, w1=w1)
    x = rng.standard_normal((5, 4)).astype("float32")
    out = xvalidate.run("envtoy", str(model), x)
    np.testing.assert_allclose(out["dense1"], np.maximum(x @ w0, 0) @ w1, rtol=1e-6)

    worker = get_worker("envtoy")
    env = worker.environment
    assert env.name == "keras-mxnet"
    assert all(p.startswith(str(env.path)) for p in worker.call("site:getsitepackages"))
    assert worker.call("importlib.util:find_spec", "rich") is None  # none of the main environment's packages
    home = worker.call("os:getenv", "KERAS_HOME")
    assert home.endswith("/keras") and os.path.isdir(os.path.dirname(home))  # a directory of its own
    assert home != get_worker("keras").call("os:getenv", "KERAS_HOME")


def test_cli_env_commands():
    runner = CliRunner()
    listed = runner.invoke(main, ["env", "list"])
    assert listed.exit_code == 0 and "keras-mxnet: " in listed.output and "keras-mxnet==2.2.4.3" in listed.output
    unknown = runner.invoke(main, ["env", "create", "nosuch"])
    assert unknown.exit_code == 2
    assert unknown.output.strip().splitlines() == [
        "error: unknown environment 'nosuch'; expected one of: keras-mxnet"]
    help_text = runner.invoke(main, ["--help"]).output
    assert "env" in help_text.split("Commands:")[1]


def test_copies_of_other_versions_of_the_shipped_modules_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("XVALIDATE_ENV_DIR", str(tmp_path))
    env = Environment(name="xv-test-ship", requirements=())
    folder = env.path / "ship"
    old, recent, partial = folder / "0123456789abcdef", folder / "recent", folder / ".partial-x"
    for path in (old, recent, partial):
        (path / "xvalidate").mkdir(parents=True)
    day_ago = time.time() - environments.SHIPPED_KEPT_SECONDS - 60
    os.utime(old, (day_ago, day_ago))
    os.utime(partial, (day_ago, day_ago))
    shipped = environments.ship(env)
    assert sorted(p.name for p in folder.iterdir()) == sorted([shipped.name, "recent"])
    os.utime(shipped, (day_ago, day_ago))
    assert environments.ship(env) == shipped and shipped.stat().st_mtime > day_ago + 3600  # used: fresh again
