"""Route keras-mxnet: Keras 2.2.4 on MXNet's backend, in a worker environment of its own (created
on first use in the tests' shared environment directory, see conftest)."""
import dataclasses
import json

import pytest

import xvalidate
from xvalidate.errors import UnsupportedLayerError
from xvalidate.routes.keras_mxnet import ENVIRONMENT, EXPORT, STEPS
from xvalidate.worker import get_env_worker, get_worker

SEED2_LAYERS = ["block1_conv1", "max_pooling2d", "block2_conv1", "max_pooling2d_1", "flatten", "final_fully_connected"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("kmx")
    keras = get_worker("keras")
    return {name: keras.call("xvalidate.models.keras_zoo:save", name, str(d / f"{name}.h5"))
            for name in ("seed2_cnn", "resnet_block")}


def test_seed2_passes_with_every_layer_paired_by_the_route_hints(models):
    report = xvalidate.validate(models["seed2_cnn"], src="keras", dst="mxnet", via="keras-mxnet", batch=2)
    assert report.passed, report.summary()
    assert [r.src for r in report.layers] == SEED2_LAYERS
    assert report.unmatched["src"] == []
    assert {r.match for r in report.layers} == {"name"}  # every pair from the route's hints
    assert report.layers[0].dst.startswith("leakyrelu")  # the conv's fused relu: the layer's output node
    assert report.layers[-1].metrics["max_abs"] < 1e-5 and report.layers[-1].metrics["top1"] == 1.0
    assert set(report.meta["conversion_seconds"]) == {"export", "to_mxnet"}
    assert report.artifacts["symbol"].endswith("model-symbol.json")


def test_batchnorm_keeps_its_gamma(models):
    """keras-mxnet builds MXNet BatchNorm with fix_gamma=True (gamma ignored); with the shim the route
    passes on a model with random BatchNorm gammas, without it xvalidate finds the fault at the first BN."""
    report = xvalidate.validate(models["resnet_block"], src="keras", dst="mxnet", via="keras-mxnet")
    assert report.passed, report.summary()
    assert report.unmatched["src"] == []

    out = models["resnet_block"] + ".unshimmed"
    exported = get_worker("keras").call(f"{EXPORT}:export_keras", models["resnet_block"], out + "/keras")
    built = get_env_worker(ENVIRONMENT).call(f"{STEPS}:build_mxnet", exported["config"], exported["weights"],
                                             out + "/mxnet", "resnet_block", keep_gamma=False)
    bns = [n for n in json.loads(open(built["symbol"]).read())["nodes"] if n["op"] == "BatchNorm"]
    assert bns and all("fix_gamma" not in n.get("attrs", {}) for n in bns)  # MXNet's default: True
    hints = {dst: (src, "name") for dst, src in built["hints"].items()}
    broken = xvalidate.compare(models["resnet_block"], built["symbol"], src="keras", dst="mxnet", hints=hints)
    first = broken.first_divergence
    assert not broken.passed and first.src == "stem_bn"
    assert first.cause.startswith("batchnorm") and "gamma" in first.cause


def test_batchnorm_without_scale_gets_gamma_ones(tmp_path):
    """tf.keras saves no gamma for scale=False (InceptionV3), keras-mxnet keeps one: it gets ones."""
    h5 = get_worker("keras").call("kmx_models:save", "noscale", str(tmp_path / "noscale.h5"))
    report = xvalidate.validate(h5, src="keras", dst="mxnet", via="keras-mxnet")
    assert report.passed, report.summary()
    assert [r.src for r in report.layers] == ["conv", "bn", "gap", "out"]
    assert report.layers[1].metrics["max_abs"] < 1e-5


@pytest.mark.parametrize("kind, layer, reason", [
    ("layernorm", "'norm' (LayerNormalization)", "has no LayerNormalization layer"),
    ("keepdims", "'gap' (GlobalAveragePooling2D)", "has no argument keepdims=True"),
])
def test_a_layer_keras_mxnet_lacks_is_named_with_another_route(tmp_path, kind, layer, reason):
    h5 = get_worker("keras").call("kmx_models:save", kind, str(tmp_path / f"{kind}.h5"))
    with pytest.raises(UnsupportedLayerError) as info:
        xvalidate.validate(h5, src="keras", dst="mxnet", via="keras-mxnet")
    message = str(info.value)
    assert "\n" not in message
    assert layer in message and reason in message and "via='mmdnn' or via='onnx'" in message


def test_three_routes_side_by_side(models, tmp_path):
    from rich.console import Console

    from xvalidate.report.routes import render_comparison

    comparison = xvalidate.compare_routes(models["seed2_cnn"], src="keras", dst="mxnet",
                                          via=("mmdnn", "onnx", "keras-mxnet"))
    rows = {row["route"]: row for row in comparison.summary()}
    assert list(rows) == ["mmdnn", "onnx", "keras-mxnet"] and comparison.errors == {}
    assert all(row["status"] == "pass" and row["unmatched_src"] == 0 for row in rows.values())
    assert all(row.get("keras-mxnet") is not None for row in comparison.table())
    console = Console(record=True, width=200)
    render_comparison(comparison, console)
    text = console.export_text()
    assert "keras-mxnet" in text.splitlines()[0] and "│ keras-mxnet │ pass" in text
    html = open(comparison.to_html(str(tmp_path / "routes.html"))).read()
    assert "Route keras-mxnet" in html and html.count("<h2>Route ") == 3


def test_the_shims_are_needed_and_sufficient(models, tmp_path):
    """Both shims, run where they apply: keras does not import without the collections alias, and
    Keras 2.2.4's h5 reader fails on tf.keras's attributes unless they read as bytes."""
    probe = get_env_worker(dataclasses.replace(ENVIRONMENT, modules=ENVIRONMENT.modules + ("kmx_probe",)))
    code, last = probe.call("kmx_probe:import_keras")
    assert code != 0 and "Iterable" in last  # with the alias it imports: layer_names below imports keras
    exported = get_worker("keras").call(f"{EXPORT}:export_keras", models["seed2_cnn"], str(tmp_path / "keras"))
    failed = probe.call("kmx_probe:layer_names", exported["weights"], False)
    assert isinstance(failed, str) and failed.startswith("AttributeError") and "decode" in failed
    assert probe.call("kmx_probe:layer_names", exported["weights"], True)[1:] == SEED2_LAYERS


@pytest.mark.slow
def test_resnet50_three_routes(tmp_path):
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "ResNet50", str(tmp_path / "r50.h5"))
    comparison = xvalidate.compare_routes(h5, src="keras", dst="mxnet", via=("mmdnn", "onnx", "keras-mxnet"))
    rows = {row["route"]: row for row in comparison.summary()}
    assert comparison.errors == {}
    assert rows["keras-mxnet"]["status"] == "pass" and rows["keras-mxnet"]["paired"] == 176
    assert rows["keras-mxnet"]["unmatched_src"] == 0
