"""Planted faults in correct keras->onnx conversions: the first root is the planted layer, the
cause names the planted kind, and several faults at once are all named as roots (the small cases
of benchmarks/faults.py; `make faults` runs the whole matrix)."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import xvalidate
from xvalidate.cache import convert_cached
from xvalidate.worker import get_worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import plant_onnx as plant  # noqa: E402


def _converted(tmp_path_factory, name):
    """A small model, its correct ONNX conversion and that conversion's name hints."""
    h5 = str(tmp_path_factory.mktemp("faults") / f"{name}.h5")
    get_worker("keras").call("xvalidate.models.keras_zoo:save", name, h5)
    return h5, convert_cached("onnx", h5, "keras", "onnx", {})


@pytest.fixture(scope="module")
def resnet_block(tmp_path_factory):
    return _converted(tmp_path_factory, "resnet_block")


@pytest.fixture(scope="module")
def branchy(tmp_path_factory):
    return _converted(tmp_path_factory, "branchy_cnn")


def _compare_planted(converted, tmp_path, *plants):
    h5, conversion = converted
    model = onnx.load(conversion.dst_source)
    rng = np.random.default_rng(0)
    for planter, target in plants:
        planter(model, target if ":" in target else plant.node_by_name(model, target), rng)  # a tensor, or a node
    path = tmp_path / "planted.onnx"
    onnx.save(model, str(path))
    return xvalidate.compare(h5, str(path), src="keras", dst="onnx", hints=conversion.hints)


def test_the_correct_conversion_passes_with_every_layer_paired_or_explained(resnet_block):
    h5, conversion = resnet_block
    report = xvalidate.compare(h5, conversion.dst_source, src="keras", dst="onnx", hints=conversion.hints)
    assert report.passed and report.roots == []
    assert set(report.unmatched["src"]) == set(report.unmatched_reasons)  # every gap says why
    assert all("folded into the layer after it" in report.unmatched_reasons[n] for n in report.unmatched["src"])


CASES = [
    (plant.kernel_transposed, "resnet_block/block_conv1/Conv2D", {"block_bn1", "block_conv1"}, "kernel transposed"),
    (plant.channels_swapped, "resnet_block/block_conv2/Conv2D", {"block_bn2", "block_conv2"}, "channel order"),
    (plant.folded_bn_scaled, "resnet_block/stem_conv/Conv2D", {"stem_bn", "stem_conv"}, "batchnorm"),
    (plant.padding_moved, "resnet_block/block_conv1/Conv2D", {"block_bn1", "block_conv1"}, "padding placement"),
    (plant.zero_input, "resnet_block/block_conv2/Conv2D", {"block_bn2", "block_conv2"}, "constant input"),
    (plant.nan_bias, "resnet_block/stem_conv/Conv2D", {"stem_bn", "stem_conv"}, "nan/inf"),
    (plant.activation_dropped, "resnet_block/block_relu1/Relu", {"block_relu1"}, "activation: the destination lacks"),
    (plant.activation_dropped, "resnet_block/block_out/Relu", {"block_out"}, "activation: the destination lacks"),
    (plant.relu_added, "resnet_block/block_bn2/FusedBatchNormV3:0", {"block_add", "block_bn2"}, "activation: the destination applies an extra relu"),
    (plant.weights_noise, "resnet_block/block_conv2/Conv2D", {"block_bn2", "block_conv2"}, "weights"),
]


@pytest.mark.parametrize("planter, target, layers, cause", CASES, ids=[c[3].split(":")[0] + "-" + c[1].split("/")[1] for c in CASES])
def test_planted_fault_is_named_at_its_layer_with_its_cause(resnet_block, tmp_path, planter, target, layers, cause):
    report = _compare_planted(resnet_block, tmp_path, (planter, target))
    assert not report.passed
    assert report.first_divergence.src in layers, report.summary()
    assert report.first_divergence.cause.startswith(cause), report.first_divergence.cause


@pytest.mark.parametrize("planter, target, layers, cause", [
    (plant.avgpool_counts_padding, "branchy_cnn/right_pool/AvgPool", {"right_pool"}, "average pooling"),
    (plant.axes_swapped, "branchy_cnn/left_relu/Relu:0", {"join", "left_relu"}, "layout"),
    (plant.activation_dropped, "branchy_cnn/stem_conv/Relu", {"stem_conv"}, "activation: the destination lacks"),
], ids=["avgpool", "layout", "fused-relu"])
def test_planted_fault_in_a_branch(branchy, tmp_path, planter, target, layers, cause):
    report = _compare_planted(branchy, tmp_path, (planter, target))
    assert report.first_divergence.src in layers, report.summary()
    assert report.first_divergence.cause.startswith(cause), report.first_divergence.cause
    assert len(report.roots) == 1


def test_a_fault_upstream_is_the_only_root_of_what_it_spoils(resnet_block, tmp_path):
    report = _compare_planted(resnet_block, tmp_path, (plant.kernel_transposed, "resnet_block/stem_conv/Conv2D"),
                              (plant.channels_swapped, "resnet_block/block_conv2/Conv2D"))
    assert sum(not r.passed for r in report.layers) >= 5
    assert [r.src for r in report.roots] == ["stem_bn"]  # the second fault hides behind the first


def test_faults_in_two_branches_are_both_roots(branchy, tmp_path):
    report = _compare_planted(branchy, tmp_path, (plant.kernel_transposed, "branchy_cnn/left_conv/Conv2D"),
                              (plant.channels_swapped, "branchy_cnn/right_conv/Conv2D"))
    roots = [r.src for r in report.roots]
    assert sorted(roots) == ["left_bn", "right_bn"], report.summary()
    assert [r.index for r in report.roots] == sorted(r.index for r in report.roots)  # in source order
    assert report.first_divergence is report.roots[0]
    causes = {r.src: r.cause for r in report.roots}
    assert causes["left_bn"].startswith("kernel transposed") and causes["right_bn"].startswith("channel order")
    assert "other roots of divergence (1" in report.summary()
    data = report.to_dict()
    assert data["schema_version"] == 3 and [r["src"] for r in data["roots"]] == roots
