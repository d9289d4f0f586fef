"""Run a command and watch the memory of its whole process tree (shared by the benchmarks)."""
from __future__ import annotations

import subprocess
import threading
import time


def run_watched(cmd: list[str], merge_stderr: bool = False) -> tuple[int, float, int, str]:
    """(exit code, wall seconds, peak RSS in bytes of the command and its children, stdout) of `cmd`."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.DEVNULL)
    parent, peak, done = psutil.Process(proc.pid), 0, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                procs = [parent] + parent.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    return proc.returncode, time.perf_counter() - t0, peak, out
