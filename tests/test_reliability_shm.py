"""Shared memory never outlives its users: arrays travel in anonymous files only, and files left
in /dev/shm or the temp directory by dead processes (or older versions) are removed at start-up."""
import os
import subprocess
import sys
import time

import numpy as np
import psutil

import xvalidate
from xvalidate import shm
from xvalidate.worker import Worker


def _links(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used
            pass
    return out


def _named_files(pid: int) -> list[str]:
    """Files in /dev/shm or the temp directory that process `pid` holds open or mapped."""
    held = _links(pid)
    with open(f"/proc/{pid}/maps") as maps:
        held += [line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6]
    return [h for h in held if "xvalidate" in h and not h.startswith("/memfd:") and not h.endswith("(deleted)")]


def _open_inodes() -> set[tuple[int, int]]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.fstat(int(fd))
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def test_a_run_uses_no_named_file_on_either_side(toy_plugin):
    worker = Worker("toy")
    try:
        x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
        out = worker.run(str(toy_plugin), x)
        assert _named_files(os.getpid()) == [] and _named_files(worker.process.pid) == []
        kept = [(os.fstat(b.fd).st_dev, os.fstat(b.fd).st_ino) for b in worker._buffers]
        assert kept and all(os.readlink(f"/proc/self/fd/{b.fd}").startswith("/memfd:xvalidate")
                            for b in worker._buffers)  # the outputs' file, kept for the next run
        del out
    finally:
        worker.close()
    assert not set(kept) & _open_inodes()  # closed with the worker: the kernel frees it


def test_a_compare_leaves_nothing_behind(toy_plugin):
    before = set(os.listdir(shm.SHM_DIR)) if shm.SHM_DIR else set()
    script = ("import sys, xvalidate\n"
              "r = xvalidate.compare(sys.argv[1], sys.argv[1], src='toy', dst='toy', batch=16)\n"
              "print(r.passed)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script, str(toy_plugin)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.stdout.strip() == "True", done.stderr
    new = set(os.listdir(shm.SHM_DIR)) - before if shm.SHM_DIR else set()
    mine = [f for f in new if f.startswith("xvalidate-") and f.split("-")[1].isdigit()]
    assert mine == []  # named files would carry the pid of their process


def test_stale_files_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    files = {
        "dead": tmp_path / f"xvalidate-{dead.pid}-abcdefgh.bin",          # its process is gone
        "alive": tmp_path / f"xvalidate-{os.getpid()}-abcdefgh.bin",      # ours
        "legacy_old": tmp_path / "xvalidate-k2j3h4g5.bin",                # an older version's, unheld
        "legacy_log": tmp_path / "xvalidate-keras-k2j3h4g5.log",
        "legacy_held": tmp_path / "xvalidate-q9w8e7r6.bin",               # unheld? no: we keep it open
        "legacy_young": tmp_path / "xvalidate-z1x2c3v4.bin",              # may be between writer and reader
        "other": tmp_path / "xvalidate-report.json",                      # not ours to judge
    }
    for path in files.values():
        path.write_bytes(b"\0" * 1000)
    old = time.time() - 3600
    for key in ("legacy_old", "legacy_log", "legacy_held"):
        os.utime(files[key], (old, old))
    holder = open(files["legacy_held"], "rb")
    try:
        stale = set(shm.stale_files((str(tmp_path),)))
    finally:
        holder.close()
    assert stale == {files["dead"], files["legacy_old"], files["legacy_log"]}


def test_clean_stale_files_reports_what_it_freed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / f"xvalidate-{dead.pid}-abcdefgh.bin"
    path.write_bytes(b"\0" * 4096)
    assert shm.clean_stale_files((str(tmp_path),)) == (1, 4096)
    assert not path.exists()
