"""convert_cached, remove_orphans and usable_cache_dir in the test process, with a route defined here
(test_reliability_cache.py converts in child processes, which mutation testing cannot see): what the
route is handed, where an entry is built and stored, what a failure to store says, what is cleaned up
at exit, and which leftovers go."""
import errno
import os
import types
from pathlib import Path

import numpy as np
import pytest

from xvalidate import cache
from xvalidate.errors import ConversionError
from xvalidate.registry import register_route
from xvalidate.routes.base import Conversion, Route


class RecordingRoute(Route):
    """Copies a .npz model; records every call's arguments; raises `fail` if set."""
    name, pairs, packages = "recording", (("toy", "toy"), ("toy", "toy2"), ("toy2", "toy")), ("numpy",)
    calls: list = []
    fail: Exception | None = None

    def convert(self, source, src, dst, out_dir, **options):
        RecordingRoute.calls.append({"source": source, "src": src, "dst": dst, "out_dir": Path(out_dir),
                                     "options": dict(options), "listing": sorted(os.listdir(out_dir))})
        if RecordingRoute.fail is not None:
            raise RecordingRoute.fail
        target = Path(out_dir) / "converted.npz"
        np.savez(target, **dict(np.load(source)))
        return Conversion(str(target), artifacts={"model": str(target)}, seconds={"copy": 0.25})


@pytest.fixture
def env(tmp_path, monkeypatch):
    from xvalidate import registry

    monkeypatch.setenv("XVALIDATE_REGISTERED", os.environ.get("XVALIDATE_REGISTERED", "{}"))
    monkeypatch.setitem(registry._registered, "routes", dict(registry._registered["routes"]))  # gone after the test
    register_route("recording", RecordingRoute)
    monkeypatch.setattr(RecordingRoute, "calls", [])
    monkeypatch.setattr(RecordingRoute, "fail", None)
    monkeypatch.setattr(cache, "_fallback", None)
    root = tmp_path / "cache"
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(root))
    exits = []  # what would run at interpreter exit
    monkeypatch.setattr(cache, "atexit", types.SimpleNamespace(register=lambda f, *a: exits.append((f, a))))
    model = tmp_path / "model.npz"
    np.savez(model, w=np.arange(4, dtype=np.float32))
    return types.SimpleNamespace(root=root, model=str(model), exits=exits, tmp=tmp_path)


def run_exits(exits):
    for f, args in exits:
        f(*args)


def test_without_the_cache_the_route_converts_into_a_temporary_directory_removed_at_exit(env):
    conversion = cache.convert_cached("recording", env.model, "toy", "toy2", {"opset": 13}, use_cache=False)
    (call,) = RecordingRoute.calls
    assert call["source"] == env.model and call["src"] == "toy" and call["dst"] == "toy2"
    assert call["options"] == {"opset": 13}
    out = call["out_dir"]
    assert out.is_dir() and out.name.startswith(f"xvalidate-{os.getpid()}-recording-")
    assert Path(conversion.dst_source).parent == out and not conversion.cache_hit
    assert not env.root.exists()  # the cache is not touched
    run_exits(env.exits)
    assert not out.exists()
    run_exits(env.exits)  # already gone (the OS cleaned /tmp, say): no error at exit


def test_a_cached_conversion_is_built_in_a_partial_directory_of_the_cache_and_stored_under_its_key(env):
    options = {"opset": 11}
    first = cache.convert_cached("recording", env.model, "toy2", "toy", options)
    (call,) = RecordingRoute.calls
    key = cache.cache_key(env.model, "recording", "toy2", "toy", options)
    assert call["src"] == "toy2" and call["dst"] == "toy" and call["options"] == options
    assert call["source"] == env.model
    assert call["out_dir"].parent == env.root and call["out_dir"].name.startswith(f".partial-{key}-")
    assert call["listing"] == []  # a fresh directory
    entry = env.root / key
    assert Path(first.dst_source) == entry / "converted.npz" and cache.entry_intact(entry)
    assert first.cache_hit is False and first.seconds == {"copy": 0.25}
    assert not list(env.root.glob(".partial-*"))  # renamed into place
    again = cache.convert_cached("recording", env.model, "toy2", "toy", options)
    assert again.cache_hit is True and len(RecordingRoute.calls) == 1
    np.testing.assert_array_equal(np.load(again.dst_source)["w"], np.arange(4, dtype=np.float32))


def test_each_direction_and_destination_gets_an_entry_of_its_own(env):
    for src, dst in (("toy", "toy"), ("toy", "toy2"), ("toy2", "toy")):
        done = cache.convert_cached("recording", env.model, src, dst, {})
        assert not done.cache_hit
        assert Path(done.dst_source).parent.name == cache.cache_key(env.model, "recording", src, dst, {})
    assert len(RecordingRoute.calls) == 3
    assert len([p for p in env.root.iterdir() if not p.name.startswith(".")]) == 3


def test_partials_of_the_key_left_without_a_lock_are_removed_before_building(env):
    env.root.mkdir(mode=0o700)
    key = cache.cache_key(env.model, "recording", "toy", "toy", {})
    old = env.root / f".partial-{key}-old"  # left by an older version, which took no lock
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "ir.pb").write_bytes(b"half")
    other = env.root / f".partial-{'c' * 32}-old"  # another key's, no lock: not ours to judge
    other.mkdir()
    cache.convert_cached("recording", env.model, "toy", "toy", {})
    assert not old.exists() and other.exists()
    assert [p.name for p in env.root.glob(".partial-*")] == [other.name]


def test_a_conversion_that_cannot_be_stored_says_so_and_leaves_no_partial(env):
    RecordingRoute.fail = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(ConversionError) as raised:
        cache.convert_cached("recording", env.model, "toy", "toy", {})
    assert str(raised.value) == (f"cache {env.root}: cannot store the conversion (No space left on device); "
                                 f"run with --no-cache or set XVALIDATE_CACHE_DIR")
    assert not list(env.root.glob(".partial-*"))
    assert [p for p in env.root.iterdir() if not p.name.startswith(".")] == []
    RecordingRoute.fail = None
    assert not cache.convert_cached("recording", env.model, "toy", "toy", {}).cache_hit


def test_the_fallback_directory_is_removed_at_exit(env, capsys):
    blocker = env.tmp / "file"
    blocker.write_text("not a directory")
    os.environ["XVALIDATE_CACHE_DIR"] = str(blocker / "cache")  # the fixture's monkeypatch restores it
    fallback = cache.usable_cache_dir()
    assert fallback.is_dir() and "is not usable" in capsys.readouterr().err
    (fallback / "entry").mkdir()
    run_exits(env.exits)
    assert not fallback.exists()
    run_exits(env.exits)  # already gone: no error at exit


def test_a_cache_directory_of_another_user_falls_back_naming_the_reason(env, capsys, monkeypatch):
    theirs = env.tmp / "theirs"
    theirs.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(theirs, 12345, 12345)
    else:  # not root: we cannot give a directory away; pretend to be someone else
        me = os.getuid()
        monkeypatch.setattr(cache.os, "getuid", lambda: me + 1)
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(theirs))
    fallback = cache.usable_cache_dir()
    assert fallback != theirs and fallback.is_dir()
    assert capsys.readouterr().err == (f"xvalidate: warning: cache directory {theirs} is not usable "
                                       f"({theirs} belongs to another user); caching in {fallback} for this run\n")


def _dead_partial(root: Path, key: str) -> Path:
    (root / f".{key}.lock").touch()
    orphan = root / f".partial-{key}-x"
    orphan.mkdir()
    return orphan


@pytest.mark.parametrize("names", ["abcd", "wxyz"])
def test_every_dead_partial_is_removed_whatever_else_lies_around(tmp_path, names):
    """A partial that is skipped (an older version's, one whose maker has not taken its lock yet, one
    being made) does not stop the others from being removed, in whatever order they are listed."""
    dead = [_dead_partial(tmp_path, c * 32) for c in names]
    skipped = [tmp_path / ".partial-short-1", tmp_path / f".partial-{'e' * 32}-nolock"]
    busy = _dead_partial(tmp_path, "f" * 32)
    for p in skipped:
        p.mkdir()
    old = []
    for i, c in enumerate(names):  # leftovers of discarded entries, older than 10 minutes
        old.append(tmp_path / f".stale-{c}")
        old[-1].mkdir()
        os.utime(old[-1], (1, 1))
    os.symlink(tmp_path / "gone", tmp_path / ".stale-vanished")  # removed by another process meanwhile
    with cache._locked(tmp_path / f".{'f' * 32}.lock"):
        assert cache.remove_orphans(tmp_path) == len(dead) + len(old)
    assert not any(p.exists() for p in dead + old)
    assert all(p.exists() for p in skipped + [busy])


def test_a_leftover_is_removed_only_when_older_than_ten_minutes(tmp_path, monkeypatch):
    now = 1_700_000_000.0
    monkeypatch.setattr(cache, "time", types.SimpleNamespace(time=lambda: now))
    ages = {"young": 599.0, "old": 600.5}
    for name, age in ages.items():
        (tmp_path / f".stale-{name}").mkdir()
        os.utime(tmp_path / f".stale-{name}", (now - age, now - age))
    assert cache.remove_orphans(tmp_path) == 1
    assert (tmp_path / ".stale-young").exists() and not (tmp_path / ".stale-old").exists()


def test_a_discarded_entry_is_moved_whole_into_a_stale_folder_of_the_cache_before_deletion(tmp_path, monkeypatch):
    entry = tmp_path / ("d" * 32)
    (entry / "sub").mkdir(parents=True)
    (entry / "sub" / "w.bin").write_bytes(b"w")
    seen = []
    real = cache.shutil.rmtree

    def rmtree(path, *args, **kwargs):  # what a process killed right here would leave behind
        seen.append((Path(path), sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cache, "shutil", types.SimpleNamespace(rmtree=rmtree))
    cache._discard(entry)
    ((aside, listing),) = seen
    assert aside.parent == tmp_path and aside.name.startswith(".stale-")  # remove_orphans' pattern
    assert listing == ["entry", "entry/sub", "entry/sub/w.bin"]
    assert not entry.exists() and not aside.exists()


def test_lock_files_are_private(tmp_path):
    with cache._locked(tmp_path / ".k.lock"):
        pass
    assert os.stat(tmp_path / ".k.lock").st_mode & 0o777 == 0o600


def test_the_key_covers_every_file_the_adapter_names_and_not_the_order_of_options(env, monkeypatch):
    class Sidecar:  # an adapter whose model is two files, the .npz and its weights (the cache asks no more)
        def model_files(self, path):
            return [path, path + ".weights"]

    monkeypatch.setattr(RecordingRoute, "pairs", RecordingRoute.pairs + (("sidecar", "toy"),))
    real = cache.get_adapter  # the adapter in this process only (registering it would tell live workers)
    monkeypatch.setattr(cache, "get_adapter", lambda name: Sidecar() if name == "sidecar" else real(name))
    weights = Path(env.model + ".weights")
    weights.write_bytes(b"v1")
    key = cache.cache_key(env.model, "recording", "sidecar", "toy", {"a": 1, "b": 2})
    assert cache.cache_key(env.model, "recording", "sidecar", "toy", {"b": 2, "a": 1}) == key
    first = cache.convert_cached("recording", env.model, "sidecar", "toy", {"a": 1, "b": 2})
    assert cache.convert_cached("recording", env.model, "sidecar", "toy", {"b": 2, "a": 1}).cache_hit
    weights.write_bytes(b"v2")  # only the second file changed: convert again
    assert cache.cache_key(env.model, "recording", "sidecar", "toy", {"a": 1, "b": 2}) != key
    again = cache.convert_cached("recording", env.model, "sidecar", "toy", {"a": 1, "b": 2})
    assert not again.cache_hit and again.dst_source != first.dst_source and len(RecordingRoute.calls) == 2


def test_the_key_of_a_route_in_a_worker_environment_covers_its_pins(env, monkeypatch):
    """A route converting inside a worker environment of its own: other pins there are another conversion,
    though this Python's versions did not move."""
    from xvalidate.environments import Environment

    plain = cache.cache_key(env.model, "recording", "toy", "toy", {})
    monkeypatch.setattr(RecordingRoute, "environment", Environment("xv-pinned", ("numpy==1.23.5",)), raising=False)
    pinned = cache.cache_key(env.model, "recording", "toy", "toy", {})
    assert pinned != plain and cache.cache_key(env.model, "recording", "toy", "toy", {}) == pinned
    monkeypatch.setattr(RecordingRoute, "environment", Environment("xv-pinned", ("numpy==1.24.0",)))
    assert cache.cache_key(env.model, "recording", "toy", "toy", {}) not in (plain, pinned)
    monkeypatch.setattr(RecordingRoute, "environment", Environment("xv-other", ("numpy==1.23.5",)))
    assert cache.cache_key(env.model, "recording", "toy", "toy", {}) not in (plain, pinned)
