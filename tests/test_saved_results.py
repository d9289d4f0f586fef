"""Saved results (.xvr): `capture --save`, then `compare` with a saved file on either side, through
click's runner on the numpy toy adapter; the format read back member by member; bad files."""
import json
import zipfile

import numpy as np
import pytest

from xvalidate.errors import XValidateError
from xvalidate.saved import FORMAT, VERSION, SavedResult
from xvalidate.saved.writer import ResultWriter

from test_cli_exit_codes import invoke, one_line_error


def save(model, path, *args):
    result = invoke("capture", model, "--adapter", "toy", "--save", path, *args)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def saved(toy_plugin, tmp_path):
    """run-a.xvr: 5 samples of the toy model in chunks of 2 (60 bytes of activations a sample)."""
    return save(toy_plugin, tmp_path / "run-a.xvr", "--batch", 5, "--memory-budget", 130)


def scaled(toy_plugin, tmp_path, factor):
    """A copy of the toy model whose last layer's weights are multiplied by `factor`."""
    weights = dict(np.load(toy_plugin))
    weights["w1"] = weights["w1"] * factor
    path = tmp_path / f"toy-x{factor}.npz"
    np.savez(path, **weights)
    return path


def test_capture_save_writes_the_documented_format(saved, toy_plugin):
    with zipfile.ZipFile(saved) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    assert manifest["format"] == FORMAT and manifest["version"] == VERSION
    assert manifest["adapter"] == "toy" and manifest["samples"] == 5
    assert manifest["chunks"] == [[0, 2], [2, 4], [4, 5]]
    assert [layer["name"] for layer in manifest["layers"]] == ["dense0", "relu0", "dense1"]
    assert manifest["layers"][2]["inputs"] == ["relu0"]
    assert manifest["tensors"]["dense1"]["shape"] == [3] and manifest["tensors"]["dense1"]["dtype"] == "float32"
    assert manifest["inputs"][0]["info"]["layout"] == "NC" and manifest["inputs"][0]["shape"] == [5, 4]
    assert manifest["environment"]["python"].startswith("3.") and "hostname" in manifest["environment"]
    assert "numpy" in manifest["versions"] and "toy-adapter" not in manifest["versions"]
    assert manifest["parameters"] == {}  # the toy adapter gives no kernels (tests/test_saved_parameters.py)
    # an .npz too: numpy opens it, and its arrays are the model's outputs on its input
    with np.load(saved) as data:
        x = data["input000"]
        w = dict(np.load(toy_plugin))
        first = np.concatenate([data[m.removesuffix(".npy")] for m in manifest["tensors"]["dense1"]["members"]])
    np.testing.assert_allclose(first, np.maximum(x @ w["w0"], 0) @ w["w1"], rtol=1e-6)


def test_rows_are_read_across_chunk_boundaries(saved):
    with SavedResult(saved) as result:
        whole = result.rows("dense0", 0, 5)
        assert whole.shape == (5, 6)
        for start, stop in ((0, 1), (1, 3), (1, 5), (3, 4), (4, 5)):
            np.testing.assert_array_equal(result.rows("dense0", start, stop), whole[start:stop])
        assert list(result.read(1, 3, ["dense1"])) == ["dense1"]
        with pytest.raises(XValidateError, match="no saved tensor 'nope'"):
            result.read(0, 1, ["nope"])


def test_a_saved_side_replays_only_its_own_input_in_order(saved):
    with SavedResult(saved) as result:
        x = result.inputs()["x"]
        np.testing.assert_array_equal(result.run(None, x[:2])["relu0"], result.rows("relu0", 0, 2))
        assert result.run(None, x[2:])["dense1"].shape == (3, 3)  # samples 2..4; the next call starts at 0 again
        with pytest.raises(XValidateError, match="samples other than those saved with it"):
            result.run(None, x[1:3])
        with pytest.raises(XValidateError, match="samples other than those saved with it"):
            result.run(None, x[:2] + 1)
        with pytest.raises(XValidateError, match="cannot run layers on other values"):
            result.run(None, x[:2], feeds={"relu0": x[:2]})


def test_saved_against_the_live_model_passes_without_src(saved, toy_plugin):
    result = invoke("compare", saved, toy_plugin, "--dst", "toy", "--json", saved.parent / "r.json")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS: toy -> toy")
    assert f"src saved: {saved} (toy, 5 samples, captured " in result.output
    report = json.loads((saved.parent / "r.json").read_text())
    assert report["meta"]["saved"]["src"]["adapter"] == "toy"
    assert report["inputs"]["source"] == f"saved in {saved}"
    assert {row["src"] for row in report["layers"]} == {"dense0", "relu0", "dense1"}


def test_live_source_against_a_saved_destination(saved, toy_plugin):
    result = invoke("compare", toy_plugin, saved, "--src", "toy", "--memory-budget", 200)
    assert result.exit_code == 0, result.output


def test_saved_against_a_planted_fault_fails_at_that_layer(saved, toy_plugin, tmp_path):
    result = invoke("compare", saved, scaled(toy_plugin, tmp_path, 1.5), "--dst", "toy", "--json", tmp_path / "r.json")
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["first_divergence"] == "dense1"
    assert {row["src"]: row["passed"] for row in report["layers"]} == {"dense0": True, "relu0": True, "dense1": False}


def test_two_saved_results_chunked_differently(saved, toy_plugin, tmp_path):
    other = save(toy_plugin, tmp_path / "run-b.xvr", "--batch", 5, "--memory-budget", 190)  # chunks of 3
    assert invoke("compare", saved, other).exit_code == 0
    faulty = save(scaled(toy_plugin, tmp_path, 0.5), tmp_path / "run-c.xvr", "--batch", 5)
    assert invoke("compare", saved, faulty).exit_code == 1


def test_two_saved_results_of_different_inputs(saved, toy_plugin, tmp_path):
    other = save(toy_plugin, tmp_path / "run-b.xvr", "--batch", 5, "--seed", 1)
    one_line_error(invoke("compare", saved, other), f"{other}: its input 'x' is not the one saved in {saved}")
    fewer = save(toy_plugin, tmp_path / "run-c.xvr", "--batch", 4)
    one_line_error(invoke("compare", saved, fewer), "(shape (5, 4), saved (4, 4))")


def test_a_given_input_must_be_the_saved_one(saved, toy_plugin, tmp_path):
    with SavedResult(saved) as result:
        same = result.inputs()["x"]
    np.save(tmp_path / "same.npy", same)
    assert invoke("compare", saved, toy_plugin, "--dst", "toy", "--input", tmp_path / "same.npy").exit_code == 0
    np.save(tmp_path / "other.npy", same + 1)
    one_line_error(invoke("compare", saved, toy_plugin, "--dst", "toy", "--input", tmp_path / "other.npy"),
                   f"input 'x' differs from the one saved in {saved}")


def test_options_a_saved_side_does_not_take(saved, toy_plugin):
    one_line_error(invoke("compare", saved, toy_plugin, "--src", "keras", "--dst", "toy"),
                   f"--src keras: {saved} was captured with adapter toy; a saved side needs no --src")
    assert invoke("compare", saved, toy_plugin, "--src", "toy", "--dst", "toy").exit_code == 0
    one_line_error(invoke("compare", saved, toy_plugin, "--dst", "toy", "--batch", 3),
                   f"--batch: {saved} is a saved result, compared on the input saved with it; omit --batch")
    one_line_error(invoke("compare", toy_plugin, saved, "--src", "toy", "--seed", 3),
                   f"--seed: {saved} is a saved result, compared on the input saved with it; omit --seed")
    one_line_error(invoke("compare", toy_plugin, saved, "--src", "toy", "--dst", "keras"),
                   f"--dst keras: {saved} was captured with adapter toy; a saved side needs no --dst")
    one_line_error(invoke("compare", toy_plugin, saved, "--src", "toy", "--isolate"),
                   f"isolate: {saved} is a saved result")
    one_line_error(invoke("capture", toy_plugin, "--adapter", "toy", "--save", saved.parent / "x.xvr", "--out", "o.npz"),
                   "error: --out and --save: give one (--save writes the outputs, and more, chunk by chunk)")


def test_capture_save_passes_every_option_on(toy_plugin, tmp_path, monkeypatch):
    """`capture --save` hands the model, the file (with .xvr added when missing), the layers, the input
    and the limits to save_capture, shows its progress, and prints its summary."""
    calls = []

    def save_capture(model, path, adapter, inputs, **kw):
        calls.append(dict(model=model, path=path, adapter=adapter, inputs=inputs, **kw))
        return {"tensors": 2, "samples": 3, "bytes": 2_500_000, "chunks": 2, "seconds": {"total": 1.25},
                "path": path}

    monkeypatch.setattr("xvalidate.saved.capture.save_capture", save_capture)
    result = invoke("capture", toy_plugin, "--adapter", "toy", "--save", tmp_path / "run", "--layers", "dense0,,relu0",
                    "--input", tmp_path / "x.npy", "--batch", 3, "--seed", 4, "--memory-budget", 1e6, "--trust-model")
    assert result.exit_code == 0, result.output
    (call,) = calls
    progress = call.pop("progress")
    assert hasattr(progress, "__call__") or hasattr(progress, "update")
    assert call == {"model": str(toy_plugin), "path": str(tmp_path / "run") + ".xvr", "adapter": "toy",
                    "inputs": str(tmp_path / "x.npy"), "layers": ["dense0", "relu0"], "batch": 3, "seed": 4,
                    "memory_budget": 1e6, "trust_model": True}
    assert result.output.splitlines() == ["2 layer outputs of 3 samples, 2.5 MB in 2 chunk(s), 1.2 s",
                                          f"saved to {tmp_path / 'run'}.xvr"]
    assert invoke("capture", toy_plugin, "--adapter", "toy", "--save", tmp_path / "b.XVR").exit_code == 0
    assert calls[-1]["path"] == str(tmp_path / "b.XVR") and calls[-1]["layers"] is None
    assert calls[-1]["inputs"] is None and calls[-1]["trust_model"] is False


def test_bad_saved_files(saved, toy_plugin, tmp_path):
    cases = {"not a zip": (b"hello, not a zip", "not an xvalidate saved result (not a readable zip archive"),
             "truncated": (saved.read_bytes()[:-300], "not an xvalidate saved result"),
             "no manifest": (None, "not an xvalidate saved result (no manifest.json in it)")}
    for name, (data, message) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '-')}.xvr"
        if data is None:
            with zipfile.ZipFile(bad, "w") as archive:
                archive.writestr("x.npy", b"")
        else:
            bad.write_bytes(data)
        one_line_error(invoke("compare", bad, toy_plugin, "--dst", "toy"), f"{bad}: {message}")
    damaged = tmp_path / "damaged.xvr"  # an array member cut short, the archive otherwise intact
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:-8] if info.filename == "l00002_c00001.npy" else data)
    one_line_error(invoke("compare", damaged, toy_plugin, "--dst", "toy"),
                   f"{damaged}: member l00002_c00001.npy is truncated or damaged")
    newer = tmp_path / "newer.xvr"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(newer, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                data = json.dumps({**json.loads(data), "version": VERSION + 1}).encode()
            dst.writestr(info, data)
    one_line_error(invoke("compare", newer, toy_plugin, "--dst", "toy"), f"format version {VERSION + 1}")
    for broken, message in (({"chunks": [[0, 2], [3, 5]]}, "do not cover its 5 samples"),
                            ({"layers": [{"name": "dense0"}]}, "TypeError"), ({"tensors": {"dense0": {}}}, "KeyError")):
        malformed = tmp_path / "malformed.xvr"
        with zipfile.ZipFile(saved) as src, zipfile.ZipFile(malformed, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "manifest.json":
                    data = json.dumps({**json.loads(data), **broken}).encode()
                dst.writestr(info, data)
        one_line_error(invoke("compare", malformed, toy_plugin, "--dst", "toy"),
                       f"{malformed}: manifest.json is malformed (")
        assert message in invoke("compare", malformed, toy_plugin, "--dst", "toy").output
    one_line_error(invoke("compare", tmp_path / "missing.xvr", toy_plugin, "--dst", "toy"), "no such saved result")


def test_a_failed_save_leaves_nothing_and_keeps_the_old_file(saved, toy_plugin, tmp_path):
    before = saved.read_bytes()
    with pytest.raises(RuntimeError):
        with ResultWriter(saved) as writer:
            writer.add_chunk({"a": np.zeros((2, 3), np.float32)})
            raise RuntimeError("interrupted")
    assert saved.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    one_line_error(invoke("capture", toy_plugin, "--adapter", "toy", "--save", tmp_path / "no" / "dir.xvr"),
                   "does not exist")


# ---------------------------------------------------------------- real frameworks: the seed-2 CNN, NHWC vs NCHW
@pytest.fixture(scope="module")
def seed2_saved(tmp_path_factory):
    """The seed-2 Keras CNN saved (3 samples, chunks of 1), its right Gluon port and its padding-0 port."""
    from xvalidate.worker import get_worker

    d = tmp_path_factory.mktemp("seed2-saved")
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(d / "seed2.h5"))
    ports = {kind: get_worker("mxnet").call("xvalidate.models.gluon_ports:save_port", kind, h5, str(d / kind))
             for kind in ("right", "pad0")}
    result = invoke("capture", h5, "--adapter", "keras", "--save", d / "keras.xvr", "--batch", 3,
                    "--memory-budget", 4e6)
    assert result.exit_code == 0 and "in 3 chunk(s)" in result.output, result.output
    return d / "keras.xvr", ports


def test_saved_keras_against_a_live_gluon_port(seed2_saved):
    import xvalidate

    saved_keras, ports = seed2_saved
    report = xvalidate.compare(saved_keras, ports["right"], dst="mxnet")
    assert report.passed, report.summary()
    assert report.src == "keras" and report.unmatched["src"] == []
    assert [r.src for r in report.layers] == ["block1_conv1", "max_pooling2d", "block2_conv1", "max_pooling2d_1",
                                              "flatten", "final_fully_connected"]
    assert report.layers[0].transform == "NCHW->NHWC" and report.layers[4].transform == "flatten:NCHW->NHWC"
    assert report.meta["saved"]["src"]["versions"]["tensorflow-cpu"]
    bad = xvalidate.compare(saved_keras, ports["pad0"], dst="mxnet")
    first = bad.first_divergence
    assert not bad and first.src == "block1_conv1"
    assert first.cause.startswith("padding") and "78x118" in first.cause and "80x120" in first.cause
    isolated = xvalidate.compare(saved_keras, ports["pad0"], dst="mxnet", isolate=True)  # a saved source feeds the live side
    assert not isolated and isolated.roots[0].src == "block1_conv1" and isolated.layers[0].isolated_passed is False


def test_saved_keras_against_a_saved_gluon_port_of_the_same_input(seed2_saved, tmp_path):
    saved_keras, ports = seed2_saved
    with SavedResult(saved_keras) as result:
        x = next(iter(result.inputs().values()))
    np.save(tmp_path / "nchw.npy", x.transpose(0, 3, 1, 2))
    saved_port = tmp_path / "port.xvr"
    assert invoke("capture", ports["right"], "--adapter", "mxnet", "--input", tmp_path / "nchw.npy",
                  "--save", saved_port).exit_code == 0
    result = invoke("compare", saved_keras, saved_port, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["src"] == "keras" and report["dst"] == "mxnet" and len(report["layers"]) == 6
    np.save(tmp_path / "other.npy", x.transpose(0, 3, 1, 2)[::-1])
    other = tmp_path / "other.xvr"
    assert invoke("capture", ports["right"], "--adapter", "mxnet", "--input", tmp_path / "other.npy",
                  "--save", other).exit_code == 0
    one_line_error(invoke("compare", saved_keras, other), "is not the one saved in")
