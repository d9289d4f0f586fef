"""The coverage matrix as slow tests: the smallest member of every keras.applications family through
every Keras route, and every Gluon model-zoo vision net through mxnet->onnx. Slow: run with
`make test-all` (or -m slow). docs/coverage.md has the figures measured with benchmarks/coverage.py."""
import numpy as np
import pytest

import xvalidate
from xvalidate.models.gluon_zoo import VISION_NETS, input_shape
from xvalidate.models.keras_zoo import FAMILIES
from xvalidate.worker import get_worker

MIN_PAIRED = {("mmdnn", "ResNet50"): 150, ("mmdnn", "Xception"): 100, ("mmdnn", "EfficientNetB0"): 200,
              ("onnx", "ResNet50"): 100}
ROUTES = [("mmdnn", "mxnet"), ("onnx", "mxnet"), ("onnx", "onnx")]
SMALLEST = [members[0] for members in FAMILIES.values()]
# What a converter cannot convert: the error names the layer (or node) and the limitation.
LIMITS = {
    ("ConvNeXtTiny", "mmdnn", "mxnet"): r"layer 'convnext_tiny_stem' \(Sequential\) cannot be converted by route "
                                        r"'mmdnn': MMdnn's Keras parser has no handler for Sequential",
    ("ConvNeXtTiny", "onnx", "mxnet"): r"node '.*pointwise_conv.*' \(Reshape\) computes its target shape at run time",
}
# Correct conversions that the diff engine flags at a deep layer (float32 rounding judged element by
# element); their final outputs agree. See docs/coverage.md.
FLAGGED = {("RegNetX002", "mmdnn", "mxnet"), ("RegNetX002", "onnx", "mxnet"), ("RegNetX002", "onnx", "onnx"),
           ("ConvNeXtTiny", "onnx", "onnx"), ("InceptionResNetV2", "onnx", "mxnet"),
           ("InceptionResNetV2", "onnx", "onnx"), ("NASNetMobile", "onnx", "onnx")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix")
    return lambda name: get_worker("keras").call("xvalidate.models.keras_zoo:save", name, str(d / f"{name}.h5"))


@pytest.mark.slow
@pytest.mark.parametrize("via, dst", ROUTES)
@pytest.mark.parametrize("model", SMALLEST)
def test_application_converts_and_matches(built, model, via, dst):
    if (model, via, dst) in LIMITS:
        with pytest.raises(xvalidate.XValidateError, match=LIMITS[(model, via, dst)]):
            xvalidate.validate(built(model), src="keras", dst=dst, via=via, cache=False)
        return
    report = xvalidate.validate(built(model), src="keras", dst=dst, via=via, cache=False)
    final = max(report.layers, key=lambda row: row.index)
    assert final.index == report.meta["layers"]["src"] - 1 and final.passed
    assert final.metrics["max_abs"] < 1e-4
    if (model, via, dst) not in FLAGGED:
        assert report.passed, report.summary()
    assert len(report.layers) >= MIN_PAIRED.get((via, model), 0.5 * report.meta["layers"]["src"])


@pytest.mark.slow
@pytest.mark.parametrize("name", VISION_NETS)
def test_gluon_model_zoo_net_exports_to_onnx(tmp_path, name):
    symbol = get_worker("mxnet").call("xvalidate.models.gluon_zoo:save", name, str(tmp_path / name))
    x = np.random.default_rng(0).uniform(0.0, 1.0, input_shape(name)).astype(np.float32)
    report = xvalidate.validate(symbol, src="mxnet", dst="onnx", via="onnx", inputs=x, cache=False)
    assert report.passed, report.summary()
    assert report.layers[-1].metrics["max_abs"] < 1e-4
