"""Kill a batch-8 ResNet50 keras-vs-onnx validation in the middle, three ways, and count what is left.

    .venv/bin/python benchmarks/kill_leaks.py [--batch 8] [--at 0.5]

Scenarios: `kill -9` of the calling process, `kill -9` of a worker, SIGINT (Ctrl-C) to the
process group. The kill comes `--at` seconds after the caller has sent the batch to its
workers (`--when sent`: it holds an anonymous array file open while they run it), or after
their outputs, over 500 MB, are back in the caller (`--when outputs`). For each: xvalidate files and bytes in
/dev/shm and the temp directory after the kill, processes of the run still alive 3 s later,
the exit code, how long the CLI took to exit, and the kernel's Shmem figure before and
after (other programs on the machine move it too). Files are counted when the run's processes
held them open or mapped at the kill, or when their name carries one of the run's pids."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
XVALIDATE = [sys.executable, "-m", "xvalidate.cli"]


def shm_paths(procs: list[psutil.Process]) -> set[str]:
    """Named files in /dev/shm or the temp directory that these processes hold open or mapped."""
    held = set()
    for p in procs:
        try:
            for fd in os.listdir(f"/proc/{p.pid}/fd"):
                held.add(os.readlink(f"/proc/{p.pid}/fd/{fd}"))
            with open(f"/proc/{p.pid}/maps") as maps:
                held.update(line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6)
        except OSError:
            continue
    roots = ("/dev/shm/", tempfile.gettempdir() + "/")
    return {h for h in held if h.startswith(roots) and "xvalidate" in h and not h.endswith("(deleted)")}


def pid_named_files(pids: set[int]) -> dict[str, int]:
    """xvalidate files named after one of `pids` (the fallback when memfd is missing)."""
    out = {}
    for directory in ("/dev/shm", tempfile.gettempdir()):
        for p in Path(directory).glob("xvalidate-*"):
            parts = p.name.split("-")
            if len(parts) > 2 and parts[1].isdigit() and int(parts[1]) in pids and p.is_file():
                out[str(p)] = p.stat().st_size
    return out


def shmem_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1])
    return 0


def held_memfd_bytes(proc: psutil.Process) -> int | None:
    """Bytes of the anonymous array files the caller holds (None when it holds none)."""
    sizes = []
    try:
        for fd in os.listdir(f"/proc/{proc.pid}/fd"):
            path = f"/proc/{proc.pid}/fd/{fd}"
            if os.readlink(path).startswith("/memfd:xvalidate"):
                sizes.append(os.stat(path).st_size)
    except OSError:
        return None
    return sum(sizes) if sizes else None


def mapped_bytes(proc: psutil.Process) -> int:
    """Bytes of xvalidate's array files (anonymous or in /dev/shm) mapped into the caller."""
    total, seen = 0, set()
    try:
        with open(f"/proc/{proc.pid}/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and "xvalidate" in fields[5] and (fields[4], fields[0]) not in seen:
                    seen.add((fields[4], fields[0]))
                    start, end = (int(v, 16) for v in fields[0].split("-"))
                    total += end - start
    except OSError:
        pass
    return total


def ready(proc: psutil.Process, when: str) -> bool:
    """"sent": the batch is out to the workers (an anonymous array file is open in the caller);
    "outputs": their outputs, over 500 MB, are mapped in the caller."""
    if when == "sent":
        return held_memfd_bytes(proc) is not None
    return mapped_bytes(proc) > 500e6


def scenario(name: str, model: Path, batch: int, at: float, when: str, env: dict) -> dict:
    before_kb = shmem_kb()
    (model.parent / f"{name}.json").unlink(missing_ok=True)  # a report from an earlier run must not count
    args = XVALIDATE + ["validate", str(model), "--src", "keras", "--dst", "onnx", "--via", "onnx",
                        "--batch", str(batch), "--json", str(model.parent / f"{name}.json")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    ps = psutil.Process(proc.pid)
    start = time.monotonic()
    while not ready(ps, when) and proc.poll() is None and time.monotonic() - start < 600:
        time.sleep(0.02)
    time.sleep(at)
    family = [ps] + ps.children(recursive=True)
    peak_kb, held = shmem_kb(), mapped_bytes(ps)
    named = shm_paths(family)  # what a leak could leave behind: named files the run holds
    t_kill = time.monotonic()
    if name == "kill -9 caller":
        proc.send_signal(signal.SIGKILL)
    elif name == "kill -9 worker":
        workers = ps.children()
        max(workers, key=lambda k: k.memory_info().rss).send_signal(signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(120)
    exit_s = time.monotonic() - t_kill
    time.sleep(3)
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    left = {p: os.path.getsize(p) for p in named if os.path.exists(p)}
    left.update(pid_named_files({p.pid for p in family}))
    return {"scenario": name, "exit_code": code, "exit_seconds": round(exit_s, 2),
            "stderr": proc.stderr.read().decode(errors="replace").strip().splitlines()[-1:],
            "named_files_held_at_kill": len(named), "files_left": len(left), "bytes_left": sum(left.values()),
            "processes_left": len(alive),
            "shmem_mb": {"before": before_kb // 1024, "at_kill": peak_kb // 1024, "after": shmem_kb() // 1024},
            "report_written": (model.parent / f"{name}.json").exists(), "killed_after_s": round(t_kill - start, 1),
            "caller_mapped_mb_at_kill": round(held / 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--at", type=float, default=0.2)
    parser.add_argument("--when", choices=("sent", "outputs"), default="sent")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "xvalidate-kill-bench"))
    opts = parser.parse_args()
    work = Path(opts.dir)
    work.mkdir(exist_ok=True)
    model = work / "resnet50.h5"
    env = dict(os.environ, XVALIDATE_CACHE_DIR=str(work / "cache"))
    if not model.exists():
        from xvalidate.worker import get_worker, shutdown_workers
        get_worker("keras").call("xvalidate.models.keras_zoo:save", "ResNet50", str(model))
        shutdown_workers()
    # a first full run converts and caches; the kills then hit the comparison itself
    warm = subprocess.run(XVALIDATE + ["validate", str(model), "--src", "keras", "--dst", "onnx", "--via", "onnx",
                                       "--batch", "1"], env=env, capture_output=True, text=True)
    print("warm-up run exit", warm.returncode, warm.stderr.strip().splitlines()[-1:])
    results = [scenario(name, model, opts.batch, opts.at, opts.when, env)
               for name in ("kill -9 caller", "kill -9 worker", "SIGINT")]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
