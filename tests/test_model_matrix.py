"""The keras.applications matrix through every route. Slow: run with `make test-all` (or -m slow).
docs/coverage.md has the figures measured with benchmarks/coverage.py."""
import pytest

import xvalidate
from xvalidate.models.keras_zoo import APPLICATIONS
from xvalidate.worker import get_worker

MIN_PAIRED = {("mmdnn", "ResNet50"): 150, ("mmdnn", "Xception"): 100, ("mmdnn", "EfficientNetB0"): 200,
              ("onnx", "ResNet50"): 100}
ROUTES = [("mmdnn", "mxnet"), ("onnx", "mxnet"), ("onnx", "onnx")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix")
    return lambda name: get_worker("keras").call("xvalidate.models.keras_zoo:save", name, str(d / f"{name}.h5"))


@pytest.mark.slow
@pytest.mark.parametrize("via, dst", ROUTES)
@pytest.mark.parametrize("model", APPLICATIONS)
def test_application_converts_and_matches(built, model, via, dst):
    report = xvalidate.validate(built(model), src="keras", dst=dst, via=via, cache=False)
    assert report.passed, report.summary()
    assert report.layers[-1].metrics["max_abs"] < 1e-5
    assert len(report.layers) >= MIN_PAIRED.get((via, model), 0.5 * report.meta["layers"]["src"])
