"""Saved results carry the models' parameters (the kernels and LSTM weights the diagnosis asks for): the
manifest lists them, the reader gives back what the live worker gives, a fault the kernel or gate-order
check names is named the same with a saved side, and files saved without parameters still compare.
On a numpy adapter registered as a plugin (no framework is loaded), and once on a Keras model."""
import json
import zipfile

import numpy as np
import pytest

from conftest import add_plugin
import xvalidate
from xvalidate.saved import SavedResult
from xvalidate.saved.capture import parameter_layers
from xvalidate.worker import get_worker
from xvalidate_adapters.base import LayerInfo

from test_cli_exit_codes import invoke, one_line_error

PARAMS_ADAPTER = '''
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate.core.causes.lstm_gates import lstm_forward
from xvalidate.errors import UnknownLayerError


class ParamsAdapter(Adapter):
    """Two numpy models stored as .npz: a 3x3 convolution (k: (out, in, 3, 3)) with a relu and a global
    average pool after it, or a one-direction LSTM (W, R in ONNX's layout, gates i, o, f, c) with its last
    step after it. `kernel` and `recurrent_weights` look through the layer after the one that holds them."""
    name, layout, extensions = "toyparams", "NCHW", (".npz",)

    def load(self, source):
        return dict(np.load(source))

    def input_info(self, model):
        if "k" in model:
            return InputInfo("x", (None, model["k"].shape[1], 6, 6), "float32", "NCHW")
        return InputInfo("x", (None, 5, model["W"].shape[1]), "float32", "NWC")

    def layers(self, model):
        if "k" in model:
            out = model["k"].shape[0]
            return [LayerInfo("conv", "Conv", (None, out, 4, 4), "NCHW", ["conv"], [],
                              {"kernel": [3, 3], "strides": [1, 1], "padding": "valid"}),
                    LayerInfo("relu", "Relu", (None, out, 4, 4), "NCHW", ["relu"], ["conv"]),
                    LayerInfo("pool", "GlobalAveragePool", (None, out), "NC", ["gpool"], ["relu"])]
        hidden = model["R"].shape[1]
        return [LayerInfo("lstm", "LSTM", (None, 5, hidden), "NWC", ["other"], []),
                LayerInfo("last", "Gather", (None, hidden), "NC", ["identity"], ["lstm"])]

    def run(self, model, x, layers=None):
        x = np.asarray(x, np.float64)
        if "k" in model:
            windows = sliding_window_view(x, (3, 3), axis=(2, 3))
            conv = np.einsum("ncijab,ocab->noij", windows, model["k"])
            out = {"conv": conv, "relu": np.maximum(conv, 0)}
            out["pool"] = out["relu"].mean(axis=(2, 3))
        else:
            seq = lstm_forward(x, model["W"], model["R"])[0]
            out = {"lstm": seq, "last": seq[:, -1]}
        for name in layers or ():
            if name not in out:
                raise UnknownLayerError(f"toyparams model: no layer {name!r}")
        return {k: v.astype("float32") for k, v in out.items() if layers is None or k in layers}

    def kernel(self, model, name):
        return model["k"].copy() if "k" in model and name in ("conv", "relu") else None

    def recurrent_weights(self, model, name):
        return (model["W"].copy(), model["R"].copy(), None) if "W" in model and name in ("lstm", "last") else None
'''


@pytest.fixture
def params_plugin(toy_plugin):
    """Adapter 'toyparams' registered beside the toy adapter; returns the directory to save models in."""
    add_plugin(toy_plugin.parent / "site", "toy_params", PARAMS_ADAPTER, "xvalidate.adapters",
               {"toyparams": "toy_params:ParamsAdapter"})
    return toy_plugin.parent


rng = np.random.default_rng(5)
KERNEL = rng.standard_normal((4, 2, 3, 3)).astype("float32")
HIDDEN = 3
W, R = (rng.standard_normal((4 * HIDDEN, n)).astype("float32") for n in (2, HIDDEN))


def conv_model(directory, name, kernel=KERNEL):
    path = directory / f"{name}.npz"
    np.savez(path, k=kernel)
    return path


def lstm_model(directory, name, order=(0, 1, 2, 3)):
    """The LSTM with its gate blocks (i, o, f, c) taken in `order`: (0, 2, 3, 1) stores them as
    Keras's (i, f, c, o), which the adapter still reads as ONNX's (i, o, f, c)."""
    def blocks(a):
        return np.concatenate([a[k * HIDDEN:(k + 1) * HIDDEN] for k in order])
    path = directory / f"{name}.npz"
    np.savez(path, W=blocks(W), R=blocks(R))
    return path


def save(model, path, *args):
    result = invoke("capture", model, "--adapter", "toyparams", "--save", path, "--batch", 3, *args)
    assert result.exit_code == 0, result.output
    return result


def manifest(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))


def root_cause(report):
    return report.first_divergence.src, report.first_divergence.cause


def test_the_manifest_lists_the_parameters_stored_once(params_plugin):
    conv, lstm = conv_model(params_plugin, "conv"), lstm_model(params_plugin, "lstm")
    result = save(conv, params_plugin / "conv.xvr", "--memory-budget", 300)
    assert "parameters of 2 layer(s): 1 array(s), 0.0 MB" in result.output
    data = manifest(params_plugin / "conv.xvr")
    assert data["parameters"] == {"conv": {"kernel": "p00000.npy"}, "relu": {"kernel": "p00000.npy"}}
    assert len(data["chunks"]) > 1  # the parameters do not depend on the chunks
    with np.load(params_plugin / "conv.xvr") as arrays:
        np.testing.assert_array_equal(arrays["p00000"], KERNEL)
    with zipfile.ZipFile(params_plugin / "conv.xvr") as archive:
        assert archive.getinfo("p00000.npy").compress_type == zipfile.ZIP_STORED
    save(lstm, params_plugin / "lstm.xvr")
    recurrent = {"recurrent": ["p00000.npy", "p00001.npy", None]}  # W, R and no B
    assert manifest(params_plugin / "lstm.xvr")["parameters"] == {"lstm": recurrent, "last": recurrent}
    save(conv, params_plugin / "pool.xvr", "--layers", "pool")
    assert manifest(params_plugin / "pool.xvr")["parameters"] == {}  # only captured tensors are asked


def test_the_reader_gives_what_the_live_worker_gives(params_plugin):
    conv, lstm = conv_model(params_plugin, "conv"), lstm_model(params_plugin, "lstm")
    save(conv, params_plugin / "conv.xvr")
    save(lstm, params_plugin / "lstm.xvr")
    worker = get_worker("toyparams")
    for model, saved, names in ((conv, "conv.xvr", ("conv", "relu", "pool")), (lstm, "lstm.xvr", ("lstm", "last"))):
        with SavedResult(params_plugin / saved) as result:
            for name in names + ("nope",):
                live_kernel, kept_kernel = worker.kernel(str(model), name), result.kernel(None, name)
                assert type(kept_kernel) is type(live_kernel), name
                if live_kernel is not None:
                    assert kept_kernel.dtype == live_kernel.dtype
                    np.testing.assert_array_equal(kept_kernel, live_kernel)
                live, kept = worker.recurrent_weights(str(model), name), result.recurrent_weights(None, name)
                assert type(kept) is type(live), name
                if live is not None:
                    assert len(kept) == 3 and kept[2] is None and live[2] is None
                    for a, b in zip(kept[:2], live[:2]):
                        assert a.dtype == b.dtype
                        np.testing.assert_array_equal(a, b)


def test_a_transposed_kernel_is_named_with_a_saved_side(params_plugin):
    good, bad = conv_model(params_plugin, "good"), conv_model(params_plugin, "bad", KERNEL.transpose(0, 1, 3, 2))
    save(good, params_plugin / "good.xvr")
    save(bad, params_plugin / "bad.xvr")
    live = xvalidate.compare(str(good), str(bad), src="toyparams", dst="toyparams", batch=3)
    src, cause = root_cause(live)
    assert src == "conv" and cause.startswith("kernel transposed: the destination's 3x3 kernel"), cause
    assert root_cause(xvalidate.compare(params_plugin / "good.xvr", str(bad), dst="toyparams")) == (src, cause)
    assert root_cause(xvalidate.compare(str(good), params_plugin / "bad.xvr", src="toyparams")) == (src, cause)
    assert root_cause(xvalidate.compare(params_plugin / "good.xvr", params_plugin / "bad.xvr")) == (src, cause)


def test_an_lstm_gate_order_is_named_with_a_saved_destination(params_plugin):
    good, keras_order = lstm_model(params_plugin, "good"), lstm_model(params_plugin, "keras-order", (0, 2, 3, 1))
    save(keras_order, params_plugin / "keras-order.xvr")
    live = xvalidate.compare(str(good), str(keras_order), src="toyparams", dst="toyparams", batch=3)
    src, cause = root_cause(live)
    assert src == "lstm", src
    assert cause.startswith("LSTM gate order: the weights hold their gate blocks as (i, f, c, o)"), cause
    assert root_cause(xvalidate.compare(str(good), params_plugin / "keras-order.xvr", src="toyparams")) == (src, cause)


def without_parameters(saved, path, parameters=None, drop=True):
    """A copy of `saved` as written before parameters were saved (no parameters key, no p*.npy members),
    or with its parameters entry replaced by `parameters`."""
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                data = json.loads(data)
                data.pop("parameters")
                data = json.dumps(data if parameters is None else {**data, "parameters": parameters}).encode()
            if not (drop and info.filename.startswith("p")):
                dst.writestr(info, data)
    return path


def test_a_file_saved_without_parameters_still_compares(params_plugin):
    good, bad = conv_model(params_plugin, "good"), conv_model(params_plugin, "bad", KERNEL.transpose(0, 1, 3, 2))
    save(good, params_plugin / "good.xvr")
    old = without_parameters(params_plugin / "good.xvr", params_plugin / "old.xvr")
    with SavedResult(old) as result:
        assert result.kernel(None, "conv") is None and result.recurrent_weights(None, "conv") is None
    assert xvalidate.compare(old, str(good), dst="toyparams").passed
    src, cause = root_cause(xvalidate.compare(old, str(bad), dst="toyparams"))
    assert src == "conv" and cause.startswith("weights: the inputs of"), cause  # no kernel check without them


def test_bad_parameter_entries(params_plugin):
    good = conv_model(params_plugin, "good")
    save(good, params_plugin / "good.xvr")
    for parameters, message in (([], "parameters is a list, not an object"),
                                ({"conv": {"kernel": 3}}, "the parameters of 'conv' are not member names"),
                                ({"conv": {"recurrent": "p00000.npy"}}, "the parameters of 'conv' are not an object")):
        bad = without_parameters(params_plugin / "good.xvr", params_plugin / "bad.xvr", parameters)
        one_line_error(invoke("compare", bad, good, "--dst", "toyparams"),
                       f"{bad}: manifest.json is malformed (")
        assert message in invoke("compare", bad, good, "--dst", "toyparams").output
    missing = without_parameters(params_plugin / "good.xvr", params_plugin / "missing.xvr",
                                 {"conv": {"kernel": "p00000.npy"}}, drop=True)
    one_line_error(invoke("compare", missing, good, "--dst", "toyparams"), f"{missing}: member p00000.npy is missing")


def test_only_layers_that_can_have_parameters_are_asked():
    def info(name, kinds, inputs=()):
        return LayerInfo(name, "op", None, "none", list(kinds), list(inputs))

    infos = [info("pad", ["pad"]), info("conv", ["conv"], ["pad"]), info("bn", ["bn"], ["conv"]),
             info("relu", ["relu"], ["bn"]), info("pool", ["maxpool"], ["relu"]),
             info("add", ["add"], ["pool", "pad"]),  # 4 layers below the conv: still asked
             info("flat", ["flatten"], ["add"]), info("dense", ["dense"], ["flat"]), info("lstm", ["other"], ["dense"])]
    names = [i.name for i in infos]
    assert parameter_layers(infos, names) == ["conv", "bn", "relu", "pool", "add", "dense", "lstm"]
    assert parameter_layers(infos, ["flat", "pad", "relu", "made-up"]) == ["relu", "made-up"]


def test_a_saved_keras_model_keeps_its_kernels(tmp_path):
    """The Keras adapter's kernels (a Conv's, and the same one behind its BatchNorm and activation) read back
    from a saved capture of a small residual network."""
    worker = get_worker("keras")
    h5 = worker.call("xvalidate.models.keras_zoo:save", "resnet_block", str(tmp_path / "block.h5"))
    summary = xvalidate.saved.save_capture(h5, tmp_path / "block.xvr", adapter="keras", batch=2)
    assert summary["parameters"]["arrays"] >= 3 and summary["parameters"]["bytes"] > 0
    with SavedResult(tmp_path / "block.xvr") as result:
        names = [info.name for info in result.layers()]
        kept = {name: result.kernel(None, name) for name in names}
    live = {name: worker.kernel(h5, name) for name in names}
    assert {n for n, k in live.items() if k is not None} == {n for n, k in kept.items() if k is not None}
    assert {"stem_conv", "stem_bn"} <= {n for n, k in kept.items() if k is not None}
    for name, kernel in live.items():
        if kernel is not None:
            np.testing.assert_array_equal(kept[name], kernel)
    assert xvalidate.compare(tmp_path / "block.xvr", h5, dst="keras").passed
