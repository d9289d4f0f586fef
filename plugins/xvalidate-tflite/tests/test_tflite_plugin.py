"""The tflite plugin: keras -> tflite (TFLiteConverter, float32) compared layer by layer, every
tensor of the interpreter captured in one invoke. Models are built by a keras worker, seeded."""
import pytest

import xvalidate
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")

    def build(name: str) -> str:
        path = str(out / f"{name}.h5")
        get_worker("keras").call("xvalidate.models.keras_zoo:save", name, path)
        return path
    return build


def test_the_plugin_is_found_through_its_entry_points():
    assert "tflite" in xvalidate.adapters() and "tflite" in xvalidate.route_names()


@pytest.mark.parametrize("name", ["seed2_cnn", "resnet_block"])
def test_keras_to_tflite_passes_with_layers_paired_by_name(h5, name):
    report = xvalidate.validate(h5(name), src="keras", dst="tflite", via="tflite", batch=2, cache=False)
    assert report.passed, report.summary()
    assert report.artifacts["tflite"].endswith(".tflite")
    by_name = [row for row in report.layers if row.match in ("name", "fused")]
    assert len(by_name) >= 4
    assert report.layers[-1].metrics["max_abs"] < 1e-4


def test_every_op_output_is_captured_in_one_invoke(h5, tmp_path):
    conversion = xvalidate.validate(h5("seed2_cnn"), src="keras", dst="tflite", via="tflite", cache=False)
    path = conversion.artifacts["tflite"]
    infos = get_worker("tflite").layers(path)
    import numpy as np

    x = np.random.default_rng(0).random((3, *get_worker("tflite").input_info(path).shape[1:]), dtype=np.float32)
    outputs = xvalidate.run("tflite", path, x)
    assert list(outputs) == [info.name for info in infos]
    assert {"conv", "maxpool", "dense"} <= {info.kinds[0] for info in infos}
    assert all(a.shape[0] == 3 for a in outputs.values() if a.ndim)


@pytest.mark.slow
def test_resnet50_keras_to_tflite_passes(h5):
    report = xvalidate.validate(h5("ResNet50"), src="keras", dst="tflite", via="tflite", cache=False)
    assert report.passed, report.summary()
