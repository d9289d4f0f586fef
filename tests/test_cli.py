"""The command line: exit codes 0 / 1 / 2, one-line errors, reports written."""
import json

import numpy as np
from click.testing import CliRunner

from xvalidate.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def diverging_copy(model, tmp_path):
    w = dict(np.load(model))
    w["w1"] = w["w1"] * 1.5
    other = tmp_path / "other.npz"
    np.savez(other, **w)
    return other


def test_compare_pass_writes_reports(toy_plugin, tmp_path):
    result = invoke("compare", toy_plugin, toy_plugin, "--src", "toy", "--dst", "toy", "--html", tmp_path / "r.html",
                    "--json", tmp_path / "r.json", "--batch", "4")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS: toy -> toy")
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_compare_divergence_exits_1_and_names_the_layer(toy_plugin, tmp_path):
    result = invoke("compare", toy_plugin, diverging_copy(toy_plugin, tmp_path), "--src", "toy", "--dst", "toy",
                    "--batch", 8)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "first divergence: dense1 -> dense1" in text
    assert "likely cause: per-channel scale: the destination output of matmul 'dense1'" in text
    assert "(3 of 3 channels; scale 1.5..1.5," in text


def test_bad_input_is_one_line_exit_2(toy_plugin, tmp_path):
    cases = [
        (("compare", tmp_path / "missing.npz", toy_plugin), "missing.npz: no such model file"),
        (("compare", toy_plugin, tmp_path / "m.h5"), ".h5: no such model file"),
        (("compare", toy_plugin, toy_plugin, "--src", "caffe"), "unknown adapter 'caffe'"),
        (("compare", toy_plugin, toy_plugin, "--input", tmp_path / "x.npy"), "x.npy: no such input file"),
        (("compare", toy_plugin, toy_plugin, "--layer-map", tmp_path / "map.json"), "map.json: no such layer-map file"),
    ]
    for args, message in cases:
        args = list(args)
        if "--src" not in args:
            args += ["--src", "toy"]
        args += ["--dst", "toy"]
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_wrong_input_shape_and_unknown_layer_name(toy_plugin, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 5), np.float32))
    result = invoke("compare", toy_plugin, toy_plugin, "--src", "toy", "--dst", "toy", "--input", tmp_path / "x.npy")
    assert result.exit_code == 2 and "shape (2, 5) does not fit the model's input (None, 4)" in result.output
    (tmp_path / "map.json").write_text(json.dumps({"dense0": "nope"}))
    result = invoke("compare", toy_plugin, toy_plugin, "--src", "toy", "--dst", "toy", "--layer-map", tmp_path / "map.json")
    assert result.exit_code == 2 and "destination layer 'nope'" in result.output


def test_debug_shows_the_traceback(toy_plugin, tmp_path):
    result = invoke("--debug", "compare", tmp_path / "missing.npz", toy_plugin, "--src", "toy", "--dst", "toy")
    assert result.exit_code == 2 and "Traceback" in result.output


def test_the_user_input_file_is_not_modified(toy_plugin, tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    before = (tmp_path / "x.npy").read_bytes()
    assert invoke("compare", toy_plugin, toy_plugin, "--src", "toy", "--dst", "toy", "--input", tmp_path / "x.npy").exit_code == 0
    assert (tmp_path / "x.npy").read_bytes() == before


def test_empty_batch_and_bad_batch_size(toy_plugin, tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.float32))
    result = invoke("compare", toy_plugin, toy_plugin, "--src", "toy", "--dst", "toy", "--input", tmp_path / "empty.npy")
    assert result.exit_code == 2 and "the batch is empty" in result.output
    result = invoke("compare", toy_plugin, toy_plugin, "--src", "toy", "--dst", "toy", "--batch", 0)
    assert result.exit_code == 2 and "batch: expected a positive number of samples, got 0" in result.output


def test_layers_command_lists_the_model(toy_plugin):
    result = invoke("layers", toy_plugin, "--adapter", "toy")
    assert result.exit_code == 0
    assert [name in result.output for name in ("dense0", "relu0", "dense1")] == [True] * 3
    assert "matmul" in result.output and "(None, 6)" in result.output
    missing = invoke("layers", "nope.npz", "--adapter", "toy")
    assert missing.exit_code == 2 and "nope.npz: no such model file" in missing.output


def test_progress_on_a_terminal_and_silence_elsewhere(monkeypatch):
    import io

    from rich.console import Console

    from xvalidate import cli, console

    out = io.StringIO()
    monkeypatch.setattr(console, "stderr_console", lambda: Console(file=out, force_terminal=True, width=120))
    with cli._Progress(True) as progress:
        progress("convert", 0, 1)
        progress("convert", 1, 1)
        progress("run", 2, 3)
        progress("custom stage", 1, 4)
    text = out.getvalue()
    assert "converting" in text and "1/1" in text and "running both models" in text and "2/3" in text
    assert "custom stage" in text and "1/4" in text
    out.truncate(0)
    with cli._Progress(False) as silent:
        silent("convert", 1, 1)
    assert out.getvalue() == ""


def test_tables_are_150_columns_when_piped():
    from xvalidate.cli import stdout_console

    assert stdout_console().width == 150  # pytest captures stdout: not a terminal
