"""Untrusted model files never run code without consent: Keras Lambda layers refused unless
trust_model=True / --trust-model; user .npy inputs read without pickle; MMdnn's pickle only
from the tool's own, hash-checked conversion directory."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import xvalidate
from xvalidate.errors import InputFileError, UntrustedModelError
from xvalidate.worker import get_worker

MARKER_ENV = "XVALIDATE_TEST_MARKER"


# ---------------------------------------------------------------- run in the keras worker
def save_lambda_model(path: str, marker: str) -> str:
    """A small model whose Lambda layer creates `marker` when its code runs (at load, or at a run)."""
    from tensorflow import keras

    def touch_and_double(t, marker=marker):
        open(marker, "a").close()
        return t * 2.0

    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    out = keras.layers.Lambda(touch_and_double, name="double")(hidden)
    keras.Model(inputs, out).save(path, **({"save_format": "keras_v3"} if path.endswith(".keras") else {}))
    os.unlink(marker)  # building it ran the code once, here
    return path


def save_plain_model(path: str) -> str:
    from tensorflow import keras

    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs)).save(path)
    return path


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("lambda")
    keras = get_worker("keras")
    return {ext: keras.call("test_security:save_lambda_model", str(d / f"lam{ext}"), str(d / f"ran{ext}"))
            for ext in (".h5", ".keras")} | {"dir": d}


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_a_lambda_model_is_refused_without_trust_and_its_code_never_runs(lambda_models, ext):
    marker = lambda_models["dir"] / f"ran{ext}"
    x = np.ones((2, 4), np.float32)
    with pytest.raises(UntrustedModelError, match=r"layer double \(Lambda\) holds Python code .* "
                                                  r"pass trust_model=True \(CLI: --trust-model\)$"):
        xvalidate.run("keras", lambda_models[ext], x)
    assert not marker.exists()
    out = xvalidate.run("keras", lambda_models[ext], x, trust_model=True)
    np.testing.assert_allclose(out["double"], 2 * out["dense"], rtol=1e-6)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UntrustedModelError):  # trust is per call, not remembered
        xvalidate.run("keras", lambda_models[ext], x)


def test_compare_refuses_then_runs_with_trust(lambda_models):
    path = lambda_models[".h5"]
    with pytest.raises(UntrustedModelError):
        xvalidate.compare(path, path, src="keras", dst="keras", batch=2)
    report = xvalidate.compare(path, path, src="keras", dst="keras", batch=2, trust_model=True)
    assert report.passed and {row.src for row in report.layers} >= {"dense", "double"}


def test_cli_refuses_in_one_line_and_runs_with_the_flag(lambda_models, tmp_path):
    path = lambda_models[".h5"]
    cmd = [sys.executable, "-m", "xvalidate.cli", "capture", path, "--adapter", "keras"]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--trust-model" in refused.stderr
    allowed = subprocess.run(cmd + ["--trust-model"], capture_output=True, text=True, timeout=300)
    assert allowed.returncode == 0, allowed.stderr
    assert "2 layer outputs" in allowed.stdout


def test_a_plain_model_needs_no_trust(tmp_path):
    path = get_worker("keras").call("test_security:save_plain_model", str(tmp_path / "plain.h5"))
    out = xvalidate.run("keras", path, np.ones((1, 4), np.float32))
    assert list(out) == ["dense"]


# ---------------------------------------------------------------- pickles
def test_a_pickled_npy_input_is_refused(tmp_path):
    from xvalidate.inputs import load_inputs

    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputFileError, match=r"evil\.npy: not a readable \.npy array"):
        load_inputs(str(path), (None, 4), "NC")


def test_mmdnn_weights_are_read_only_with_their_digest(tmp_path):
    from xvalidate.routes.mmdnn_steps import _check_digest

    weights = tmp_path / "ir.npy"
    np.save(weights, np.array([{"w": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputFileError, match="it is a pickle, so only files this tool wrote are read"):
        _check_digest(str(weights))
    (tmp_path / "ir.npy.sha256").write_text("0" * 64)  # a digest that does not match
    with pytest.raises(InputFileError, match="no matching ir.npy.sha256"):
        _check_digest(str(weights))


def test_cache_entries_are_private(tmp_path, monkeypatch):
    from xvalidate.cache import private_dir

    root = private_dir(tmp_path / "cache")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
