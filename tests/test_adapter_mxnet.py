"""The mxnet adapter, run in the mxnet worker: Gluon exports, Module checkpoints and in-memory
HybridBlocks; one bound pass captures every op output and equals a plain forward; bad input is refused."""
import numpy as np
import pytest

import xvalidate
from xvalidate.errors import InputFileError, InputShapeError, UnknownLayerError
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the mxnet worker
def small_block(seed: int = 0):
    """A hand-written HybridBlock: conv+relu, depthwise conv, BatchNorm (random statistics), a split
    into two halves added back together, global pooling, Dense. Initialized and run once, not hybridized."""
    import mxnet as mx
    from mxnet.gluon import nn

    class Small(nn.HybridBlock):
        def __init__(self):
            super().__init__(prefix="small_")
            with self.name_scope():
                self.conv = nn.Conv2D(8, 3, padding=1, activation="relu")
                self.dw = nn.Conv2D(8, 3, padding=1, groups=8, use_bias=False)
                self.bn = nn.BatchNorm()
                self.pool = nn.GlobalAvgPool2D()
                self.fc = nn.Dense(5)

        def hybrid_forward(self, F, x):
            h = self.bn(self.dw(self.conv(x)))
            a, b = F.split(h, num_outputs=2, axis=1, name="halves")
            return self.fc(self.pool(F.concat(a + b, a, dim=1, name="joined")))

    mx.random.seed(seed)
    net = Small()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 8, 8)))  # shapes the deferred parameters
    rng = np.random.default_rng(seed)
    net.bn.running_mean.set_data(mx.nd.array(rng.normal(0, 0.1, 8)))
    net.bn.running_var.set_data(mx.nd.array(rng.uniform(0.5, 1.5, 8)))
    return net


def save_small_block(directory: str, x: np.ndarray) -> dict:
    """The small block saved by the adapter (never run hybridized: `x` is the example), and its forward on `x`."""
    import mxnet as mx

    from xvalidate_adapters.mxnet import MXNetAdapter

    net = small_block()
    symbol = MXNetAdapter().save(net, directory, example=x)
    return {"symbol": symbol, "final": net(mx.nd.array(x)).asnumpy()}


def save_resnet18(prefix: str, x: np.ndarray) -> dict:
    """resnet18_v1 exported (no input hint beside it), its forward on `x`, and its op output count."""
    import mxnet as mx

    from xvalidate.models.gluon_zoo import save_resnet18 as export

    symbol = export(prefix, x.shape)
    net = mx.gluon.SymbolBlock.imports(symbol, ["data"], prefix + "-0000.params")
    internals = mx.sym.load(symbol).get_internals()
    variables = set(internals.list_arguments()) | set(internals.list_auxiliary_states())
    ops = [name for name in internals.list_outputs() if name not in variables]
    return {"symbol": symbol, "final": net(mx.nd.array(x)).asnumpy(), "ops": len(ops)}


def save_module_checkpoint(prefix: str, x: np.ndarray) -> dict:
    """A Module checkpoint (arg:/aux: keys, a SoftmaxOutput with its label) with a two-output op,
    and the Module's own forward on `x`."""
    import mxnet as mx

    mx.random.seed(1)
    data = mx.sym.var("data")
    h = mx.sym.BatchNorm(mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name="conv"), name="bn")
    parts = mx.sym.split(h, num_outputs=2, axis=1, name="parts")
    h = mx.sym.Activation(mx.sym.elemwise_mul(parts[0], parts[1], name="mul"), act_type="relu", name="act")
    h = mx.sym.Pooling(h, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool")
    logits = mx.sym.FullyConnected(mx.sym.flatten(h, name="flat"), num_hidden=3, name="fc")
    net = mx.sym.SoftmaxOutput(logits, name="softmax")
    module = mx.mod.Module(net, data_names=["data"], label_names=["softmax_label"])
    module.bind(data_shapes=[("data", x.shape)], for_training=False)
    module.init_params(mx.init.Xavier())
    module.save_checkpoint(prefix, 7)
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    return {"symbol": prefix + "-symbol.json", "final": module.get_outputs()[0].asnumpy()}


def save_unrun_block(directory: str, hybrid: bool) -> str:
    """The adapter's save() on a block that was never run (hybrid) or a plain Block; no example."""
    import mxnet as mx
    from mxnet.gluon import nn

    from xvalidate_adapters.mxnet import MXNetAdapter

    if hybrid:
        net = small_block()
        net.hybridize()  # hybridized after its one forward: its graph is not known
    else:
        net = nn.Sequential()
        net.add(nn.Dense(2))
        net.initialize()
        net(mx.nd.zeros((1, 3)))
    return MXNetAdapter().save(net, directory)


def load_in_memory(x: np.ndarray) -> dict:
    """The adapter loading a hybridized, once-run block directly (no example): capture vs forward."""
    import mxnet as mx

    from xvalidate_adapters.mxnet import MXNetAdapter

    net = small_block()
    net.hybridize()
    final = net(mx.nd.array(x)).asnumpy()
    adapter = MXNetAdapter()
    model = adapter.load(net)
    captured = adapter.run(model, x)
    return {"source": model.source, "diff": float(np.abs(list(captured.values())[-1] - final).max())}


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("mxnet_adapter")
    mxnet = get_worker("mxnet")
    x_small = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    x_resnet = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    x_module = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    (d / "small").mkdir()
    return {"small": mxnet.call("test_adapter_mxnet:save_small_block", str(d / "small"), x_small), "x_small": x_small,
            "resnet": mxnet.call("test_adapter_mxnet:save_resnet18", str(d / "resnet18_v1"), x_resnet),
            "x_resnet": x_resnet,
            "module": mxnet.call("test_adapter_mxnet:save_module_checkpoint", str(d / "module"), x_module),
            "x_module": x_module, "dir": d}


@pytest.mark.parametrize("name", ["small", "resnet", "module"])
def test_capture_equals_plain_forward(models, name):
    made, x = models[name], models["x_" + name]
    captured = xvalidate.run("mxnet", made["symbol"], x)
    layers = get_worker("mxnet").layers(made["symbol"])
    assert list(captured) == [info.name for info in layers]
    np.testing.assert_allclose(list(captured.values())[-1], made["final"], rtol=1e-5, atol=1e-6)


def test_resnet18_every_op_output_with_unknown_spatial_size(models):
    made = models["resnet"]
    captured = xvalidate.run("mxnet", made["symbol"], models["x_resnet"])
    assert len(captured) == made["ops"] == 68
    info = get_worker("mxnet").input_info(made["symbol"])
    assert (info.name, info.shape, info.layout) == ("data", (None, 3, None, None), "NCHW")  # no input hint
    layers = {i.name: i for i in get_worker("mxnet").layers(made["symbol"])}
    conv = layers["resnetv10_conv0_fwd"]
    assert conv.shape == (None, 64, None, None) and conv.layout == "NCHW" and conv.kinds == ["conv"]
    assert conv.attrs["kernel"] == [7, 7] and conv.attrs["strides"] == [2, 2] and conv.attrs["padding"] == [3, 3]
    assert layers["resnetv10_pool1_fwd"].shape == (None, 512, 1, 1) and layers["resnetv10_pool1_fwd"].kinds == ["gpool"]
    assert layers["resnetv10_dense0_fwd"].shape == (None, 1000) and layers["resnetv10_dense0_fwd"].layout == "NC"
    assert layers["resnetv10_stage1__plus0"].kinds == ["add"]
    assert layers["resnetv10_stage1__plus0"].inputs == ["resnetv10_pool0_fwd", "resnetv10_stage1_batchnorm1_fwd"]


def test_small_block_kinds_shapes_and_multi_output(models):
    layers = get_worker("mxnet").layers(models["small"]["symbol"])
    by_name = {i.name: i for i in layers}
    assert [(i.name, i.kinds) for i in layers] == [
        ("small_conv0_fwd", ["conv"]), ("small_conv0_relu_fwd", ["relu"]), ("small_conv1_fwd", ["dwconv"]),
        ("small_batchnorm0_fwd", ["bn"]), ("small_halves:0", ["other"]), ("small_halves:1", ["other"]),
        ("small__plus0", ["add"]), ("small_joined", ["concat"]), ("small_pool0_fwd", ["gpool"]),
        ("small_dense0_fwd", ["dense"])]
    assert by_name["small__plus0"].inputs == ["small_halves:0", "small_halves:1"]
    assert by_name["small_joined"].inputs == ["small__plus0", "small_halves:0"]
    assert by_name["small_halves:1"].shape == (None, 4, 8, 8) and by_name["small_joined"].shape == (None, 8, 8, 8)
    assert get_worker("mxnet").input_info(models["small"]["symbol"]).shape == (None, 3, 8, 8)  # the hint save() wrote
    symbol, x = models["small"]["symbol"], models["x_small"]
    asked = xvalidate.run("mxnet", symbol, x, layers=["small__plus0", "small_halves:1"])
    assert list(asked) == ["small_halves:1", "small__plus0"]
    np.testing.assert_allclose(asked["small__plus0"] - asked["small_halves:1"],
                               xvalidate.run("mxnet", symbol, x)["small_halves:0"], rtol=1e-5, atol=1e-6)


def test_module_checkpoint_with_label_and_params_path(models):
    params = str(models["dir"] / "module-0007.params")
    layers = get_worker("mxnet").layers(params)
    assert [i.name for i in layers] == ["conv", "bn", "parts:0", "parts:1", "mul", "act", "pool", "flat", "fc",
                                        "softmax"]
    assert [i.kinds[0] for i in layers] == ["conv", "bn", "other", "other", "mul", "relu", "maxpool", "flatten",
                                            "dense", "softmax"]
    assert get_worker("mxnet").input_info(params).name == "data"


def test_in_memory_blocks():
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    loaded = get_worker("mxnet").call("test_adapter_mxnet:load_in_memory", x)
    assert loaded["source"] == "gluon block 'small'" and loaded["diff"] <= 1e-6


def test_blocks_that_cannot_be_saved(tmp_path):
    with pytest.raises(InputFileError, match=r"gluon block 'small': its graph is not known yet; call hybridize\(\)"):
        get_worker("mxnet").call("test_adapter_mxnet:save_unrun_block", str(tmp_path), True)
    with pytest.raises(InputFileError, match=r"gluon block 'sequential\d+': a Block that is not a HybridBlock"):
        get_worker("mxnet").call("test_adapter_mxnet:save_unrun_block", str(tmp_path), False)


def test_bad_files(tmp_path, models):
    mxnet = get_worker("mxnet")
    with pytest.raises(InputFileError, match=r"missing-symbol\.json: no such model file"):
        mxnet.layers(str(tmp_path / "missing-symbol.json"))
    lonely = tmp_path / "lonely-symbol.json"
    lonely.write_text((models["dir"] / "module-symbol.json").read_text())
    with pytest.raises(InputFileError, match=r"lonely-symbol\.json: no lonely-NNNN\.params file beside it"):
        mxnet.layers(str(lonely))
    corrupt = tmp_path / "corrupt-symbol.json"
    corrupt.write_bytes(np.random.default_rng(0).bytes(256))
    (tmp_path / "corrupt-0000.params").write_bytes(b"\0" * 64)
    with pytest.raises(InputFileError, match=r"corrupt-symbol\.json: not a readable MXNet symbol file \(.+\)$"):
        mxnet.layers(str(corrupt))
    broken_params = tmp_path / "broken-symbol.json"
    broken_params.write_text(lonely.read_text())
    (tmp_path / "broken-0000.params").write_bytes(np.random.default_rng(1).bytes(256))
    with pytest.raises(InputFileError, match=r"broken-0000\.params: not a readable MXNet params file"):
        mxnet.layers(str(broken_params))
    with pytest.raises(InputFileError, match=r"model\.h5: unknown extension for an MXNet model"):
        mxnet.layers(str(tmp_path / "model.h5"))


def test_wrong_input_shape_and_unknown_layer(models):
    symbol = models["small"]["symbol"]
    with pytest.raises(InputShapeError, match=r"model-symbol\.json: input has shape \(1, 8, 8, 3\) but the model "
                                              r"expects \(None, 3, 8, 8\)$"):
        get_worker("mxnet").run(symbol, np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(InputShapeError, match=r"module-symbol\.json: cannot run on an input of shape "
                                              r"\(1, 3, 1, 1\) \(.*kernel size \(2\) exceeds input"):
        get_worker("mxnet").run(str(models["dir"] / "module-symbol.json"), np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(UnknownLayerError, match=r"model-symbol\.json: no layer 'nope'; it has 10 layers"):
        get_worker("mxnet").run(symbol, models["x_small"], layers=["nope"])
