"""The conversion cache's helpers in the test process (the stress tests in test_reliability_cache.py
convert in child processes): where the cache lives, a private directory, the fallback when it cannot
be written, the digest of a model directory, manifests, and removing what dead makers left."""
import os
import stat

import pytest

from xvalidate import cache


def test_the_cache_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("XVALIDATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "xvalidate"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "xvalidate"


def test_a_private_directory_is_made_with_its_parents_and_kept_0700(tmp_path):
    made = cache.private_dir(tmp_path / "a" / "b")
    assert made == tmp_path / "a" / "b" and stat.S_IMODE(os.stat(made).st_mode) == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    cache.private_dir(open_dir)
    assert stat.S_IMODE(os.stat(open_dir).st_mode) == 0o700
    assert list(open_dir.iterdir()) == []  # the probe file is gone


def test_an_unusable_cache_directory_falls_back_once_with_a_warning(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(cache, "_fallback", None)
    first = cache.usable_cache_dir()
    err = capsys.readouterr().err
    assert first.is_dir() and first.name.startswith(f"xvalidate-{os.getpid()}-cache-")
    assert err == (f"xvalidate: warning: cache directory {blocker / 'cache'} is not usable (Not a directory); "
                   f"caching in {first} for this run\n")
    assert cache.usable_cache_dir() == first and capsys.readouterr().err == ""
    monkeypatch.setattr(cache, "_fallback", None)
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(tmp_path / "fine"))
    assert cache.usable_cache_dir() == tmp_path / "fine"


def test_the_digest_of_a_model_directory_covers_names_and_contents(tmp_path):
    model = tmp_path / "saved_model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "data").write_bytes(b"x" * (3 << 20))  # more than one read block
    digest = cache._file_digest(model)
    assert digest == cache._file_digest(model) and len(digest) == 64
    (model / "variables" / "data").write_bytes(b"x" * (3 << 20) + b"y")
    changed = cache._file_digest(model)
    assert changed != digest
    (model / "variables" / "data").rename(model / "variables" / "other")
    assert cache._file_digest(model) != changed  # the same bytes under another name
    single = tmp_path / "m.npz"
    single.write_bytes(b"abc")
    assert cache._file_digest(single) != cache._file_digest(model)
    assert cache._model_files(single, None) == [str(single)]
    assert cache._model_files(single, "no-such-adapter") == [str(single)]


def test_a_manifest_lists_every_file_and_catches_a_change(tmp_path):
    entry = tmp_path / "entry"
    (entry / "sub").mkdir(parents=True)
    (entry / "a.bin").write_bytes(b"a")
    (entry / "sub" / "b.bin").write_bytes(b"b")
    cache.write_manifest(entry)
    assert sorted(__import__("json").loads((entry / cache.MANIFEST).read_text())) == ["a.bin", "sub/b.bin"]
    assert cache.entry_intact(entry)
    (entry / "sub" / "b.bin").write_bytes(b"B")
    assert not cache.entry_intact(entry)
    (entry / cache.MANIFEST).write_text("{}")
    assert not cache.entry_intact(entry)  # an empty manifest vouches for nothing


def test_leftovers_are_removed_when_their_makers_are_gone(tmp_path):
    key = "k" * 32
    (tmp_path / f".{key}.lock").write_text("")
    orphan = tmp_path / f".partial-{key}-abc"
    orphan.mkdir()
    young = tmp_path / ".stale-young"
    young.mkdir()
    old = tmp_path / ".stale-old"
    old.mkdir()
    os.utime(old, (1, 1))
    unlocked = tmp_path / f".partial-{'j' * 32}-abc"  # no lock file: its maker has not taken it yet
    unlocked.mkdir()
    short = tmp_path / ".partial-short-abc"
    short.mkdir()
    assert cache.remove_orphans(tmp_path) == 2
    assert not orphan.exists() and not old.exists() and young.exists() and unlocked.exists() and short.exists()
    with cache._locked(tmp_path / f".{key}.lock"):
        orphan.mkdir()
        assert cache.remove_orphans(tmp_path) == 0 and orphan.exists()  # being made right now
    entry = tmp_path / "entry"
    (entry / "f").mkdir(parents=True)
    cache._discard(entry)
    assert not entry.exists() and not list(tmp_path.glob(".stale-*/entry"))


@pytest.mark.parametrize("missing", [True, False])
def test_entry_intact_is_false_without_a_readable_manifest(tmp_path, missing):
    entry = tmp_path / "e"
    entry.mkdir()
    if not missing:
        (entry / cache.MANIFEST).write_text("not json")
    assert cache.entry_intact(entry) is False
