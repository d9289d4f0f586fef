"""The strided-padding cause check: a stride-2 'same' window whose odd extra row/column the destination
puts at the top/left (TensorFlow: bottom/right) is recognised by recomputing the layer on its input.
The expected outputs here come from plain loops, independent of the check's own numpy windows."""
import numpy as np
import pytest

from xvalidate.core.diagnose import diagnose
from xvalidate.core.report import LayerResult
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(11)
X = rng.standard_normal((2, 8, 8, 3))            # NHWC, even sizes: a stride-2 3x3 'same' pads 1 in all
KERNEL = rng.standard_normal((4, 3, 3, 3))       # (out, in, kh, kw)
DEPTHWISE = rng.standard_normal((6, 1, 3, 3))    # 3 channels x multiplier 2
BIAS = rng.standard_normal(4)


def windows(n, k, s, before):
    """[(first, last)] input rows of each output row, clipped to the input."""
    out = -(-n // s)
    return [(max(i * s - before, 0), min(i * s - before + k, n)) for i in range(out)]


def pool(x, op, top, left, k=3, s=2):
    rows, cols = windows(x.shape[1], k, s, top), windows(x.shape[2], k, s, left)
    y = np.zeros((x.shape[0], len(rows), len(cols), x.shape[3]))
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            block = x[:, r0:r1, c0:c1, :]
            y[:, i, j] = block.max(axis=(1, 2)) if op == "max" else block.mean(axis=(1, 2))
    return y


def conv(x, kernel, top, left, s=2, bias=0.0):
    out, per_group, kh, kw = kernel.shape
    groups = x.shape[3] // per_group
    ho, wo = -(-x.shape[1] // s), -(-x.shape[2] // s)
    y = np.zeros((x.shape[0], ho, wo, out)) + bias
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    r, c = i * s - top + a, j * s - left + b
                    if 0 <= r < x.shape[1] and 0 <= c < x.shape[2]:
                        for o in range(out):
                            g = o // (out // groups)
                            y[:, i, j, o] += x[:, r, c, g * per_group:(g + 1) * per_group] @ kernel[o, :, a, b]
    return y


def info(kinds, **attrs):
    return LayerInfo(name="pool", op="Op", layout="NHWC", kinds=list(kinds), inputs=["prev"],
                     attrs={"padding": "same", "strides": [2, 2], **attrs})


def cause(src, dst, layer, x=X, kernels=None):
    row = LayerResult(index=0, src="pool", dst="d", match="name", passed=False)
    prev = {"prev": LayerResult(index=0, src="prev", dst="p", match="name", passed=True)}
    return diagnose(row, src, dst, dst, layer, None, prev, kernels=kernels, x=x)


@pytest.mark.parametrize("op, kind", [("max", "maxpool"), ("avg", "avgpool")])
def test_a_pooling_padded_top_left_is_named(op, kind):
    said = cause(pool(X, op, 0, 0), pool(X, op, 1, 1), info([kind], pool_size=[3, 3]))
    assert said.startswith("padding placement:") and "stride 2x2" in said
    assert "top/bottom 1/0 where the source pads 0/1" in said and "(0, 1, 0, 1)" in said


def test_one_axis_moved_is_named_alone():
    said = cause(pool(X, "max", 0, 0), pool(X, "max", 1, 0), info(["maxpool"], pool_size=[3, 3]))
    assert "top/bottom 1/0" in said and "left/right" not in said


@pytest.mark.parametrize("kernel, bias", [(KERNEL, BIAS), (DEPTHWISE, 0.0)], ids=["conv", "depthwise"])
def test_a_convolution_padded_top_left_is_named_through_its_kernel(kernel, bias):
    kinds = ["conv"] if kernel is KERNEL else ["dwconv"]
    src, dst = conv(X, kernel, 0, 0, bias=bias), conv(X, kernel, 1, 1, bias=bias)
    said = cause(src, dst, info(kinds, kernel=[3, 3]), kernels=(kernel, kernel))
    assert said.startswith("padding placement:"), said


def test_a_convolution_folded_into_its_batchnorm_is_recomputed_with_the_folded_kernel():
    scale, shift = rng.uniform(0.5, 2.0, 4), rng.normal(0, 1, 4)
    src, dst = (conv(X, KERNEL, p, p) * scale + shift for p in (0, 1))
    bn = LayerInfo(name="bn", op="BatchNormalization", layout="NHWC", kinds=["bn"], inputs=["conv"], attrs={})
    folded = KERNEL * scale[:, None, None, None]
    row = LayerResult(index=1, src="bn", dst="conv_bn", match="fused", passed=False)
    said = diagnose(row, src, dst, dst, bn, None, {}, kernels=(KERNEL, folded), folded=info(["conv"], kernel=[3, 3]),
                    x=X)
    assert said.startswith("padding placement:") and "folded with" in said, said


def test_other_weights_are_not_padding():
    src, dst = conv(X, KERNEL, 0, 0), conv(X, KERNEL * 1.3, 0, 0)
    said = cause(src, dst, info(["conv"], kernel=[3, 3]), kernels=(KERNEL, KERNEL))
    assert not said.startswith("padding placement"), said


def test_symmetric_padding_has_no_placement_to_blame():
    x = X[:, :7, :7]                               # 7 -> 4 with a 3x3 stride 2: one row on each side
    src, dst = pool(x, "max", 1, 1), pool(x, "max", 1, 1) + rng.standard_normal((2, 4, 4, 3))
    said = cause(src, dst, info(["maxpool"], pool_size=[3, 3]), x=x)
    assert not said.startswith("padding placement"), said


def test_without_the_input_or_a_stride_nothing_is_claimed():
    src, dst = pool(X, "max", 0, 0), pool(X, "max", 1, 1)
    assert not cause(src, dst, info(["maxpool"], pool_size=[3, 3]), x=None).startswith("padding placement")
    unstrided = info(["maxpool"], pool_size=[3, 3], strides=[1, 1])
    assert not cause(src, dst, unstrided).startswith("padding placement")


def test_the_first_layer_is_diagnosed_from_the_models_input():
    """A layer that lists no input reads the model's only input: the Differ keeps it for the diagnosis."""
    from xvalidate.core.align import Alignment, Pair
    from xvalidate.core.diff import Differ

    layer = LayerInfo(name="pool", op="MaxPooling2D", shape=(None, 4, 4, 3), layout="NHWC", kinds=["maxpool"],
                      inputs=[], attrs={"padding": "same", "strides": [2, 2], "pool_size": [3, 3]})
    differ = Differ([layer], [layer], Alignment([Pair("pool", "pool", "name")]), lambda name: (1e-4, 1e-3))
    differ.add({"pool": pool(X, "max", 0, 0)}, {"pool": pool(X, "max", 1, 1)}, inputs={"image": X})
    rows, roots = differ.finish()
    assert [r.src for r in roots] == ["pool"] and roots[0].cause.startswith("padding placement:")


def test_a_valid_window_behind_a_zero_padding_is_named():
    """keras.applications writes a stride 2 as ZeroPadding2D((0, 1), (0, 1)) and a 'valid' window; a converter
    that fuses the two may put the zero row/column first."""
    padded = np.pad(X, ((0, 0), (0, 1), (0, 1), (0, 0)))
    src, dst = conv(padded, KERNEL, 0, 0, bias=BIAS)[:, :4, :4], conv(np.pad(X, ((0, 0), (1, 0), (1, 0), (0, 0))),
                                                                      KERNEL, 0, 0, bias=BIAS)[:, :4, :4]
    layer = info(["conv"], kernel=[3, 3], padding="valid")
    said = cause(src, dst, layer, x=padded, kernels=(KERNEL, KERNEL))
    assert said.startswith("padding placement:") and "(0, 1, 0, 1)" in said, said
    unpadded = cause(src, dst, layer, x=X[:, :8, :8] + 1.0, kernels=(KERNEL, KERNEL))  # no zero end row/column
    assert not unpadded.startswith("padding placement"), unpadded
