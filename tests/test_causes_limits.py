"""The edges of each cause check: the smallest tensors and kernels a check still reads, the largest
gap that is still padding, the ranks an axis-order check tries, the positions a border check may
ignore (one row and column, no more), and the last words of each sentence (the fix it proposes)."""
import numpy as np
import pytest

from xvalidate.core.causes import channels, kernel, layout, lstm_gates, padding, pooling, scale, values
from xvalidate.core.causes.evidence import Evidence, close
from xvalidate.core.diagnose import diagnose
from xvalidate.core.report import LayerResult
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(43)
X = rng.standard_normal((2, 8, 8, 6))
SHIFT_FIX = ("give the destination explicit pads [top, left, bottom, right] that match the source")


def info(kinds=("conv",), layout="NHWC", inputs=(), op="Conv2D", **attrs):
    return LayerInfo(name="layer", op=op, layout=layout, kinds=list(kinds), inputs=list(inputs), attrs=attrs)


def ev(src, dst, src_info=None, **kwargs):
    return Evidence(np.asarray(src, np.float64), None if dst is None else np.asarray(dst, np.float64),
                    dst if dst is not None else src, src_info or info(), **kwargs)


def test_padding_checks_at_their_smallest_sizes():
    four = X[:, :4, :4]
    assert padding.shift(ev(four, np.roll(four, -1, axis=1))).endswith(SHIFT_FIX)
    three = X[:, :3, :3].copy()
    changed = three.copy()
    changed[:, 0] += 1
    assert padding.border(ev(three, changed)).endswith(
        "differ: the two sides pad differently (the amount, or where the extra row/column goes for an even kernel or "
        "a stride)")
    # without a layout, a 4-D tensor is read as NHWC
    assert padding.shift(ev(X, np.roll(X, -1, axis=2), info(layout="none"))).startswith(
        "padding placement: the destination output of Conv2D 'layer' is the source's shifted by 1 column")


@pytest.mark.parametrize("where", [(slice(None), slice(None), 1), (slice(None), slice(None), -2),
                                   (slice(None), 1), (slice(None), -2)])
def test_border_checks_ignore_one_row_and_column_only(where):
    changed = X.copy()
    changed[:, 0] += 1
    changed[where] += 1  # the second row or column from an edge differs too: not only the border
    assert padding.border(ev(X, changed)) is None
    pooled = X.copy()
    for index in ((slice(None), 0), (slice(None), -1), (slice(None), slice(None), 0), (slice(None), slice(None), -1)):
        pooled[index] *= 2 / 3
    pooled[where] += 1
    assert pooling.check(ev(X, pooled, info(["avgpool"]))) is None


@pytest.mark.parametrize("s, d, said", [
    ((2, 18, 20, 6), (2, 8, 10, 6), "is 8x10 where the source's is 18x20, 10x10 smaller"),
    ((2, 19, 20, 6), (2, 8, 10, 6), "shape: the source output has shape (19, 20, 6)"),  # 11 rows: too many
    ((2, 18, 21, 6), (2, 8, 10, 6), "shape: the source output has shape (18, 21, 6)"),
    ((2, 8, 10, 6), (2, 8, 8, 6), "shape: the source output has shape (8, 10, 6)"),     # rows equal: not padding
    ((2, 10, 8, 6), (2, 8, 8, 6), "shape: the source output has shape (10, 8, 6)"),
    ((2, 8, 10, 6), (2, 8, 12, 6), "shape: the source output has shape (8, 10, 6)"),    # larger on one side only
    ((2, 8, 10, 6), (2, 10, 10, 6), "shape: the source output has shape (8, 10, 6)"),
    ((2, 8, 10, 6), (2, 9, 12, 6), "is 9x12, larger than the source's 8x10: the destination pads more"),
    ((2, 8, 8, 6), (2, 4, 16, 6), "shape: the source output has shape (8, 8, 6)"),      # same size, other dims
    ((2, 8, 8, 6), (2, 6, 8, 8), "hold the same dimensions in another order: the destination reads the data in "
                                 "another layout (NHWC vs NCHW)"),
])
def test_shape_causes_at_their_limits(s, d, said):
    assert said in padding.shape_cause(np.zeros(s), np.zeros(d), info(), None)


def test_the_kernel_border_is_named_only_when_it_explains_both_gaps():
    s = np.zeros((2, 10, 12, 6))
    said = padding.shape_cause(s, np.zeros((2, 8, 8, 6)), info(kernel=(3, 5)), None)
    assert "is 8x8 where the source's is 10x12, 2x4 smaller, the border of its 3x5 kernel" in said
    said = padding.shape_cause(s, np.zeros((2, 8, 8, 6)), info(kernel=(5, 3)), None)
    assert "kernel" not in said.split("smaller")[1].split(":")[0]
    said = padding.shape_cause(np.zeros((2, 8, 8, 6)), np.zeros((2, 6, 6, 6)), info(kernel=(3, 3, 3)), None)
    assert "kernel" not in said.split("smaller")[1].split(":")[0]  # a 3-D kernel says nothing about 2-D borders


@pytest.mark.parametrize("shape", [(4, 3, 2, 1), (4, 3, 1, 2), (4, 3, 3, 1)])
def test_a_flipped_kernel_of_one_row_or_column(shape):
    k = rng.standard_normal(shape)
    said = kernel.check(ev(X, rng.standard_normal(X.shape), kernels=(k, k[:, :, ::-1, ::-1])))
    assert said.startswith(f"kernel flipped: the destination's {shape[2]}x{shape[3]} kernel") and said.endswith(
        "(convolution vs cross-correlation): flip it when copying it")


def test_kernel_sentences_end_with_the_fix_and_3d_kernels_are_left_alone():
    k = rng.standard_normal((4, 3, 3, 3))
    said = kernel.check(ev(X, X, kernels=(k, k.transpose(0, 1, 3, 2))))
    assert said.endswith("with its two spatial axes swapped (HWIO read as WHIO): transpose the kernel's spatial axes "
                         "when copying it")
    assert kernel.check(ev(X, X, kernels=(k[0], k[0][:, ::-1]))) is None


def test_average_pooling_without_a_layout_and_a_small_factor():
    pooled = X.copy()
    for index in ((slice(None), 0), (slice(None), -1), (slice(None), slice(None), 0), (slice(None), slice(None), -1)):
        pooled[index] *= 1.2
    said = pooling.check(ev(X, pooled, info(["avgpool"], layout="none")))
    assert "(1.44 at the corner): the source counts the padded zeros" in said


def test_a_per_channel_scale_at_its_smallest():
    two = X[..., :2]
    assert "(1 of 2 channels" in scale.check(ev(two, two * [1.0, 2.0]))
    three = X[:1, :1, :3]  # three positions are enough to fit a scale and a shift
    assert "(1 of 6 channels" in scale.check(ev(three, three * [1.0, 1, 1, 1, 1, 3]))
    flat = X[:, 0, 0, :]   # (N, C) with N == 2: too few positions
    assert scale.check(ev(flat, flat * 2, info(layout="NC"))) is None
    dense = X.reshape(-1, 6)
    assert "(2 of 6 channels" in scale.check(ev(dense, dense * [1.0, 1, 1, 1, 2, 2], info(["dense"], layout="NC")))
    flat_channel = X.copy()
    flat_channel[..., 0] = 1.0  # a constant source channel cannot be fitted: it is not counted as scaled
    said = scale.check(ev(flat_channel, flat_channel * [1.0, 2, 1, 1, 1, 1]))
    assert "(1 of 6 channels" in said
    said = scale.check(ev(X, X * 2, info(["bn"], op="BatchNormalization")))
    assert "its moving mean/variance, epsilon or gamma/beta differ; copy them exactly" in said


def test_constant_output_at_its_smallest_rank_and_a_narrow_source():
    src = rng.uniform(1.0, 1.5, (2, 5, 3))  # NWC; the source varies by less than its magnitude
    const = np.broadcast_to([0.3, 0.2, 0.1], src.shape)
    said = values.constant(ev(src, const, info(layout="NWC")))
    assert said.endswith("position (per channel, equal to its bias): its input on the destination side is all zeros "
                         "or constant; check what feeds this layer in the destination")


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 2, 2)])
def test_axis_order_in_three_and_five_dimensions(shape):
    x = rng.standard_normal(shape)
    moved = np.moveaxis(x, -1, 1).reshape(shape)
    assert layout.axes(ev(x, moved, info(layout="none"))).endswith("transpose the input or the weights to the "
                                                                   "destination's layout")


def test_axis_order_is_not_tried_beyond_five_dimensions():
    x = rng.standard_normal((1, 2, 2, 2, 2, 3))
    assert layout.axes(ev(x, np.moveaxis(x, -1, 1).reshape(x.shape), info(layout="none"))) is None


def test_two_values_swapped_are_another_order():
    said = layout.multiset(ev(np.array([[1.0, 2.0]]), np.array([[2.0, 1.0]]), info(layout="NC")))
    assert said.endswith("a Flatten or reshape over a different layout (NCHW vs NHWC element order)")


def test_channel_order_at_its_smallest_and_with_offsets_and_scales():
    two = X[..., :2]
    assert channels.check(ev(two, two[..., ::-1])).startswith("channel order: 2 output channels")
    pair = np.array([[1.0, 3.0], [2.0, 1.0]])  # two positions: the channels still rise and fall differently
    assert channels.match_channels(pair, pair[:, ::-1], 1).tolist() == [1, 0]
    offset = X * 0.01 + np.arange(6) * 100.0   # channels told apart by their variation, not their mean
    perm = np.array([2, 0, 1, 5, 3, 4])
    assert channels.match_channels(offset, offset[..., perm], 3).tolist() == perm.tolist()
    scaled = X * np.array([1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0])  # and not by their size
    assert channels.match_channels(scaled, scaled[..., perm], 3).tolist() == perm.tolist()
    said = channels.check(ev(X, X[..., [1, 0, 3, 2, 4, 5]]))
    assert "(destination<-source: 0<-1, 1<-0, 2<-3, 3<-2):" in said and said.endswith(
        "reorder the kernel's output axis (and the bias) to the source's order")
    assert "3<-4 ...):" in channels.check(ev(X, X[..., [1, 2, 3, 4, 0, 5]]))


def test_lstm_forward_bias_forms():
    x, h = rng.standard_normal((2, 3, 2)), 2
    w, r = rng.standard_normal((4 * h, 2)), rng.standard_normal((4 * h, h))
    b = rng.standard_normal(8 * h)
    none = lstm_gates.lstm_forward(x, w, r, None)[0]
    assert np.allclose(none, lstm_gates.lstm_forward(x, w, r, np.zeros(8 * h))[0])
    assert np.allclose(lstm_gates.lstm_forward(x, w, r, b[:4 * h] + b[4 * h:])[0], lstm_gates.lstm_forward(x, w, r, b)[0])
    keras = lstm_gates.lstm_forward(x, w, r, b, "ifco")[0]
    said = lstm_gates.check(ev(keras, None, lstm=(x, w, r, b)))  # no destination tensor in the source's layout
    assert said.startswith("LSTM gate order: the weights hold their gate blocks as (i, f, c, o)")


def test_close_on_small_values_and_the_fallback_without_inputs():
    assert not close(np.array([1e-3]), np.array([1.5e-3])) and close(np.array([1e-3]), np.array([1.0005e-3]))
    row = LayerResult(index=0, src="layer", dst="d", match="name", passed=False)
    src = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    wrong = src + np.array([[0.0, 1.0, -1.0, 0.5], [1.0, 0.0, 0.5, -1.0], [0.0, -1.0, 0.0, 1.0]])
    assert diagnose(row, src, wrong, wrong, info(["dense"], layout="NC")).startswith("weights")  # no inputs
    assert diagnose(row, src, wrong, wrong, None).startswith("weights: the inputs of this layer agree")


def test_layout_is_not_read_into_a_near_match_of_size_one_axes():
    """An (N, 1, 1, C) tensor (a squeeze-and-excite branch) that differs by a little: moving its size-1
    axes keeps every value in place, so it "matches" as well as it already did; that is no layout."""
    from xvalidate.core.causes.evidence import Evidence
    from xvalidate.core.causes.layout import axes

    rng = np.random.default_rng(4)
    src = rng.standard_normal((2, 1, 1, 16))
    near = src + 1e-7 * rng.standard_normal(src.shape)
    assert axes(Evidence(src=src, dst=near, dst_raw=near)) is None
    wide = rng.standard_normal((2, 3, 4, 5))
    moved = wide.transpose(0, 3, 1, 2).reshape(wide.shape)  # a real NHWC/NCHW mix-up still reads as one
    assert axes(Evidence(src=wide, dst=moved, dst_raw=moved)).startswith("layout: ")
