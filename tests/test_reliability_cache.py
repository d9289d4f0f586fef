"""The conversion cache under stress: two processes converting one model at once, a corrupted
entry, an unusable cache directory, and a key that changes with each thing it covers."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from xvalidate import cache
from xvalidate.registry import register_route

ROUTE_MODULE = '''
import os, time
from pathlib import Path

import numpy as np
from xvalidate.routes.base import Conversion, Route


class CountingRoute(Route):
    """Copies a .npz model after `delay` seconds and appends a line to $COUNT_FILE per conversion."""
    name, pairs, packages = "counting", (("toy", "toy"),), ("numpy",)

    def convert(self, source, src, dst, out_dir, delay=0.0, **options):
        time.sleep(delay)
        with open(os.environ["COUNT_FILE"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        target = Path(out_dir) / "converted.npz"
        np.savez(target, **dict(np.load(source)))
        return Conversion(str(target), artifacts={"model": str(target)}, seconds={"copy": delay})
'''

CONVERT = '''
import sys
from xvalidate.registry import register_route
from xvalidate.cache import convert_cached
register_route("counting", "cache_routes:CountingRoute")
conversion = convert_cached("counting", sys.argv[1], "toy", "toy", {"delay": float(sys.argv[2])})
import numpy as np
print(conversion.cache_hit, float(np.load(conversion.dst_source)["w"].sum()))
'''


@pytest.fixture
def setup(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "cache_routes.py").write_text(ROUTE_MODULE)
    monkeypatch.syspath_prepend(str(site))
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    # registrations are published in the environment workers inherit: give it back after the test
    monkeypatch.setenv("XVALIDATE_REGISTERED", os.environ.get("XVALIDATE_REGISTERED", "{}"))
    register_route("counting", "cache_routes:CountingRoute")
    model = tmp_path / "model.npz"
    np.savez(model, w=np.arange(6, dtype=np.float32))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + sys.path))
    return {"model": model, "count": count, "env": env, "dir": tmp_path}


def conversions(setup) -> int:
    return len(setup["count"].read_text().split()) if setup["count"].exists() else 0


def test_two_processes_converting_one_model_at_once_both_succeed(setup):
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, str(setup["model"]), "1.5"], env=setup["env"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outputs = sorted(out.split()[0] for out, _ in results)
    assert outputs == ["False", "True"]  # one converted, the other waited and reused its entry
    assert all(out.split()[1] == "15.0" for out, _ in results)
    assert conversions(setup) == 1
    root = cache.cache_dir()
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and cache.entry_intact(entries[0])
    assert not list(root.glob(".partial-*"))


def test_a_corrupted_entry_is_detected_by_hash_and_rebuilt(setup):
    first = cache.convert_cached("counting", str(setup["model"]), "toy", "toy", {})
    assert not first.cache_hit and conversions(setup) == 1
    assert cache.convert_cached("counting", str(setup["model"]), "toy", "toy", {}).cache_hit
    with open(first.dst_source, "r+b") as f:  # one flipped byte in the converted model
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = cache.convert_cached("counting", str(setup["model"]), "toy", "toy", {})
    assert not again.cache_hit and conversions(setup) == 2
    np.testing.assert_array_equal(np.load(again.dst_source)["w"], np.arange(6, dtype=np.float32))
    os.unlink(os.path.join(os.path.dirname(again.dst_source), cache.MANIFEST))  # no manifest: not trusted
    assert not cache.convert_cached("counting", str(setup["model"]), "toy", "toy", {}).cache_hit
    assert conversions(setup) == 3


def test_entries_are_private(setup):
    conversion = cache.convert_cached("counting", str(setup["model"]), "toy", "toy", {})
    entry = os.path.dirname(conversion.dst_source)
    for path in (cache.cache_dir(), entry):
        assert os.stat(path).st_mode & 0o777 == 0o700


def _run_with_cache_on(mount_opts: str, setup, fill: bool) -> subprocess.CompletedProcess:
    """Convert with the cache on a small tmpfs (read-only, or filled up), in a private mount namespace."""
    mnt = setup["dir"] / "mnt"
    mnt.mkdir()
    fill_cmd = f"dd if=/dev/zero of={mnt}/fill bs=1k count=200 2>/dev/null; " if fill else ""
    script = (f"mount -t tmpfs -o {mount_opts},size=64k tmpfs {mnt} && {fill_cmd}"
              f"XVALIDATE_CACHE_DIR={mnt}/cache {sys.executable} -c '{CONVERT}' {setup['model']} 0")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], env=setup["env"], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("case", ["read-only", "full"])
def test_an_unusable_cache_directory_falls_back_to_a_temporary_one(setup, case):
    if os.geteuid() == 0:  # a real read-only or full file system, in a mount namespace of its own
        done = _run_with_cache_on("ro" if case == "read-only" else "rw", setup, fill=case == "full")
    else:  # the same failure for an unprivileged user: a directory we may not write
        locked = setup["dir"] / "locked"
        locked.mkdir(mode=0o500)
        env = dict(setup["env"], XVALIDATE_CACHE_DIR=str(locked / "cache"))
        done = subprocess.run([sys.executable, "-c", CONVERT, str(setup["model"]), "0"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("xvalidate: warning: cache directory ")
    assert ("Read-only file system" if case == "read-only" else "No space left on device") in warning[0] \
        or os.geteuid() != 0
    assert done.stdout.split() == ["False", "15.0"]


# ---------------------------------------------------------------- the key covers each of its parts
def test_the_key_changes_with_the_model_content(setup):
    key = cache.cache_key(str(setup["model"]), "counting", "toy", "toy", {})
    np.savez(setup["model"], w=np.arange(6, dtype=np.float32) + 1)
    assert cache.cache_key(str(setup["model"]), "counting", "toy", "toy", {}) != key


def test_the_key_changes_with_the_route_and_the_adapters(setup):
    from xvalidate.routes.base import Route

    class Other(Route):
        name, pairs, packages = "other", (("toy", "toy"), ("toy", "toy2")), ("numpy",)

    register_route("other", Other)
    keys = {cache.cache_key(str(setup["model"]), via, "toy", dst, {})
            for via, dst in (("counting", "toy"), ("other", "toy"), ("other", "toy2"))}
    assert len(keys) == 3


def test_the_key_changes_with_the_route_options(setup):
    keys = {cache.cache_key(str(setup["model"]), "counting", "toy", "toy", options)
            for options in ({}, {"opset": 11}, {"opset": 13}, {"input_shape": [1, 3, 8, 8]})}
    assert len(keys) == 4


def test_the_key_changes_with_library_versions(setup, monkeypatch):
    key = cache.cache_key(str(setup["model"]), "counting", "toy", "toy", {})
    real = cache.version
    for package in ("xvalidate", "numpy"):  # xvalidate itself, and the route's packages
        monkeypatch.setattr(cache, "version", lambda p, package=package: "9.9" if p == package else real(p))
        assert cache.cache_key(str(setup["model"]), "counting", "toy", "toy", {}) != key
    monkeypatch.setattr(cache, "version", lambda p: "9.9" if p == "somethingelse" else real(p))
    assert cache.cache_key(str(setup["model"]), "counting", "toy", "toy", {}) == key


def test_two_concurrent_validates_of_one_keras_model_both_pass(tmp_path):
    """The real thing: two CLI processes validating one Keras model through ONNX at once, one cache."""
    from xvalidate.worker import get_worker

    model = get_worker("keras").call("xvalidate.models.keras_zoo:save", "resnet_block", str(tmp_path / "block.h5"))
    env = dict(os.environ, XVALIDATE_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "xvalidate.cli", "validate", model, "--src", "keras", "--dst", "onnx", "--via", "onnx"]
    procs = [subprocess.Popen(cmd + ["--json", str(tmp_path / f"r{i}.json")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    reports = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    assert sorted(r["meta"]["cache_hit"] for r in reports) == [False, True]
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and cache.entry_intact(entries[0])


def test_half_made_entries_of_dead_makers_are_removed_and_live_ones_kept(setup):
    import fcntl

    root = cache.usable_cache_dir()
    dead_key, live_key = "a" * 32, "b" * 32
    for key in (dead_key, live_key):
        (root / f".partial-{key}-x1").mkdir()
        (root / f".partial-{key}-x1" / "ir.pb").write_bytes(b"half")
        (root / f".{key}.lock").touch()
    holder = os.open(root / f".{live_key}.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its maker is alive and converting
    try:
        cache.convert_cached("counting", str(setup["model"]), "toy", "toy", {})
    finally:
        os.close(holder)
    assert not (root / f".partial-{dead_key}-x1").exists()
    assert (root / f".partial-{live_key}-x1").exists()


def test_temporary_directories_of_a_killed_process_are_removed_at_start_up(tmp_path):
    from xvalidate import shm

    script = ("import os, tempfile, time\n"
              "d = tempfile.mkdtemp(prefix=f'xvalidate-{os.getpid()}-model-', dir=os.environ['D'])\n"
              "open(os.path.join(d, 'model.h5'), 'wb').write(b'x' * 1000)\n"
              "print(d, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, D=str(tmp_path)),
                            stdout=subprocess.PIPE, text=True)
    left = proc.stdout.readline().strip()
    assert shm.stale_files((str(tmp_path),)) == []  # its process is alive
    proc.kill()
    proc.wait()
    assert shm.clean_stale_files((str(tmp_path),)) == (1, 1000)
    assert not os.path.exists(left)
