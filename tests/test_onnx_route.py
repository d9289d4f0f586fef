"""Route onnx end to end, and compare_routes."""
import numpy as np
import pytest

import xvalidate
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx_route")
    return get_worker("keras").call("xvalidate.models.keras_zoo:save", "resnet_block", str(d / "block.h5")), d


@pytest.mark.parametrize("dst", ["onnx", "mxnet"])
def test_keras_through_onnx_pairs_fused_batchnorm(block, dst):
    h5, _ = block
    report = xvalidate.validate(h5, src="keras", dst=dst, via="onnx", cache=False, batch=2)
    assert report.passed, report.summary()
    matches = {r.src: r.match for r in report.layers}
    assert matches["stem_bn"] == "fused" and matches["block_bn2"] == "fused"
    assert "stem_conv" in report.unmatched["src"]  # its output does not exist once BatchNorm is folded in
    assert len(report.layers) >= 9 and report.layers[-1].metrics["max_abs"] < 1e-5


def test_mxnet_to_onnx_from_a_gluon_export(block):
    _, d = block
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    made = get_worker("mxnet").call("test_adapters:save_resnet18", str(d / "resnet18_v1"), x)
    report = xvalidate.validate(made["symbol"], src="mxnet", dst="onnx", via="onnx", inputs=x, cache=False,
                                route_options={"input_shape": [1, 3, 64, 64]})
    assert report.passed, report.summary()
    assert len(report.layers) >= 60 and {r.match for r in report.layers} <= {"name", "normalized", "fused"}


@pytest.fixture(scope="module")
def zoo_net(tmp_path_factory):
    """mxnet.gluon.model_zoo's mobilenetv2_0.25 (pretrained=False), exported without an input shape."""
    d = tmp_path_factory.mktemp("gluon_zoo")
    return get_worker("mxnet").call("xvalidate.models.gluon_zoo:save", "mobilenetv2_0.25", str(d / "mnv2"))


def onnx_input_dims(path: str) -> list:
    import onnx

    return [d.dim_value or d.dim_param for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]


@pytest.mark.parametrize("shape", [(2, 3, 96, 96), (3, 96, 96)])
def test_mxnet_input_shape_comes_from_the_inputs(zoo_net, shape):
    """A Gluon export records no input shape: the inputs given (batched or one sample) supply it."""
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    report = xvalidate.validate(zoo_net, src="mxnet", dst="onnx", via="onnx", inputs=x, cache=False)
    assert report.passed, report.summary()
    assert report.inputs["shape"] == [1 if len(shape) == 3 else shape[0], 3, 96, 96]
    assert len(report.layers) >= 100 and report.layers[-1].metrics["max_abs"] < 1e-4
    dims = get_worker("onnx").call("test_onnx_route:onnx_input_dims", report.artifacts["onnx"])
    assert dims[1:] == [3, 96, 96]


def test_input_shape_option_overrides_the_inputs(zoo_net):
    x = np.zeros((1, 3, 96, 96), np.float32)
    with pytest.raises(xvalidate.XValidateError, match=r"expects \(None, 3, 64, 64\)"):  # the override is taken as given
        xvalidate.validate(zoo_net, src="mxnet", dst="onnx", via="onnx", inputs=x, cache=False,
                           route_options={"input_shape": [1, 3, 64, 64]})


def test_unknown_mxnet_input_size_without_inputs_asks_for_them(zoo_net):
    with pytest.raises(xvalidate.XValidateError, match=r"give inputs \(CLI: --input\) or the route option input_shape"):
        xvalidate.validate(zoo_net, src="mxnet", dst="onnx", via="onnx", cache=False)


def test_compare_routes_side_by_side(block, tmp_path):
    h5, _ = block
    comparison = xvalidate.compare_routes(h5, src="keras", dst="mxnet", via=("mmdnn", "onnx"), cache=False)
    assert comparison.passed and set(comparison.reports) == {"mmdnn", "onnx"}
    table = comparison.table()
    assert table[0]["layer"] == "stem_conv" and table[0]["onnx"] is None and table[0]["mmdnn"] is not None
    summary = {row["route"]: row for row in comparison.summary()}
    assert summary["mmdnn"]["paired"] > summary["onnx"]["paired"]
    assert comparison.to_html(str(tmp_path / "c.html")).endswith("c.html")


def test_compare_routes_goes_on_when_one_route_cannot_convert(tmp_path):
    h5 = get_worker("keras").call("test_mmdnn:save_tiny", "lambda", str(tmp_path / "lambda.h5"))
    comparison = xvalidate.compare_routes(h5, src="keras", dst="mxnet", cache=False, trust_model=True)
    assert "mmdnn" in comparison.errors and "Lambda" in comparison.errors["mmdnn"]
    assert comparison.reports["onnx"].passed and not comparison.passed


def test_preprocessing_before_the_first_transpose_keeps_the_keras_input_layout(tmp_path):
    """Rescaling/Normalization run on the NHWC input before tf2onnx's first transpose: the MXNet model
    imported from ONNX then takes NHWC input, recorded beside its symbol."""
    h5 = get_worker("keras").call("test_mmdnn:save_tiny", "efficient0", str(tmp_path / "eff.h5"))
    report = xvalidate.validate(h5, src="keras", dst="mxnet", via="onnx", cache=False)
    assert report.passed, report.summary()
    assert get_worker("mxnet").input_info(report.dst_model).layout == "NHWC"
