"""Exit codes 0 / 1 / 2 of every command, through click's runner, on the numpy toy adapter and
toy routes registered as a third-party plugin (no framework is loaded)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import add_plugin
from xvalidate.cli import main

TOY_ROUTES = '''
from pathlib import Path

import numpy as np
from xvalidate.routes.base import Conversion, Route


class ToyRoute(Route):
    """Converts a toy model to a toy model: a copy, its last weights scaled by `scale`."""
    pairs = (("toy", "toy"),)
    scale = 1.0

    def convert(self, source, src, dst, out_dir, **options):
        weights = dict(np.load(source))
        weights["w1"] = weights["w1"] * self.scale
        target = Path(out_dir) / "converted.npz"
        np.savez(target, **weights)
        return Conversion(str(target), artifacts={"model": str(target)}, seconds={"copy": 0.0})


class CopyRoute(ToyRoute):
    name = "toycopy"


class ScaleRoute(ToyRoute):
    name, scale = "toyscale", 1.5


class BrokenRoute(ToyRoute):
    name = "toybroken"

    def convert(self, source, src, dst, out_dir, **options):
        raise RuntimeError("the converter crashed")
'''


@pytest.fixture
def toy(toy_plugin):
    """The toy model, with routes toycopy (agrees), toyscale (diverges) and toybroken (a bug) registered."""
    add_plugin(toy_plugin.parent / "site", "toy_routes", TOY_ROUTES, "xvalidate.routes",
               {"toycopy": "toy_routes:CopyRoute", "toyscale": "toy_routes:ScaleRoute",
                "toybroken": "toy_routes:BrokenRoute"})
    return toy_plugin


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, message):
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def validate(model, via, *args):
    return invoke("validate", model, "--src", "toy", "--dst", "toy", "--via", via, "--batch", 4, *args)


def test_validate_exit_codes(toy, tmp_path):
    passed = validate(toy, "toycopy", "--json", tmp_path / "r.json")
    assert passed.exit_code == 0, passed.output
    assert passed.output.startswith("PASS: toy -> toy via toycopy")
    assert json.loads((tmp_path / "r.json").read_text())["via"] == "toycopy"
    assert "worst 3 of 3 layers (--all for every one)" in passed.output
    assert "all layers" in validate(toy, "toycopy", "--all").output
    diverged = validate(toy, "toyscale")
    assert diverged.exit_code == 1, diverged.output
    assert diverged.output.startswith("FAIL: toy -> toy via toyscale")
    assert "first divergence: dense1 -> dense1" in " ".join(diverged.output.split())
    one_line_error(validate(tmp_path / "none.npz", "toycopy"), "none.npz: no such model file")
    one_line_error(validate(toy, "nowhere"), "unknown route 'nowhere'")
    one_line_error(invoke("validate", toy, "--src", "toy", "--dst", "keras", "--via", "toycopy"),
                   "via='toycopy' cannot convert toy to keras")


def test_unexpected_exception_is_one_line_exit_2(toy):
    result = validate(toy, "toybroken", "--no-cache")
    one_line_error(result, "error: RuntimeError: the converter crashed (run with --debug for the traceback)")
    debug = invoke("--debug", "validate", toy, "--src", "toy", "--dst", "toy", "--via", "toybroken")
    assert debug.exit_code == 2 and "Traceback" in debug.output and "the converter crashed" in debug.output


def test_tolerances_file(toy, tmp_path):
    (tmp_path / "loose.json").write_text(json.dumps({"dense1": 1e9}))
    loose = validate(toy, "toyscale", "--tolerances", tmp_path / "loose.json")
    assert loose.exit_code == 0, loose.output  # the per-layer override lets the scaled layer pass
    one_line_error(validate(toy, "toycopy", "--tolerances", tmp_path / "missing.json"),
                   "--tolerances " + str(tmp_path / "missing.json") + ": cannot read")
    (tmp_path / "bad.json").write_text("{oops")
    one_line_error(validate(toy, "toycopy", "--tolerances", tmp_path / "bad.json"), "not valid JSON")
    (tmp_path / "list.json").write_text("[1, 2]")
    one_line_error(validate(toy, "toycopy", "--tolerances", tmp_path / "list.json"), "expected a JSON object")
    (tmp_path / "neg.json").write_text(json.dumps({"dense1": -1}))
    one_line_error(invoke("compare", toy, toy, "--src", "toy", "--dst", "toy", "--tolerances", tmp_path / "neg.json"),
                   "expected a non-negative number")


def test_routes_exit_codes(toy, tmp_path):
    passed = invoke("routes", toy, "--src", "toy", "--dst", "toy", "--via", "toycopy", "--json", tmp_path / "c.json")
    assert passed.exit_code == 0, passed.output
    assert [row["status"] for row in json.loads((tmp_path / "c.json").read_text())["summary"]] == ["pass"]
    mixed = invoke("routes", toy, "--src", "toy", "--dst", "toy", "--via", "toycopy,toyscale", "--batch", 4)
    assert mixed.exit_code == 1, mixed.output
    failed_route = invoke("routes", toy, "--src", "toy", "--dst", "toy", "--via", "toycopy,nowhere",
                          "--json", tmp_path / "f.json")
    assert failed_route.exit_code == 1, failed_route.output  # a route that cannot run is recorded, not raised
    assert json.loads((tmp_path / "f.json").read_text())["errors"]["nowhere"].startswith("unknown route 'nowhere'")
    one_line_error(invoke("routes", tmp_path / "none.npz", "--src", "toy", "--dst", "toy", "--via", "toycopy"),
                   "none.npz: no such model file")
    one_line_error(invoke("routes", toy, "--src", "toy", "--dst", "toy", "--via", "toybroken"),
                   "RuntimeError: the converter crashed")


def test_compare_tolerance_options(toy):
    assert invoke("compare", toy, toy, "--src", "toy", "--dst", "toy", "--atol", 0, "--rtol", 0).exit_code == 0
    one_line_error(invoke("compare", toy, toy, "--src", "toy", "--dst", "toy", "--atol", -1), "atol")


def test_capture_exit_codes(toy, tmp_path):
    saved = invoke("capture", toy, "--adapter", "toy", "--batch", 3, "--layers", "relu0,dense1", "--out", tmp_path / "o.npz")
    assert saved.exit_code == 0, saved.output
    assert saved.output.startswith("2 layer outputs") and "input (3, 4)" in saved.output
    with np.load(tmp_path / "o.npz") as outputs:
        assert sorted(outputs) == ["dense1", "relu0"] and outputs["dense1"].shape == (3, 3)
        assert (outputs["relu0"] >= 0).all()
    one_line_error(invoke("capture", toy, "--adapter", "toy", "--layers", "nope"), "no layer 'nope'")
    one_line_error(invoke("capture", tmp_path / "none.npz", "--adapter", "toy"), "none.npz: no such model file")
    one_line_error(invoke("capture", toy, "--adapter", "caffe"), "unknown adapter 'caffe'")


def test_demo_refuses_bad_options(tmp_path):
    one_line_error(invoke("demo", "--model", "NoSuchNet", "--out", tmp_path / "d"), "--model: unknown 'NoSuchNet'")
    (tmp_path / "file").write_text("")
    one_line_error(invoke("demo", "--model", "seed2_cnn", "--out", tmp_path / "file" / "d"), "--out: cannot create")


def test_adapters_lists_plugins(toy):
    result = invoke("adapters")
    assert result.exit_code == 0
    assert "toy" in result.output.splitlines()[0] and "toyscale" in result.output.splitlines()[1]


def test_each_test_has_its_own_cache_dir(toy, isolated_cache_dir):
    assert validate(toy, "toycopy").exit_code == 0
    entries = [p for p in isolated_cache_dir.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "conversion.json").is_file()
