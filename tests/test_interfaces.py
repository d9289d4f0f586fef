"""Framework knowledge sits in the adapters and routes: the files of a model, the packages whose
versions reports record, the route options the CLI offers; core/, api, cache and cli name no framework."""
import ast
import re
from pathlib import Path

import numpy as np

from xvalidate import cache
from xvalidate.registry import get_adapter

ROOT = Path(__file__).resolve().parents[1]


def test_an_mxnet_model_is_its_symbol_and_params_for_the_cache(tmp_path):
    symbol = tmp_path / "net-symbol.json"
    symbol.write_text("{}")
    params = tmp_path / "net-0000.params"
    params.write_bytes(b"a")
    assert get_adapter("mxnet").model_files(str(symbol)) == [str(symbol), str(params)]
    before = cache._file_digest(symbol, "mxnet")
    params.write_bytes(b"b")
    assert cache._file_digest(symbol, "mxnet") != before
    assert cache._file_digest(symbol, "keras") == cache._file_digest(symbol, "keras")  # one file for keras


def test_report_versions_are_the_declared_packages():
    from xvalidate.api import _versions

    keras_mxnet = _versions("keras", "mxnet")
    assert {"xvalidate", "numpy", "tensorflow-cpu", "mxnet"} <= set(keras_mxnet)
    assert "onnxruntime" not in keras_mxnet and "mmdnn" not in keras_mxnet
    assert {"tf2onnx", "onnxruntime"} <= set(_versions("keras", "onnx", route="onnx"))


def _framework_words(path: Path) -> list[str]:
    """Identifiers, imported modules and string constants (docstrings excepted) naming a framework."""
    pattern = re.compile(r"\b(keras|mxnet|onnx|tensorflow|gluon|torch|tflite|mmdnn|tf2onnx)\b", re.I)
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            words += [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
    return [w for w in words if pattern.search(w.replace("_", " "))]


def test_the_framework_neutral_modules_name_no_framework():
    modules = ["xvalidate/cache.py", "xvalidate/console.py", "xvalidate/report/__init__.py"]
    modules += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "xvalidate/core").glob("*.py"))]
    assert {name: _framework_words(ROOT / name) for name in modules} == {name: [] for name in modules}


def test_route_options_come_from_the_routes_and_route_option_is_typed(tmp_path):
    from click.testing import CliRunner

    from xvalidate.cli import main

    model = tmp_path / "m.h5"
    model.write_bytes(b"x")
    runner = CliRunner()
    out = runner.invoke(main, ["validate", str(model), "--via", "onnx", "--route-option", "opset"])
    assert out.exit_code == 2 and "--route-option: expected KEY=VALUE, got 'opset'" in out.output
    out = runner.invoke(main, ["validate", str(model), "--via", "onnx", "--route-option", "opset=eleven"])
    assert out.exit_code == 2 and "route option opset: expected a value of type int, got 'eleven'" in out.output
    out = runner.invoke(main, ["validate", str(model), "--via", "onnx", "--input-shape", "1,3,a"])
    assert out.exit_code == 2 and "route option input_shape: expected integers like 1,3,224,224" in out.output
    assert "Traceback" not in out.output


def test_adapters_lists_the_reachable_triples():
    from click.testing import CliRunner

    from xvalidate.cli import main

    out = CliRunner().invoke(main, ["adapters"])
    assert out.exit_code == 0
    assert "keras -> mxnet via mmdnn" in out.output and "mxnet -> onnx via onnx" in out.output
