"""The MMdnn route through validate(): small models end to end, artifacts, cache, unsupported layers.
The shims and the steps alone: test_mmdnn_shims.py, test_mmdnn_steps.py."""
import pytest

import xvalidate
from xvalidate.errors import UnsupportedLayerError
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the keras worker
def save_tiny(kind: str, path: str) -> str:
    from tensorflow import keras
    from tensorflow.keras import layers

    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3), name="input_1")
    if kind == "separable":
        x = layers.SeparableConv2D(8, 3, padding="same", name="sep1")(inp)
        x = layers.BatchNormalization(name="sep1_bn")(x)
        x = layers.SeparableConv2D(6, 3, strides=2, padding="same", activation="relu", name="sep2")(x)
    elif kind.startswith("efficient"):  # "efficient0": no Rescaling offset (tf2onnx folds it into the next layer)
        x = layers.Rescaling(1 / 255.0, offset=0.0 if kind == "efficient0" else 0.1, name="rescaling")(inp)
        norm = layers.Normalization(axis=-1, mean=[0.1, 0.2, 0.3], variance=[1.5, 2.0, 0.5], name="normalization")
        x = norm(x)
        x = layers.Conv2D(8, 3, padding="same", activation="swish", name="stem")(x)
        se = layers.GlobalAveragePooling2D(name="se_squeeze")(x)
        se = layers.Reshape((1, 1, 8), name="se_reshape")(se)
        se = layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
        x = layers.Multiply(name="se_excite")([x, se])
        x = layers.Activation(keras.activations.swish, name="act_fn")(x)
    elif kind == "avgpool":
        x = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
        x = layers.AveragePooling2D(3, strides=1, padding="same", name="avg")(x)
    elif kind == "lambda":
        x = layers.Conv2D(4, 3, name="conv")(inp)
        x = layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(5, activation="softmax", name="predictions")(x)
    keras.Model(inp, out).save(path)
    return path


@pytest.mark.parametrize("kind", ["separable", "efficient", "avgpool"])
def test_layers_mmdnn_lacks_convert_and_match(kind, tmp_path):
    h5 = get_worker("keras").call("test_mmdnn:save_tiny", kind, str(tmp_path / f"{kind}.h5"))
    report = xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", cache=False, batch=2)
    assert report.passed, report.summary()
    assert report.layers[-1].metrics["max_abs"] < 1e-5
    assert not report.unmatched["src"]
    if kind == "efficient":
        assert {r.src for r in report.layers} >= {"rescaling", "normalization", "stem", "se_reshape", "act_fn"}


def test_seed2_cnn_end_to_end_with_artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(tmp_path / "cache"))
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "s2.h5"))
    report = xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", keep=str(tmp_path / "keep"))
    assert report.passed and len(report.layers) == 6
    assert report.layers[-1].metrics["max_abs"] < 1e-6
    assert {r.match for r in report.layers} == {"name"}
    assert {"convert", "src_run", "dst_run", "diff"} <= set(report.timings)
    kept = {p.name for p in (tmp_path / "keep").iterdir()}
    assert {"ir.json", "ir.pb", "ir.npy", "mxnet_model.py", "model-symbol.json", "model-0000.params"} <= kept
    with pytest.raises(xvalidate.XValidateError, match=r"keep: .*keep is not empty; give a new or empty directory"):
        xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", keep=str(tmp_path / "keep"))
    again = xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn")
    assert again.meta["cache_hit"] and not report.meta["cache_hit"]
    assert again.timings["convert"] < report.timings["convert"] / 2


def test_a_lambda_layer_is_refused_with_a_hint(tmp_path):
    h5 = get_worker("keras").call("test_mmdnn:save_tiny", "lambda", str(tmp_path / "l.h5"))
    with pytest.raises(UnsupportedLayerError, match=r"layer 'double' \(Lambda\) cannot be converted by route "
                                                    r"'mmdnn'; try the ONNX route \(via='onnx'\)"):
        xvalidate.validate(h5, src="keras", dst="mxnet", via="mmdnn", cache=False, trust_model=True)


def test_route_refuses_other_pairs():
    with pytest.raises(xvalidate.XValidateError, match="via='mmdnn' cannot convert mxnet to onnx; it converts keras->mxnet"):
        xvalidate.validate("x-symbol.json", src="mxnet", dst="onnx", via="mmdnn")
