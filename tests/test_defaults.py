"""The API's default adapters and routes live in xvalidate.defaults (a contract: validate(model) is
keras -> mxnet via mmdnn); the CLI's help lists the registered adapters and routes, plugins' included."""
import inspect

from click.testing import CliRunner

import xvalidate
from xvalidate import defaults
from xvalidate.cli import main
from xvalidate.registry import adapter_names, route_names


def test_the_defaults_are_the_contract_and_come_from_one_place():
    assert (defaults.DEFAULT_SRC, defaults.DEFAULT_DST, defaults.DEFAULT_VIA) == ("keras", "mxnet", "mmdnn")
    params = inspect.signature(xvalidate.validate).parameters
    assert (params["src"].default, params["dst"].default, params["via"].default) == ("keras", "mxnet", "mmdnn")
    assert inspect.signature(xvalidate.compare).parameters["dst"].default == "mxnet"
    assert tuple(inspect.signature(xvalidate.compare_routes).parameters["via"].default) == ("mmdnn", "onnx")


def test_help_lists_every_registered_adapter_and_route():
    text = " ".join(CliRunner().invoke(main, ["validate", "--help"]).output.split())
    assert "torch-onnx" in route_names() and "torch" in adapter_names()  # the plugins are installed
    assert f"Conversion route: {', '.join(route_names())}." in text
    assert f"Adapter of MODEL: {', '.join(adapter_names())}." in text
