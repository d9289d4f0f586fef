"""Re-run by hand the mutants a `make mutation` run did not kill, against chosen test files.

    python tools/mutation_rerun.py SCRATCH MODULE JOBS TEST...
    python tools/mutation_rerun.py /tmp/xvalidate-mutation/rest worker 2 tests/test_worker_server.py tests/test_worker.py

Each mutant of MODULE (a file name under SCRATCH/mutants, e.g. `worker` for xvalidate/worker.py) that
survived, had "no tests" or was not checked is switched on (MUTANT_UNDER_TEST) in one pytest process of
its own, -x, with a time limit of 120 s (a time-out counts as killed). PYTHONPATH points at the mutated
copy, so the processes a test starts (the worker processes) import it and run the mutant too: this
reaches code mutmut's own run cannot see. Copy test files written after the run into SCRATCH/mutants/tests
first. Results go to SCRATCH/rerun-MODULE.json, which a later call resumes from.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

NOT_KILLED = (0, 33, None)  # mutmut's exit codes: survived, no tests, not checked
LIMIT = 120


def reap_orphans() -> None:
    """Kill worker processes whose parent is gone: a mutant that breaks the parent-death checks leaves
    them spinning."""
    import psutil

    for proc in psutil.process_iter(["cmdline", "ppid"]):
        if proc.info["ppid"] == 1 and "xvalidate.worker" in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def run_one(scratch: Path, name: str, tests: list[str]) -> str:
    env = dict(os.environ, MUTANT_UNDER_TEST=name, XVALIDATE_PROPERTY_EXAMPLES="25",
               PYTHONPATH=str(scratch / "mutants"))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                               *tests], cwd=scratch / "mutants", env=env, capture_output=True, timeout=LIMIT)
        return "killed" if done.returncode else "survived"
    except subprocess.TimeoutExpired:
        return "timeout"
    finally:
        reap_orphans()


def main(scratch: Path, module: str, jobs: int, tests: list[str]) -> int:
    meta = json.loads(next((scratch / "mutants").rglob(f"{module}.py.meta")).read_text())["exit_code_by_key"]
    out = scratch / f"rerun-{module}.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    todo = sorted(name for name, code in meta.items() if code in NOT_KILLED and name not in results)
    print(f"{len(todo)} mutants to re-run ({len(results)} done before)", flush=True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for i, (name, status) in enumerate(zip(todo, pool.map(lambda n: run_one(scratch, n, tests), todo))):
            results[name] = status
            out.write_text(json.dumps(results, indent=1))
            if i % 20 == 19:
                print(i + 1, dict(collections.Counter(results.values())), flush=True)
    print(dict(collections.Counter(results.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
