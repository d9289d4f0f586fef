"""The wheel holds every package (found, not listed), and the import layering holds:
core/ imports nothing from report/, routes import no adapter module, demo does not import the CLI."""
import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_package_and_module(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "xvalidate", src / "xvalidate", ignore=ignore)
    shutil.copytree(ROOT / "adapters", src / "adapters", ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    wheel, = (tmp_path / "wheel").glob("xvalidate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"xvalidate/" + str(p.relative_to(ROOT / "xvalidate")) for p in (ROOT / "xvalidate").rglob("*.py")
                if "__pycache__" not in p.parts}
    expected |= {"xvalidate_adapters/" + str(p.relative_to(ROOT / "adapters")) for p in (ROOT / "adapters").rglob("*.py")
                 if "__pycache__" not in p.parts}
    assert {"xvalidate/models/keras_zoo.py", "xvalidate/core/causes/__init__.py", "xvalidate_adapters/keras.py"} <= names
    assert expected - names == set()
    assert not any(n.startswith(("tests/", "adapters/", "plugins/", "benchmarks/")) for n in names)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_core_imports_nothing_from_report():
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith("xvalidate.report"))
           for p in _files("xvalidate/core")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_routes_import_no_adapter_module():
    adapter_modules = {"xvalidate_adapters." + p.stem for p in _files("adapters")} - {"xvalidate_adapters.common",
                                                                                      "xvalidate_adapters.base"}
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & adapter_modules) for p in _files("xvalidate/routes")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_demo_does_not_import_the_cli():
    assert not any(m.startswith("xvalidate.cli") for m in _imports(ROOT / "xvalidate/demo.py"))
    assert "xvalidate.console" in _imports(ROOT / "xvalidate/cli.py")


def test_reports_render_without_importing_report_modules_from_core():
    from xvalidate.core.report import LayerResult, Report

    report = Report(src="a", dst="b", src_model="m", dst_model="n",
                    layers=[LayerResult(index=0, src="x", dst="x", match="name")])
    assert report.summary() and report.to_dict()["src"] == "a"
