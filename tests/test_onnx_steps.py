"""The ONNX route's steps (keras -> onnx, onnx -> mxnet, mxnet -> onnx) and their name hints.

Framework code runs in workers: the steps themselves, and the helpers at the bottom of this
module (building models, running them), which the workers import from here."""
import hashlib
import os

import numpy as np
import pytest

from xvalidate.errors import ConversionError, InputFileError, UnsupportedLayerError
from xvalidate.routes import onnx_names
from xvalidate.worker import get_worker

STEPS = "xvalidate.routes.onnx_steps"
HERE = "test_onnx_steps"


def keras(func, *args):
    return get_worker("keras").call(func, *args)


def mxnet(func, *args):
    return get_worker("mxnet").call(func, *args)


def onnx(func, *args):
    return get_worker("onnx").call(func, *args)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_steps")


@pytest.fixture(scope="module")
def converted(work):
    """{model name: (keras .h5, keras_to_onnx result at opset 11, Keras layer names)} for the small models."""
    out = {}
    for name in ("seed2_cnn", "resnet_block"):
        h5 = keras("xvalidate.models.keras_zoo:save", name, str(work / f"{name}.h5"))
        made = keras(f"{STEPS}:keras_to_onnx", h5, str(work / f"{name}.onnx"), 11)
        out[name] = (h5, made, keras(f"{HERE}:keras_layer_names", h5))
    return out


def batch(shape, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (2, *shape)).astype("float32")


def close(a, b, tol=1e-5):
    """a equals b, or b read as NCHW equals a (NHWC)."""
    if b.ndim == 4 and b.shape != a.shape:
        b = b.transpose(0, 2, 3, 1)
    assert a.shape == b.shape
    scale = max(float(np.abs(a).max()), 1.0)
    return float(np.abs(a - b).max()) <= tol * scale


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ---------------------------------------------------------------- names, pure Python
def test_layer_in_name_reads_tf2onnx_names():
    layers = {"block_bn", "predictions", "inner/conv"}
    assert onnx_names.layer_in_name("model/block_bn/FusedBatchNormV3:0", layers) == "block_bn"
    assert onnx_names.layer_in_name("predictions", layers) == "predictions"
    assert onnx_names.layer_in_name("outer/inner/conv/Conv2D:0", layers) == "inner/conv"
    assert onnx_names.layer_in_name("model/block_bn", layers) is None  # "model" is the model, "block_bn" the op
    assert onnx_names.layer_in_name("const_fold_opt__23", layers) is None


# ---------------------------------------------------------------- keras -> onnx
@pytest.mark.parametrize("name", ["seed2_cnn", "resnet_block"])
def test_keras_to_onnx_matches_keras(work, converted, name):
    h5, made, _ = converted[name]
    assert made["opset"] == 11 and made["nodes"] > 5 and os.path.isfile(made["onnx"])
    x_path = save_batch(work, name, keras(f"{HERE}:keras_input_shape", h5))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / f"{name}_k.npz")))
    got = np.load(onnx(f"{HERE}:onnx_outputs", made["onnx"], x_path, str(work / f"{name}_o.npz"), []))
    assert close(expected[KERAS_FINAL], got[ONNX_FINAL], 1e-5)


def test_keras_to_onnx_inputs_as_nchw(work, converted):
    h5 = converted["resnet_block"][0]
    made = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "nchw.onnx"), 11, True)
    x_path = save_batch(work, "nchw", (32, 32, 3))
    np.save(work / "nchw_t.npy", np.load(x_path).transpose(0, 3, 1, 2))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / "nchw_k.npz")))
    got = np.load(onnx(f"{HERE}:onnx_outputs", made["onnx"], str(work / "nchw_t.npy"), str(work / "nchw_o.npz"), []))
    assert close(expected[KERAS_FINAL], got[ONNX_FINAL])


def test_keras_to_onnx_names_an_unsupported_op(work):
    h5 = keras(f"{HERE}:save_unconvertible_keras", str(work / "bessel.h5"))
    get_worker("keras").set_trust_model(True)  # its Lambda is ours: the converter is what refuses it
    try:
        with pytest.raises(UnsupportedLayerError, match=r"'BesselI0e' in layer 'odd'"):
            keras(f"{STEPS}:keras_to_onnx", h5, str(work / "bessel.onnx"), 11)
    finally:
        get_worker("keras").set_trust_model(False)
    assert not (work / "bessel.onnx").exists()


def test_keras_to_onnx_missing_file(work):
    with pytest.raises(InputFileError, match="nothing.h5"):
        keras(f"{STEPS}:keras_to_onnx", str(work / "nothing.h5"), str(work / "nothing.onnx"))


def test_keras_onnx_hints_pair_each_layer_with_its_output(work, converted):
    """Names: a BatchNorm folded into its Conv pairs with the Conv's output ("fused"); the Conv2D itself
    has no tensor left; layout Transposes are never chosen. Values: every hinted tensor equals the
    Keras layer output (read as NCHW where the graph is)."""
    h5, made, names = converted["resnet_block"]
    hints = onnx_names.keras_onnx_hints(made["onnx"], names)
    by_layer = {layer: (tensor, how) for tensor, (layer, how) in hints.items()}
    assert by_layer["stem_bn"] == ("resnet_block/stem_bn/FusedBatchNormV3:0", "fused")
    assert by_layer["block_add"] == ("resnet_block/block_add/add:0", "name")
    assert by_layer["avg_pool"][0].startswith("resnet_block/avg_pool/Mean_Squeeze")
    assert by_layer["predictions"] == ("predictions", "name")
    assert {"stem_conv", "block_conv1", "block_conv2"}.isdisjoint(by_layer)
    assert len(hints) == len(names) - 3
    assert_hints_hold(work, "resnet_block", h5, made["onnx"], hints)

    h5, made, names = converted["seed2_cnn"]
    hints = onnx_names.keras_onnx_hints(made["onnx"], names)
    assert {layer: t for t, (layer, _) in hints.items()}["max_pooling2d_1"] == "seed2_cnn/max_pooling2d_1/MaxPool:0"
    assert len(hints) == len(names)
    assert_hints_hold(work, "seed2_cnn", h5, made["onnx"], hints)


def assert_hints_hold(work, name, h5, onnx_path, hints):
    x_path = save_batch(work, name + "_hints", keras(f"{HERE}:keras_input_shape", h5))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / f"{name}_hk.npz")))
    got = np.load(onnx(f"{HERE}:onnx_outputs", onnx_path, x_path, str(work / f"{name}_ho.npz"), list(hints)))
    for tensor, (layer, _) in hints.items():
        assert close(expected[layer], got[key(tensor)]), (layer, tensor)


# ---------------------------------------------------------------- onnx -> mxnet
@pytest.mark.parametrize("opset", [11, 13])
def test_onnx_to_mxnet_matches_keras_and_keeps_the_file(work, converted, opset):
    h5, _, names = converted["resnet_block"]
    onnx_path = keras(f"{STEPS}:keras_to_onnx", h5, str(work / f"rb{opset}.onnx"), opset)["onnx"]
    before = digest(onnx_path)
    built = mxnet(f"{STEPS}:onnx_to_mxnet", onnx_path, str(work / f"rb{opset}_mx"))
    assert digest(onnx_path) == before
    assert built["opset"] == opset and built["inputs"] == {"input_1": [None, 32, 32, 3]}
    prefixes = set(mxnet(f"{HERE}:param_prefixes", built["params"]))
    assert "arg" in prefixes and prefixes <= {"arg", "aux"}

    hints = onnx_names.mxnet_onnx_hints(onnx_path, built["symbol"], names)
    assert hints["convolution0_output"] == ("stem_bn", "fused")
    assert len(hints) == len(names) - 3
    x_path = save_batch(work, f"rb{opset}", (32, 32, 3))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / f"rb{opset}_k.npz")))
    got = np.load(mxnet(f"{HERE}:mxnet_outputs", built["symbol"], built["params"], x_path,
                        str(work / f"rb{opset}_m.npz"), list(hints)))
    for tensor, (layer, _) in hints.items():
        assert close(expected[layer], got[key(tensor)]), (layer, tensor)


def test_the_graph_fixes_are_needed(work, converted):
    """MXNet's own import_model fails on tf2onnx graphs unless the initializers are listed as inputs,
    and on opset 13 even then (Squeeze takes its axes as an input): what onnx_to_mxnet fixes."""
    h5 = converted["resnet_block"][0]
    opset11 = converted["resnet_block"][1]["onnx"]
    opset13 = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "stock13.onnx"), 13)["onnx"]
    assert mxnet(f"{HERE}:stock_import", opset11, False).startswith("failed")
    assert mxnet(f"{HERE}:stock_import", opset11, True) == "imported"
    assert mxnet(f"{HERE}:stock_import", opset13, True).startswith("failed")


def test_onnx_to_mxnet_refuses_a_newer_opset_by_name(work, converted):
    onnx_path = keras(f"{STEPS}:keras_to_onnx", converted["seed2_cnn"][0], str(work / "s15.onnx"), 15)["onnx"]
    with pytest.raises(ConversionError, match=r"opset 15 .* opset 13 or lower"):
        mxnet(f"{STEPS}:onnx_to_mxnet", onnx_path, str(work / "s15_mx"))


def test_onnx_to_mxnet_averages_over_real_values_only(work):
    """Keras AveragePooling2D(padding="same") is an ONNX AveragePool with count_include_pad=0; MXNet's
    stock translation averages over the padded zeros too, onnx_to_mxnet does not."""
    h5 = keras(f"{HERE}:save_same_average_pool", str(work / "avgpool.h5"))
    onnx_path = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "avgpool.onnx"), 11)["onnx"]
    built = mxnet(f"{STEPS}:onnx_to_mxnet", onnx_path, str(work / "avgpool_mx"))
    x_path = save_batch(work, "avgpool", (9, 10, 4))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / "avgpool_k.npz")))[KERAS_FINAL]
    got = np.load(mxnet(f"{HERE}:mxnet_outputs", built["symbol"], built["params"], x_path,
                        str(work / "avgpool_m.npz"), []))[MXNET_FINAL]
    assert close(expected, got)
    stock = np.load(mxnet(f"{HERE}:stock_import_outputs", onnx_path, x_path, str(work / "avgpool_s.npz")))[MXNET_FINAL]
    assert not close(expected, stock, 1e-3)


def test_onnx_to_mxnet_pads_layout_axes_and_slices_to_open_ends(work):
    """tf2onnx pads a channels-last tensor on axes 1 and 2 (MobileNetV3's ZeroPadding2D before a strided
    depthwise convolution) and slices "to the end" with INT32_MAX (Cropping2D): MXNet's stock importer
    fails on both; onnx_to_mxnet imports them as ONNX defines them."""
    h5 = keras(f"{HERE}:save_pad_and_crop", str(work / "padcrop.h5"))
    onnx_path = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "padcrop.onnx"), 11)["onnx"]
    ops = onnx(f"{HERE}:pads_and_slice_ends", onnx_path)
    assert ops["pads"] == [[0, 0, 0, 0, 0, 1, 1, 0]] and max(ops["slice_ends"][0]) == 2**31 - 1
    assert mxnet(f"{HERE}:stock_import", onnx_path, True).startswith("failed")
    built = mxnet(f"{STEPS}:onnx_to_mxnet", onnx_path, str(work / "padcrop_mx"))
    x_path = save_batch(work, "padcrop", (11, 12, 3))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / "padcrop_k.npz")))[KERAS_FINAL]
    got = np.load(mxnet(f"{HERE}:mxnet_outputs", built["symbol"], built["params"], x_path,
                        str(work / "padcrop_m.npz"), []))[MXNET_FINAL]
    assert expected.shape == (2, 4, 5, 4) and close(expected, got)


def test_grouped_convolutions_convert(work):
    """Keras 2.12 runs a Conv2D with groups > 1 through a jit-compiled function that tf2onnx cannot
    convert ('PartitionedCall': ConvNeXt, RegNet); keras_to_onnx traces the plain op instead."""
    h5 = keras(f"{HERE}:save_grouped", str(work / "grouped.h5"))
    made = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "grouped.onnx"), 11)
    assert onnx(f"{HERE}:conv_groups", made["onnx"]) == [4, 8]
    x_path = save_batch(work, "grouped", (8, 8, 8))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / "grouped_k.npz")))[KERAS_FINAL]
    got = np.load(onnx(f"{HERE}:onnx_outputs", made["onnx"], x_path, str(work / "grouped_o.npz"), []))[ONNX_FINAL]
    assert close(expected, got)
    assert keras(f"{HERE}:grouped_op_swapped_and_restored", h5) == {"inside": [True, True], "after": [False, False]}


def test_a_reshape_to_a_computed_shape_is_folded_and_erf_imported(work):
    """A Dense on a 4-D tensor (ConvNeXt's pointwise convolutions) is a Tensordot whose Reshape target shape
    tf2onnx computes at run time, and an exact GELU is an Erf: MXNet's stock importer takes neither;
    onnx_to_mxnet folds the shapes (batch entry -1) and imports Erf, and the result runs at any batch."""
    h5 = keras(f"{HERE}:save_dense_on_4d", str(work / "dense4d.h5"))
    onnx_path = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "dense4d.onnx"), 11)["onnx"]
    assert onnx(f"{HERE}:runtime_reshapes", onnx_path) >= 1
    assert mxnet(f"{HERE}:stock_import", onnx_path, True).startswith("failed")
    built = mxnet(f"{STEPS}:onnx_to_mxnet", onnx_path, str(work / "dense4d_mx"))
    for batch_size in (1, 3):
        x_path = str(work / f"dense4d_{batch_size}_x.npy")
        np.save(x_path, batch((6, 6, 3))[:1].repeat(batch_size, axis=0))
        expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / "dense4d_k.npz")))[KERAS_FINAL]
        got = np.load(mxnet(f"{HERE}:mxnet_outputs", built["symbol"], built["params"], x_path,
                            str(work / "dense4d_m.npz"), []))[MXNET_FINAL]
        assert expected.shape == (batch_size, 6, 6, 4) and close(expected, got)


def test_a_shape_with_two_batch_entries_stays_and_is_refused_by_name():
    """A target shape two of whose entries follow the batch cannot be one constant: the Reshape keeps its
    computed shape and the importer's refusal names the node."""
    assert onnx(f"{HERE}:fold_two_batch_entries") == {"folded": [], "reshape_shape": "both"}


def test_import_ops_refuse_what_mxnet_cannot_pad():
    assert "Pad of 3-D data on axes [1]" in mxnet(f"{HERE}:pad_refusal", (0, 1, 0, 0, 1, 0))


def pad_refusal(pads):
    """(In the mxnet worker: the import ops import MXNet.) The refusal of an ONNX Pad on `pads`."""
    from xvalidate.routes import onnx_import_ops

    class Importer:
        opset_version = 10

    try:
        onnx_import_ops.pad({"pads": tuple(pads)}, [None], Importer())
    except NotImplementedError as exc:
        return str(exc)
    return "accepted"


def test_onnx_to_mxnet_missing_file(work):
    with pytest.raises(InputFileError, match="absent.onnx"):
        mxnet(f"{STEPS}:onnx_to_mxnet", str(work / "absent.onnx"), str(work / "absent_mx"))


# ---------------------------------------------------------------- mxnet -> onnx
def test_mxnet_to_onnx_matches_mxnet(work):
    symbol, params = mxnet(f"{HERE}:export_gluon_net", str(work / "gluon"))
    made = mxnet(f"{STEPS}:mxnet_to_onnx", symbol, params, [1, 3, 16, 16], str(work / "gluon.onnx"))
    assert made["opset"] == 13
    assert onnx(f"{HERE}:onnx_facts", made["onnx"]) == {"opset": 13, "raw_initializers": True, "batch": "free"}

    hints = onnx_names.gluon_onnx_hints(symbol, made["onnx"])
    assert hints["net_conv0_fwd"] == ("net_conv0_fwd_output", "name")
    assert {mx for mx, _ in hints.values()} == set(mxnet(f"{HERE}:mxnet_op_outputs", symbol))
    bare = onnx_names.gluon_onnx_hints(symbol, made["onnx"], mxnet_names={"net_conv0_fwd", "net_dense0_fwd"})
    assert bare == {"net_conv0_fwd": ("net_conv0_fwd", "name"), "net_dense0_fwd": ("net_dense0_fwd", "name")}
    x_path = str(work / "gluon_x.npy")
    np.save(x_path, batch((3, 16, 16)))  # batch 2 through a model exported for batch 1
    expected = np.load(mxnet(f"{HERE}:mxnet_outputs", symbol, params, x_path, str(work / "gluon_m.npz"),
                             [mx for mx, _ in hints.values()]))
    got = np.load(onnx(f"{HERE}:onnx_outputs", made["onnx"], x_path, str(work / "gluon_o.npz"), list(hints)))
    for tensor, (mx_name, _) in hints.items():
        assert close(expected[key(mx_name)], got[key(tensor)]), tensor


def test_mxnet_to_onnx_exports_a_fixed_gamma_as_ones(work):
    """MXNet ignores the gamma of a BatchNorm with fix_gamma (Gluon's BatchNorm(scale=False), the model
    zoo's ResNet V2 stem); the stock exporter writes it as the ONNX scale anyway."""
    symbol, params, x, expected = mxnet(f"{HERE}:export_fixed_gamma_net", str(work / "fixgamma"))
    made = mxnet(f"{STEPS}:mxnet_to_onnx", symbol, params, [1, 3, 8, 8], str(work / "fixgamma.onnx"))
    got = onnx(f"{HERE}:onnx_plain_output", made["onnx"], x)
    assert np.abs(expected - got).max() < 1e-5
    stock = onnx(f"{HERE}:onnx_plain_output", mxnet(f"{HERE}:stock_export", symbol, params,
                                                     str(work / "fixgamma_stock.onnx")), x)
    assert np.abs(expected - stock).max() > 0.1


def test_mxnet_to_onnx_names_an_unsupported_op(work):
    symbol, params = mxnet(f"{HERE}:save_unexportable_mxnet", str(work / "gammaln"))
    with pytest.raises(UnsupportedLayerError, match=r"op gammaln \(node 'odd'\)"):
        mxnet(f"{STEPS}:mxnet_to_onnx", symbol, params, [1, 4], str(work / "gammaln.onnx"))


# ---------------------------------------------------------------- ResNet50
@pytest.mark.slow
def test_resnet50_keras_onnx_mxnet(work):
    h5 = keras("xvalidate.models.keras_zoo:save", "ResNet50", str(work / "r50.h5"))
    names = keras(f"{HERE}:keras_layer_names", h5)
    made = keras(f"{STEPS}:keras_to_onnx", h5, str(work / "r50.onnx"), 11)
    hints = onnx_names.keras_onnx_hints(made["onnx"], names)
    assert len(hints) >= 100 and sum(how == "fused" for _, how in hints.values()) == 53
    assert_hints_hold(work, "r50", h5, made["onnx"], hints)

    built = mxnet(f"{STEPS}:onnx_to_mxnet", made["onnx"], str(work / "r50_mx"))
    mx_hints = onnx_names.mxnet_onnx_hints(made["onnx"], built["symbol"], names)
    assert sorted(mx_hints.values()) == sorted(hints.values())
    x_path = save_batch(work, "r50_mx", (224, 224, 3))
    expected = np.load(keras(f"{HERE}:keras_outputs", h5, x_path, str(work / "r50_k.npz")))
    got = np.load(mxnet(f"{HERE}:mxnet_outputs", built["symbol"], built["params"], x_path,
                        str(work / "r50_m.npz"), list(mx_hints)))
    for tensor, (layer, _) in mx_hints.items():
        assert close(expected[layer], got[key(tensor)]), (layer, tensor)


# ================================================================ run inside workers
KERAS_FINAL = ONNX_FINAL = MXNET_FINAL = "__final__"


def key(name):
    """An .npz member name for a tensor name (tf2onnx names contain '/')."""
    return name.replace("/", "|")


def save_batch(work, name, shape):
    path = str(work / f"{name}_x.npy")
    np.save(path, batch(tuple(shape)))
    return path


def keras_layer_names(h5):
    from tensorflow import keras as k

    return [layer.name for layer in k.models.load_model(h5, compile=False).layers]


def keras_input_shape(h5):
    from tensorflow import keras as k

    return list(k.models.load_model(h5, compile=False).input_shape[1:])


def keras_outputs(h5, x_path, out):
    """Every layer's output (and the model input under its name) in one forward pass; the last as __final__."""
    from tensorflow import keras as k

    model = k.models.load_model(h5, compile=False)
    x = np.load(x_path)
    layers = [layer for layer in model.layers if not isinstance(layer, k.layers.InputLayer)]
    values = k.Model(model.inputs, [layer.output for layer in layers])(x, training=False)
    arrays = {key(layer.name): np.asarray(v) for layer, v in zip(layers, values)}
    arrays.update({key(name): x for name in model.input_names})
    arrays[KERAS_FINAL] = arrays[key(layers[-1].name)]
    np.savez(out, **arrays)
    return out


def onnx_outputs(onnx_path, x_path, out, tensors):
    """The graph output (__final__) and the asked tensors (graph inputs included) by onnxruntime."""
    import onnx as onnx_pkg
    import onnxruntime

    model = onnx_pkg.load(onnx_path)
    x = np.load(x_path)
    inputs = {i.name for i in model.graph.input} - {i.name for i in model.graph.initializer}
    listed = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in listed and name not in inputs:
            model.graph.output.append(onnx_pkg.ValueInfoProto(name=name))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))
    arrays = {key(name): values.get(name, x) for name in tensors}
    arrays[ONNX_FINAL] = values[names[0]]
    np.savez(out, **arrays)
    return out


def _mxnet_forward(symbol, arg_params, aux_params, x, names):
    import mxnet as mx

    internals = symbol.get_internals()
    inputs = [n for n in symbol.list_arguments() if n not in arg_params]
    wanted = [symbol.list_outputs()[0]] + [n for n in names if n not in inputs]
    group = mx.sym.Group([internals[n] for n in wanted])
    module = mx.mod.Module(group, data_names=inputs, label_names=None, context=mx.cpu())
    backend = os.environ.get("MXNET_SUBGRAPH_BACKEND")
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"  # oneDNN fusion corrupts exposed intermediates
    try:
        module.bind(data_shapes=[(inputs[0], x.shape)], for_training=False)
    finally:
        if backend is None:
            del os.environ["MXNET_SUBGRAPH_BACKEND"]
        else:
            os.environ["MXNET_SUBGRAPH_BACKEND"] = backend
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    values = dict(zip(wanted, (o.asnumpy() for o in module.get_outputs())))
    arrays = {key(n): values.get(n, x) for n in names}
    arrays[MXNET_FINAL] = values[wanted[0]]
    return arrays


def _split_params(params_path):
    import mxnet as mx

    loaded = mx.nd.load(params_path)
    arg = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("aux:")}
    return arg, aux


def mxnet_outputs(symbol_path, params_path, x_path, out, names):
    import mxnet as mx

    np.savez(out, **_mxnet_forward(mx.sym.load(symbol_path), *_split_params(params_path), np.load(x_path), names))
    return out


def param_prefixes(params_path):
    import mxnet as mx

    return sorted({k.split(":", 1)[0] for k in mx.nd.load(params_path)})


def mxnet_op_outputs(symbol_path):
    import json

    with open(symbol_path) as f:
        return [f"{n['name']}_output" for n in json.load(f)["nodes"] if n["op"] != "null"]


def _listing_initializers(onnx_path):
    """A copy of the file with every initializer also listed as a graph input (the importer's first need)."""
    import onnx as onnx_pkg
    from onnx import helper

    model = onnx_pkg.load(onnx_path)
    listed = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if init.name not in listed:
            model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    copy = onnx_path + ".listed.onnx"
    onnx_pkg.save(model, copy)
    return copy


def stock_import(onnx_path, list_initializers):
    import mxnet as mx

    try:
        mx.contrib.onnx.import_model(_listing_initializers(onnx_path) if list_initializers else onnx_path)
    except Exception as exc:  # whatever the importer raises
        return f"failed: {type(exc).__name__}"
    return "imported"


def stock_import_outputs(onnx_path, x_path, out):
    import mxnet as mx

    symbol, arg, aux = mx.contrib.onnx.import_model(_listing_initializers(onnx_path))
    np.savez(out, **_mxnet_forward(symbol, arg, aux, np.load(x_path), []))
    return out


def save_unconvertible_keras(path):
    """A model with a TensorFlow op that tf2onnx has no conversion for (the lambda closes over nothing,
    so that Keras can save its bytecode)."""
    from tensorflow import keras as k

    x = k.Input((4,))
    y = k.layers.Dense(4, name="dense")(x)
    y = k.layers.Lambda(lambda t: __import__("tensorflow").math.bessel_i0e(t), name="odd")(y)
    k.Model(x, y).save(path)
    return path


def save_same_average_pool(path):
    from tensorflow import keras as k

    k.utils.set_random_seed(0)
    x = k.Input((9, 10, 4))
    y = k.layers.Conv2D(6, 3, padding="same", name="conv")(x)
    y = k.layers.AveragePooling2D(3, strides=1, padding="same", name="pool_s1")(y)
    y = k.layers.AveragePooling2D(2, strides=2, padding="same", name="pool_s2")(y)  # 9x10 -> pads on one side
    k.Model(x, y).save(path)
    return path


def export_gluon_net(prefix):
    """A small Gluon CNN with seeded weights and random BatchNorm statistics, hybridized and exported."""
    import mxnet as mx
    from mxnet.gluon import nn

    mx.random.seed(0)
    net = nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(2),
                nn.Conv2D(8, 3, padding=1), nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(5))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 16, 16)))
    rng = np.random.default_rng(0)
    for name, param in net.collect_params().items():
        if name.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.array(rng.normal(0.0, 0.1, param.shape)))
        elif name.endswith(("running_var", "gamma")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 16, 16)))
    net.export(prefix)
    return f"{prefix}-symbol.json", f"{prefix}-0000.params"


def save_unexportable_mxnet(prefix):
    import mxnet as mx

    data = mx.sym.var("data")
    y = mx.sym.gammaln(mx.sym.FullyConnected(data, num_hidden=3, name="fc"), name="odd")
    arg = {"fc_weight": mx.nd.ones((3, 4)), "fc_bias": mx.nd.zeros(3)}
    mx.model.save_checkpoint(prefix, 0, y, arg, {})
    return f"{prefix}-symbol.json", f"{prefix}-0000.params"


def onnx_facts(onnx_path):
    import onnx as onnx_pkg

    model = onnx_pkg.load(onnx_path)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return {"opset": max(e.version for e in model.opset_import if e.domain in ("", "ai.onnx")),
            "raw_initializers": all(i.raw_data for i in model.graph.initializer if i.dims),
            "batch": "free" if not dim.HasField("dim_value") else dim.dim_value}


def save_pad_and_crop(path):
    from tensorflow import keras as k

    k.utils.set_random_seed(0)
    x = k.Input((11, 12, 3))
    y = k.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(x)
    y = k.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(y)
    y = k.layers.DepthwiseConv2D(3, strides=2, name="dw")(y)
    y = k.layers.Cropping2D(((1, 0), (0, 1)), name="crop")(y)
    y = k.layers.Conv2D(4, 1, name="conv")(y)
    k.Model(x, y).save(path)
    return path


def pads_and_slice_ends(onnx_path):
    import onnx as onnx_pkg
    from onnx import numpy_helper

    model = onnx_pkg.load(onnx_path)
    inits = {i.name: numpy_helper.to_array(i).tolist() for i in model.graph.initializer}
    return {"pads": [inits[n.input[1]] for n in model.graph.node if n.op_type == "Pad"],
            "slice_ends": [inits[n.input[2]] for n in model.graph.node if n.op_type == "Slice"]}


def export_fixed_gamma_net(prefix):
    """A Gluon BatchNorm(scale=False) with a gamma far from one (which MXNet ignores), then a conv."""
    import mxnet as mx

    mx.random.seed(0)
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(mx.gluon.nn.BatchNorm(scale=False, center=False), mx.gluon.nn.Conv2D(4, 3))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 8, 8)).astype("float32")
    net(mx.nd.array(x))
    bn = net[0]
    bn.gamma.set_data(mx.nd.full(3, 3.0))
    bn.running_mean.set_data(mx.nd.array([0.1, -0.2, 0.3]))
    bn.running_var.set_data(mx.nd.array([0.5, 1.5, 2.0]))
    expected = net(mx.nd.array(x)).asnumpy()
    net.export(prefix)
    return prefix + "-symbol.json", prefix + "-0000.params", x, expected


def stock_export(symbol, params, out):
    import mxnet as mx

    arrays = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(params).items()}
    mx.onnx.export_model(mx.sym.load(symbol), arrays, in_shapes=[(1, 3, 8, 8)], in_types=[np.float32],
                         onnx_file_path=out)
    return out


def onnx_plain_output(onnx_path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def save_grouped(path):
    from tensorflow import keras as k

    k.utils.set_random_seed(0)
    x = k.Input((8, 8, 8))
    y = k.layers.Conv2D(8, 3, groups=4, padding="same", name="gconv")(x)
    y = k.layers.Conv2D(8, 7, groups=8, padding="same", name="dwconv")(y)
    k.Model(x, y).save(path)
    return path


def conv_groups(onnx_path):
    import onnx as onnx_pkg

    return [next((a.i for a in n.attribute if a.name == "group"), 1)
            for n in onnx_pkg.load(onnx_path).graph.node if n.op_type == "Conv"]


def grouped_op_swapped_and_restored(h5):
    from tensorflow import keras as k

    from xvalidate.routes.onnx_steps import _plain_grouped_convolutions

    model = k.models.load_model(h5, compile=False)
    convs = [model.get_layer("gconv"), model.get_layer("dwconv")]
    with _plain_grouped_convolutions(model):
        inside = ["_jit_compiled_convolution_op" in vars(layer) for layer in convs]
    return {"inside": inside, "after": ["_jit_compiled_convolution_op" in vars(layer) for layer in convs]}


def save_dense_on_4d(path):
    from tensorflow import keras as k

    k.utils.set_random_seed(0)
    x = k.Input((6, 6, 3))
    y = k.layers.Dense(4, name="pointwise")(x)
    y = k.layers.Activation(k.activations.gelu, name="gelu")(y)  # exact GELU: an Erf
    k.Model(x, y).save(path)
    return path


def runtime_reshapes(onnx_path):
    import onnx as o

    model = o.load(onnx_path)
    constants = {i.name for i in model.graph.initializer}
    return sum(n.op_type == "Reshape" and n.input[1] not in constants for n in model.graph.node)


def fold_two_batch_entries():
    import onnx as o
    from onnx import TensorProto, helper

    from xvalidate.routes.onnx_shapes import fold_reshape_shapes

    nodes = [helper.make_node("Shape", ["x"], ["both"]),  # x is N x N: both entries follow the batch
             helper.make_node("Reshape", ["x", "both"], ["y"], name="target")]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "N"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    folded = fold_reshape_shapes(model)
    return {"folded": folded, "reshape_shape": model.graph.node[-1].input[1]}
