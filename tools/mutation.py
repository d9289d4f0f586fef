"""`make mutation`: mutmut 3 over the core, cache, worker, report and CLI, against the fast tests.

It runs in a scratch copy of the work tree (MUTATION_DIR, default /tmp/xvalidate-mutation), so
the tree itself gets no `mutants/` folder and edits made meanwhile do not disturb the run; every
run starts from fresh mutants. Prints the kill rate per module and writes the surviving mutants'
diffs to survivors.txt there (`mutmut show NAME` in that folder).

    python tools/mutation.py                       every module
    python tools/mutation.py "xvalidate.core.metrics*" "xvalidate.cli*"   some mutants only
    MUTATION_JOBS=2 python tools/mutation.py       more processes (default 1)
    MUTATION_TESTS="test_metrics*.py,test_cli.py" python tools/mutation.py   other tests (globs in tests/)
    MUTATION_FROM=HEAD python tools/mutation.py    the files of a commit instead of the work tree (others'
                                                   half-done edits left out)

Mutants of xvalidate/core and xvalidate/report run against IN_PROCESS_TESTS only (numpy in the
pytest process, no worker process): a test that starts a worker costs seconds per mutant on a busy
machine. With no mutant globs, those two and the rest (cli, cache, worker, against FAST_TESTS) run
as parts, in MUTATION_DIR/core, MUTATION_DIR/report and MUTATION_DIR/rest. scores.txt beside
survivors.txt holds the table.

The selected tests must pass on the unmutated code first (mutmut stops otherwise).
"""
from __future__ import annotations

import ast
import collections
import difflib
import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MODULES = ["xvalidate/core/*", "xvalidate/cache.py", "xvalidate/worker.py", "xvalidate/report/*", "xvalidate/cli.py"]
# tests that load no framework (numpy, the toy adapter and toy routes only): seconds, not minutes
FAST_TESTS = ["test_metrics*.py", "test_properties_*.py", "test_layout.py", "test_tolerances.py", "test_align*.py",
              "test_roots*.py", "test_diff*.py", "test_pairing*.py", "test_diagnose*.py", "test_causes*.py",
              "test_report_*.py", "test_cli.py", "test_cli_exit_codes.py", "test_cli_options.py", "test_cache*.py",
              "test_reliability_cache.py", "test_reliability_files.py", "test_worker*.py", "test_saved_*.py",
              "test_sweep.py", "test_defaults.py", "test_environments.py"]
IN_PROCESS_TESTS = ["test_metrics*.py", "test_properties_*.py", "test_layout.py", "test_tolerances.py", "test_align*.py",
              "test_roots*.py", "test_diff*.py", "test_pairing*.py", "test_diagnose*.py", "test_causes*.py",
              "test_report_*.py", "test_reliability_files.py"]
IN_PROCESS = ("xvalidate.core", "xvalidate.report")
# fast-test files' tests that run a framework model or start a Ray cluster (seconds per mutant), or start a
# worker in a worker environment (the modules shipped there are mutmut's, which import mutmut: not installed there)
DESELECT = ["tests/test_environments.py::test_bare_environment_created_once_shipped_and_broken",
            "tests/test_environments.py::test_an_adapter_in_an_environment_runs_over_shared_memory",
            "tests/test_reliability_cache.py::test_two_concurrent_validates_of_one_keras_model_both_pass",
            "tests/test_saved_results.py::test_saved_keras_against_a_live_gluon_port",
            "tests/test_saved_results.py::test_saved_keras_against_a_saved_gluon_port_of_the_same_input",
            "tests/test_saved_parameters.py::test_a_saved_keras_model_keeps_its_kernels",
            "tests/test_sweep.py::test_ray_executor_matches_local_and_leaves_nothing",
            "tests/test_sweep.py::test_ray_executor_joins_a_running_cluster_and_leaves_it_running"]
DETECTED = ("killed", "timeout", "segfault")
# click option declarations run once, at import, before mutmut picks a mutant: no test can see their mutants
SKIP_LINES = [r"^\s*click\.option\("]

REPO = Path(__file__).resolve().parent.parent


def copy_tree(scratch: Path) -> None:
    """Mirror the tracked and untracked-but-not-ignored files into `scratch`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src, dst = REPO / name, scratch / name
        if src.is_file() and not (dst.is_file() and filecmp.cmp(src, dst, shallow=False)):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def copy_commit(scratch: Path, rev: str) -> None:
    """Replace `scratch` with the files of commit `rev` (uncommitted edits left out)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)


def configure(scratch: Path, patterns: list[str]) -> None:
    """Append the [tool.mutmut] settings to the copy's pyproject.toml; mutant-name globs given,
    only the files they can name are mutated."""
    default = IN_PROCESS_TESTS if patterns and all(p.startswith(IN_PROCESS) for p in patterns) else FAST_TESTS
    globs = os.environ.get("MUTATION_TESTS", ",".join(default)).split(",")
    tests = sorted({str(p.relative_to(scratch)) for g in globs for p in (scratch / "tests").glob(g.strip())})
    text = (REPO / "pyproject.toml").read_text()
    text += ("\n[tool.mutmut]\n"
             'source_paths = ["xvalidate"]\n'
             f"only_mutate = {_toml_list([p.replace('.', '/') for p in patterns] or MODULES)}\n"
             f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
             f"do_not_mutate_patterns = {_toml_list(SKIP_LINES)}\n"
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q"'
             + "".join(f", '--deselect', '{d}'" for d in DESELECT) + "]\n")
    (scratch / "pyproject.toml").write_text(text)


def _toml_list(items) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"  # literal strings: no escapes


def scores(scratch: Path) -> dict[str, collections.Counter]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=scratch,
                         capture_output=True, text=True).stdout
    per_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            per_module[re.split(r"\.x[_\u01c1]", name)[0]][status] += 1
    return per_module


def _diff(scratch: Path, name: str, sources: dict) -> str:
    """The changed lines of mutant `name` (module.x_function__mutmut_N): its function against the original
    in mutmut's mutants/ copy (one `mutmut show` per survivor takes a second or more); `mutmut show`
    when that copy does not have them."""
    module, _, function = name.rpartition(".")  # a method's function: xǁClassǁmethod__mutmut_N
    path = scratch / "mutants" / (module.replace(".", "/") + ".py")
    if path not in sources:
        text = path.read_text() if path.is_file() else ""
        lines = text.splitlines()
        sources[path] = {n.name: "\n".join(lines[n.lineno - 1:n.end_lineno]) for n in ast.walk(ast.parse(text))
                         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    functions = sources[path]
    orig = function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
    if function not in functions or orig not in functions:
        return subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=scratch, capture_output=True,
                              text=True).stdout
    a = functions[orig].replace(orig, "_").splitlines()
    b = functions[function].replace(function, "_").splitlines()
    return "\n".join(line for line in difflib.unified_diff(a, b, lineterm="", n=0)
                     if line[:1] in "+-" and line[:3] not in ("+++", "---")) + "\n"


def _table(table: dict[str, collections.Counter]) -> str:
    lines = [f"{'module':32} {'killed':>7} {'total':>6} {'score':>7}  other"]
    for module, counts in sorted(table.items()):
        total = sum(counts.values())
        killed = sum(counts[s] for s in DETECTED)
        other = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()) if s not in DETECTED)
        lines.append(f"{module:32} {killed:7d} {total:6d} {killed / total:7.1%}  {other}")
    return "\n".join(lines) + "\n"


def main(patterns: list[str]) -> int:
    scratch = Path(os.environ.get("MUTATION_DIR", "/tmp/xvalidate-mutation"))
    if not patterns:  # the core and the report against the in-process tests, then the rest
        rest = [m.replace("/", ".").replace(".py", "") + "*" for m in MODULES
                if not m.startswith(("xvalidate/core/", "xvalidate/report/"))]
        return (run(scratch / "core", ["xvalidate.core.*"]) or run(scratch / "report", ["xvalidate.report.*"])
                or run(scratch / "rest", rest))
    return run(scratch, patterns)


def run(scratch: Path, patterns: list[str]) -> int:
    if os.environ.get("MUTATION_FROM"):
        copy_commit(scratch, os.environ["MUTATION_FROM"])
    else:
        scratch.mkdir(parents=True, exist_ok=True)
        copy_tree(scratch)
    configure(scratch, patterns)
    shutil.rmtree(scratch / "mutants", ignore_errors=True)  # mutmut may keep stale results when only tests changed
    jobs = os.environ.get("MUTATION_JOBS", "1")
    env = {"XVALIDATE_PROPERTY_EXAMPLES": "25", **os.environ}  # a mutant that matters fails within a few examples
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", jobs, *patterns], cwd=scratch, env=env)
    table = scores(scratch)
    survivors = []
    print("\n" + _table(table))
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=scratch, capture_output=True,
                             text=True).stdout
    sources: dict[Path, dict[str, str]] = {}
    for name, _, status in (line.strip().rpartition(": ") for line in listing.splitlines()):
        if name and status in ("survived", "no tests"):
            survivors.append(f"# {name} ({status})\n{_diff(scratch, name, sources)}")
    (scratch / "survivors.txt").write_text("\n".join(survivors))
    print(f"\n{len(survivors)} surviving mutants: {scratch / 'survivors.txt'}")
    (scratch / "scores.txt").write_text(_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
