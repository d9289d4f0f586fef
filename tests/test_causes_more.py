"""Cause checks added for the converter bugs people hit: kernels transposed or flipped (from the two
sides' kernels), and every activation a destination may lack or add; each fires on its case and
holds back on a near miss."""
import numpy as np
import pytest

from xvalidate.core.causes.activation import ACTIVATIONS, missing
from xvalidate.core.diagnose import diagnose
from xvalidate.core.report import LayerResult
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(3)
X = rng.standard_normal((2, 6, 6, 5)) * 3
K = rng.standard_normal((4, 3, 3, 3))  # (out, in, kh, kw)


def row():
    return LayerResult(index=0, src="layer", dst="d", match="name", passed=False)


def conv_info(kinds=("conv",)):
    return LayerInfo(name="layer", op="Conv2D", layout="NHWC", kinds=list(kinds), inputs=["prev"],
                     attrs={"kernel": [3, 3], "strides": [1, 1], "padding": "same"})


OK_INPUT = {"prev": LayerResult(index=0, src="prev", dst="p", match="name", passed=True)}


def kernel_cause(src_kernel, dst_kernel):
    dst = rng.standard_normal(X.shape)  # outputs that no tensor check explains
    return diagnose(row(), X, dst, dst, conv_info(), None, OK_INPUT, (src_kernel, dst_kernel))


def test_kernel_transposed_even_when_a_batchnorm_is_folded_into_it():
    folded = K.transpose(0, 1, 3, 2) * rng.uniform(0.5, 2, 4)[:, None, None, None]
    said = kernel_cause(K, folded)
    assert said.startswith("kernel transposed") and "3x3" in said and "Conv2D 'layer'" in said


def test_kernel_flipped():
    assert kernel_cause(K, K[:, :, ::-1, ::-1]).startswith("kernel flipped")


@pytest.mark.parametrize("dst_kernel", [K + 0.3 * rng.standard_normal(K.shape), K], ids=["noise", "same"])
def test_kernel_checks_hold_back(dst_kernel):
    assert kernel_cause(K, dst_kernel).startswith("weights")


def test_symmetric_kernels_are_not_called_transposed():
    sym = K + K.transpose(0, 1, 3, 2)
    assert kernel_cause(sym, sym.transpose(0, 1, 3, 2) * 2).startswith("weights")


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n != "softmax"])
def test_each_activation_lacking_and_added(name):
    fn = ACTIVATIONS[name]
    before = X
    assert missing(before, fn(before)) in (name, *_equivalent(name))
    said = diagnose(row(), fn(before), before, before, conv_info(("conv", "act")), None, OK_INPUT)
    assert said.startswith("activation: the destination lacks"), said
    said = diagnose(row(), before, fn(before), fn(before), conv_info(), None, OK_INPUT)
    assert said.startswith("activation: the destination applies an extra"), said


def _equivalent(name):
    """Activations that agree on these values within the checks' tolerance (relu and relu6 below 6...)."""
    return {"relu": ("relu6",), "relu6": ("relu",), "gelu": ("gelu (tanh approximation)",),
            "gelu (tanh approximation)": ("gelu",)}.get(name, ())


def test_a_scaled_output_is_not_an_activation():
    assert missing(X, X * 1.5) is None and missing(X, X + 0.2) is None


def test_small_noise_on_a_feature_map_is_numerical_not_a_per_channel_scale():
    src = rng.standard_normal((2, 6, 6, 6))
    dst = src + 1e-5 * rng.standard_normal(src.shape)
    said = diagnose(row(), src, dst, dst, conv_info(), None, OK_INPUT)
    assert said.startswith("numerical"), said
