import numpy as np

from xvalidate.core.diagnose import diagnose
from xvalidate.core.report import LayerResult
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(0)


def row(name="layer", passed=False, transform=None):
    return LayerResult(index=0, src=name, dst="d", match="structural", passed=passed, transform=transform)


def info(name, kinds, inputs=(), **attrs):
    return LayerInfo(name=name, op="op", kinds=list(kinds), inputs=list(inputs), attrs=attrs)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_missing_softmax():
    logits = rng.standard_normal((4, 2))
    cause = diagnose(row(), softmax(logits), logits, logits, info("fc", ["dense", "softmax"]))
    assert cause.startswith("activation") and "lacks the softmax" in cause


def test_extra_relu():
    x = rng.standard_normal((2, 5, 5, 3))
    cause = diagnose(row(), x, np.maximum(x, 0), np.maximum(x, 0), info("c", ["conv"]))
    assert "extra relu" in cause


def test_padding_from_shapes():
    src = rng.standard_normal((1, 80, 120, 128))
    dst_raw = rng.standard_normal((1, 128, 78, 118))
    cause = diagnose(row(), src, dst_raw, None, info("block1_conv1", ["conv", "relu"], kernel=(3, 3), padding="same"))
    assert cause.startswith("padding") and "78x118" in cause and "3x3 kernel" in cause and "padding=(1, 1)" in cause


def test_padding_from_border_values():
    src = rng.standard_normal((1, 6, 7, 4))
    dst = src.copy()
    dst[:, 0, :, :] += 1.0
    assert diagnose(row(), src, dst, dst, info("c", ["conv"])).startswith("padding: only the border")


def test_flatten_order_from_the_input_pair():
    src = rng.standard_normal((3, 2))
    dst = rng.standard_normal((3, 2))
    flat = row("flatten", passed=True, transform="flatten:NCHW->NHWC")
    cause = diagnose(row("fc"), src, dst, dst, info("fc", ["dense", "softmax"], ["flatten"]), None, {"flatten": flat})
    assert cause.startswith("flatten order") and "permute_flatten" in cause


def test_layout_permutation():
    src = rng.standard_normal((1, 4, 4, 4))
    dst = src.transpose(0, 3, 1, 2).copy()
    assert diagnose(row(), src, dst, dst, info("c", ["conv"])).startswith("layout")


def test_batchnorm_statistics_as_per_channel_affine():
    src = rng.standard_normal((2, 5, 5, 8))
    scale, shift = rng.uniform(0.5, 2, 8), rng.normal(0, 1, 8)
    dst = src * scale + shift
    cause = diagnose(row(), src, dst, dst, info("bn", ["bn"]))
    assert cause.startswith("batchnorm") and "BatchNorm" in cause


def test_weights_when_inputs_agree():
    src = rng.standard_normal((2, 10))
    dst = rng.standard_normal((2, 10)) * 5
    inputs_ok = {"prev": row("prev", passed=True)}
    assert diagnose(row(), src, dst, dst, info("fc", ["dense"], ["prev"]), None, inputs_ok).startswith("weights")


def test_small_error_is_numerical():
    src = rng.standard_normal((2, 10))
    assert diagnose(row(), src, src + 1e-5, src + 1e-5, info("fc", ["dense"])).startswith("numerical")
