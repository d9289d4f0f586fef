"""The validate, routes, demo and capture commands."""
import json

import numpy as np
from click.testing import CliRunner

from xvalidate.cli import main
from xvalidate.worker import get_worker


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_validate_command_writes_reports_and_keeps_artifacts(tmp_path):
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "s2.h5"))
    result = invoke("validate", h5, "--src", "keras", "--dst", "mxnet", "--via", "mmdnn", "--keep", tmp_path / "keep",
                    "--json", tmp_path / "r.json", "--html", tmp_path / "r.html", "--no-cache")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["via"] == "mmdnn" and data["passed"] and "convert" in data["timings"]
    assert (tmp_path / "keep" / "model-symbol.json").exists()


def test_validate_refuses_an_unsupported_layer_with_exit_2(tmp_path):
    h5 = get_worker("keras").call("test_mmdnn:save_tiny", "lambda", str(tmp_path / "l.h5"))
    result = invoke("validate", h5, "--via", "mmdnn", "--no-cache", "--trust-model")  # trusted: the route refuses it
    assert result.exit_code == 2
    assert "layer 'double' (Lambda)" in result.output and "try the ONNX route" in result.output
    assert "Traceback" not in result.output


def test_routes_command(tmp_path):
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "s2.h5"))
    result = invoke("routes", h5, "--json", tmp_path / "c.json", "--no-cache")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert [row["route"] for row in data["summary"]] == ["mmdnn", "onnx"]
    assert all(row["status"] == "pass" for row in data["summary"])


def test_demo_on_a_small_model(tmp_path):
    result = invoke("demo", "--model", "seed2_cnn", "--out", tmp_path / "demo",
                    env={"XVALIDATE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "PASS: keras -> mxnet via mmdnn" in result.output
    assert (tmp_path / "demo" / "report.html").exists() and "HTML report:" in result.output


def test_capture_command_saves_npz(tmp_path):
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "s2.h5"))
    result = invoke("capture", h5, "--adapter", "keras", "--out", tmp_path / "o.npz", "--batch", 2)
    assert result.exit_code == 0 and result.output.startswith("6 layer outputs")
    assert np.load(tmp_path / "o.npz")["final_fully_connected"].shape == (2, 2)
