"""What the cause sentences say beyond their first words: the direction of a padding shift, which
side pads more, the channels and ranges of a per-channel scale, the moved channels, the counts of
NaN and Inf, the corner factor of an average pooling, the Flatten order, the gate order of an LSTM;
and the size limits under which a check holds back. Synthetic tensors, each check on its own."""
import numpy as np
import pytest

from xvalidate.core.causes import activation, channels, flatten, kernel, layout, lstm_gates, padding, pooling, scale
from xvalidate.core.causes import values
from xvalidate.core.causes.evidence import Evidence, close, describe
from xvalidate.core.report import LayerResult
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(41)
X = rng.standard_normal((2, 8, 8, 6))


def info(kinds=("conv",), layout="NHWC", inputs=(), op="Conv2D", **attrs):
    return LayerInfo(name="layer", op=op, layout=layout, kinds=list(kinds), inputs=list(inputs), attrs=attrs)


def ev(src, dst, src_info=None, **kwargs):
    return Evidence(np.asarray(src, np.float64), None if dst is None else np.asarray(dst, np.float64),
                    dst if dst is not None else src, src_info or info(), **kwargs)


@pytest.mark.parametrize("dy, dx, said", [
    (1, 1, "1 row and 1 column (down/right)"), (1, 0, "1 row (down/right)"), (0, 1, "1 column (down/right)"),
    (-1, -1, "1 row and 1 column (up/left)"), (-1, 0, "1 row (up/left)"), (0, -1, "1 column (up/left)"),
    (1, -1, "1 row and 1 column (diagonally)"), (-1, 1, "1 row and 1 column (diagonally)")])
def test_a_padding_shift_names_its_direction(dy, dx, said):
    moved = np.roll(X, (-dy, -dx), axis=(1, 2))  # the source's values moved down/right: the destination's up/left
    sentence = padding.shift(ev(X, moved))
    assert sentence.startswith("padding placement: the destination output of Conv2D 'layer' is the source's "
                               f"shifted by {said}:"), sentence


def test_a_padding_shift_needs_four_rows_and_a_difference():
    assert padding.shift(ev(X, X)) is None
    small = X[:, :3, :3]
    assert padding.shift(ev(small, np.roll(small, 1, axis=1))) is None
    assert padding.shift(ev(X, None)) is None
    nchw = X.transpose(0, 3, 1, 2)  # the spatial axes come from the layout
    said = padding.shift(ev(nchw, np.roll(nchw, -1, axis=3), info(layout="NCHW")))
    assert "by 1 column (down/right)" in said


def test_border_only_needs_three_rows_and_an_inside_that_agrees():
    changed = X.copy()
    changed[:, -1] += 1
    assert padding.border(ev(X, changed)).startswith("padding: only the border rows and columns of Conv2D 'layer'")
    assert padding.border(ev(X[:, :2, :2], changed[:, :2, :2])) is None
    assert padding.border(ev(X, X)) is None
    inside = X.copy()
    inside[:, 3, 3] += 1
    assert padding.border(ev(X, inside)) is None


@pytest.mark.parametrize("dst_shape, said", [
    ((2, 6, 6, 6), "is 6x6 where the source's is 8x8, 2x2 smaller, the border of its 3x3 kernel: the source pads "
                   "and the destination does not; use padding=(1, 1)"),
    ((2, 6, 4, 4), "is 4x4 where the source's is 8x8, 4x4 smaller: the source pads and the destination does not; "
                   "use padding=(2, 2)"),                                                      # NCHW reading
    ((2, 7, 6, 6), "is 7x6 where the source's is 8x8, 1x2 smaller: the source pads and the destination does not; "
                   "use more padding"),
    ((2, 10, 10, 6), "is 10x10, larger than the source's 8x8: the destination pads more"),
    ((2, 6, 8, 8), "layout: shapes (8, 8, 6) and (6, 8, 8) hold the same dimensions in another order"),
    ((2, 8, 8, 5), "shape: the source output has shape (8, 8, 6), the destination's (8, 8, 5) (per sample)"),
    ((2, 20, 20, 6), "is 20x20, larger than the source's 8x8: the destination pads more"),
    ((2, 3, 3, 6), "is 3x3 where the source's is 8x8, 5x5 smaller: the source pads and the destination does not; "
                   "use more padding"),
    ((2, 8, 3, 6), "shape: the source output has shape (8, 8, 6), the destination's (8, 3, 6)"),  # one side the same
])
def test_shape_causes(dst_shape, said):
    kernel_info = info(kernel=(3, 3)) if dst_shape == (2, 6, 6, 6) else info()
    assert said in padding.shape_cause(X, np.zeros(dst_shape), kernel_info, None)


def test_shape_cause_reads_the_kernel_of_either_side():
    dst_info = info(kernel_size=3)
    said = padding.shape_cause(X, np.zeros((2, 6, 6, 6)), info(), dst_info)
    assert "the border of its 3x3 kernel" in said
    said = padding.shape_cause(X, np.zeros((2, 6, 6, 6)), info(pool_size=[3, 3]), None)
    assert "the border of its 3x3 kernel" in said
    said = padding.shape_cause(X, np.zeros((2, 6, 6, 6)), info(kernel=(5, 5)), None)
    assert "kernel" not in said.split("smaller")[1].split(":")[0]


def test_a_per_channel_scale_counts_the_channels_and_gives_the_ranges():
    factors = np.array([1.0, 1.0, 2.0, 0.5, 1.0, 3.0])
    said = scale.check(ev(X, X * factors))
    assert said.startswith("per-channel scale: the destination output of Conv2D 'layer' is a per-channel scale and "
                           "shift of the source's (3 of 6 channels; scale 0.5..3, shift ")  # shift 0 up to rounding
    assert said.endswith("): a BatchNorm folded in on one side only, its statistics or epsilon, or weights scaled per "
                         "output channel")
    said = scale.check(ev(X, X + np.array([0, 0, 0, 0, 0, 0.5]), info(["bn"], op="BatchNormalization", epsilon=0.001)))
    assert said.startswith("batchnorm: the destination output of BatchNorm layer BatchNormalization 'layer' (epsilon "
                           "0.001) is a per-channel scale and shift of the source's (1 of 6 channels; scale 1..1, "
                           "shift 0..0.5): its moving mean/variance, epsilon (source 0.001) or gamma/beta differ")
    said = scale.check(ev(X, X * 2, info(["bn"], op="BatchNormalization")))
    assert "epsilon" in said and "(source" not in said


def test_a_per_channel_scale_holds_back():
    assert scale.check(ev(X, X)) is None                              # nothing scaled
    assert scale.check(ev(X, X + 1e-6 * rng.standard_normal(X.shape))) is None
    assert scale.check(ev(X[:1, :1, :2], X[:1, :1, :2] * 2)) is None  # too few positions to fit
    assert scale.check(ev(X[..., :1], X[..., :1] * 2)) is None        # one channel
    assert scale.check(ev(np.ones((2, 3, 3, 2)), np.ones((2, 3, 3, 2)) * 2)) is None  # no variance to fit
    nchw = X.transpose(0, 3, 1, 2)
    said = scale.check(ev(nchw, nchw * np.array([2.0, 1, 1, 1, 1, 1])[:, None, None], info(layout="NCHW")))
    assert "(1 of 6 channels; scale 1..2" in said


def test_channel_order_lists_the_moved_channels():
    perm = np.array([1, 0, 3, 2, 5, 4])
    said = channels.check(ev(X, X[..., perm]))
    assert said.startswith("channel order: 6 output channels of Conv2D 'layer' hold other source channels "
                           "(destination<-source: 0<-1, 1<-0, 2<-3, 3<-2 ...):")
    said = channels.check(ev(X, X[..., [1, 0, 2, 3, 4, 5]]))
    assert "2 output channels" in said and "(destination<-source: 0<-1, 1<-0):" in said
    assert channels.check(ev(X, X)) is None
    assert channels.check(ev(X, X[..., perm], info(layout="none"))) is None
    assert channels.match_channels(X[:1, :1, :1], X[:1, :1, :1], 3) is None         # one position
    assert channels.match_channels(X[..., :1], X[..., :1], 3) is None               # one channel
    assert channels.match_channels(X, X[:, :4], 3) is None                          # shapes differ
    assert channels.match_channels(X, X[..., [0, 0, 2, 3, 4, 5]], 3) is None        # not a permutation
    assert channels.match_channels(X, X[..., perm] * 2, 3) is None                  # moved and scaled


def test_nan_and_inf_are_counted_on_the_destination():
    dst = X.copy()
    dst[0, 0, 0, :2] = np.nan
    dst[1, 1, 1, 0] = np.inf
    said = values.nonfinite(ev(X, dst))
    assert said.startswith("nan/inf: Conv2D 'layer' gives 2 NaN and 1 Inf values on the destination where the "
                           "source is finite")
    src = X.copy()
    src[0, 0, 0, 0] = np.inf
    assert values.nonfinite(ev(src, dst)) is None and values.nonfinite(ev(X, X)) is None


def test_a_constant_output_needs_a_varying_source():
    const = np.broadcast_to(rng.standard_normal(6), X.shape)
    assert values.constant(ev(X, const)).startswith("constant input: the destination output of Conv2D 'layer'")
    assert values.constant(ev(const, const * 2)) is None                    # the source is constant too
    assert values.constant(ev(X, const, info(layout="none"))) is None      # no channel axis
    assert values.constant(ev(X[:, 0, 0], const[:, 0, 0], info(layout="NC"))) is None  # no positions


@pytest.mark.parametrize("factor, said", [
    (2 / 3, "(0.444 at the corner): the destination counts the padded zeros in the average and the source does "
            "not; set count_include_pad=False (exclude the padding) in the destination"),
    (1.5, "(2.25 at the corner): the source counts the padded zeros in the average and the destination does not; "
          "set count_include_pad=True in the destination")])
def test_average_pooling_names_the_side_that_counts_the_padding(factor, said):
    dst = X.copy()
    for index in ((slice(None), 0), (slice(None), -1), (slice(None), slice(None), 0), (slice(None), slice(None), -1)):
        dst[index] *= factor
    pool = info(["avgpool"], op="AveragePooling2D")
    assert pooling.check(ev(X, dst, pool)).startswith(
        f"average pooling: only the border of AveragePooling2D 'layer' differs, by the factor of the padded cells {said}")
    nchw, dst_nchw = X.transpose(0, 3, 1, 2), dst.transpose(0, 3, 1, 2)
    assert said in pooling.check(ev(nchw, dst_nchw, info(["avgpool"], layout="NCHW")))
    assert pooling.check(ev(X, X, pool)) is None
    assert pooling.check(ev(X, dst + 0.5, pool)) is None    # the inside differs too
    other = X.copy()
    other[:, 0, 1:-1] += 1.0                                # the border differs, but not at the corner
    assert pooling.check(ev(X, other, pool)) is None


def test_flatten_order_names_the_order_of_the_flatten_before_the_dense():
    rows = {"flat": LayerResult(index=0, src="flat", dst="f", match="name", passed=True,
                                transform="flatten:NCHW->NHWC")}
    dense = info(["dense"], layout="NC", inputs=["flat"], op="Dense")
    said = flatten.check(ev(X, X * 2, dense, rows=rows))
    assert said.startswith("flatten order: the input of Dense 'layer' agrees only after reordering the Flatten "
                           "(NCHW->NHWC), so its weights were copied without permuting")
    assert flatten.check(ev(X, X * 2, info(["conv"], inputs=["flat"]), rows=rows)) is None
    failed = {"flat": LayerResult(index=0, src="flat", dst="f", match="name", passed=False,
                                  transform="flatten:NCHW->NHWC")}
    assert flatten.check(ev(X, X * 2, dense, rows=failed)) is None
    assert flatten.check(ev(X, X * 2, info([], inputs=["flat"]), rows=rows)) is None


def test_layout_names_the_axis_order():
    said = layout.axes(ev(X, X.transpose(0, 3, 1, 2).reshape(X.shape)))
    assert "(per-sample axis order (3, 1, 2))" in said
    assert layout.axes(ev(X[:, :, 0, 0], X[:, :, 0, 0])) is None  # 2-D: no axis order to mix up
    assert layout.multiset(ev(X[:1, :1, :1, :1], X[:1, :1, :1, :1] * 1)) is None


def test_kernel_checks_need_two_4d_kernels_of_one_shape():
    k = rng.standard_normal((4, 3, 3, 3))
    dst = rng.standard_normal(X.shape)
    assert kernel.check(ev(X, dst, kernels=(k, k.transpose(0, 1, 3, 2)))).startswith(
        "kernel transposed: the destination's 3x3 kernel of Conv2D 'layer' is the source's with its two spatial axes")
    assert kernel.check(ev(X, dst, kernels=(k, k[:, :, ::-1, ::-1]))).startswith(
        "kernel flipped: the destination's 3x3 kernel of Conv2D 'layer' is the source's rotated by 180 degrees")
    wide = rng.standard_normal((4, 3, 1, 5))  # 1x5: flipping is the only spatial fault it can show
    assert kernel.check(ev(X, dst, kernels=(wide, wide[:, :, ::-1, ::-1]))).startswith("kernel flipped: the "
                                                                                        "destination's 1x5 kernel")
    assert kernel.check(ev(X, dst, kernels=(k, k[:, :2]))) is None
    assert kernel.check(ev(X, dst, kernels=(k[0], k[0]))) is None
    point = rng.standard_normal((4, 3, 1, 1))
    assert kernel.check(ev(X, dst, kernels=(point, -point))) is None   # 1x1: no spatial fault
    assert kernel.check(ev(X, dst, kernels=(k, rng.standard_normal(k.shape)))) is None


def test_lstm_gate_order_names_the_order_found():
    x, h = rng.standard_normal((2, 4, 3)), 3
    w, r, b = rng.standard_normal((4 * h, 3)), rng.standard_normal((4 * h, h)), rng.standard_normal(8 * h)
    keras = lstm_gates.lstm_forward(x, w, r, b, "ifco")
    said = lstm_gates.check(ev(keras[0], keras[0] * 0, lstm=(x, w, r, b)))
    assert said == ("LSTM gate order: the weights hold their gate blocks as (i, f, c, o) (Keras's order) where the "
                    "destination reads (i, o, f, c): reorder the blocks of W, R and B (Keras i, f, c, o -> ONNX i, "
                    "o, f, c)")
    other = lstm_gates.lstm_forward(x, w, r, b, "fico")
    assert lstm_gates.check(ev(other[1], other[1] * 0, lstm=(x, w, r, b))).startswith(
        "LSTM gate order: the weights hold their gate blocks as (f, i, c, o) where")   # the last h, no Keras
    onnx = lstm_gates.lstm_forward(x, w, r, b, "iofc")
    assert lstm_gates.check(ev(onnx[0], onnx[0] * 0, lstm=(x, w, r, b))) is None  # the order read already fits
    assert lstm_gates.check(ev(keras[0], keras[0] * 0)) is None                  # no weights given


def test_activation_missing_needs_a_change():
    x = np.abs(X) + 0.1
    assert activation.missing(x, np.maximum(x, 0)) is None   # relu changes nothing on positive values
    assert activation.check(ev(X, None)) is None


def test_evidence_helpers():
    assert close(np.zeros(3), np.zeros(3)) and not close(np.zeros(3), np.zeros(4)) and close(np.zeros(0), np.zeros(0))
    assert close(np.array([1000.0]), np.array([1000.9])) and not close(np.array([1000.0]), np.array([1001.1]))
    assert not close(np.array([0.0, 1.0]), np.array([np.nan, 1.0]))
    full = info(kernel=(3, 3), strides=[2, 2], padding="same", dilation_rate=(1, 1), pool_size=2, epsilon=1e-3,
                activation="relu")
    assert describe(full) == ("Conv2D 'layer' (kernel 3x3, strides 2x2, padding 'same', dilation 1x1, pool 2, "
                              "epsilon 0.001, activation 'relu')")
    assert describe(info(activation="linear")) == "Conv2D 'layer'" and describe(None) == "this layer"
    e = ev(X, X)
    assert (e.channel_axis, e.spatial_axes, e.kinds, e.subject) == (3, (1, 2), ["conv"], "Conv2D 'layer'")
    e = ev(X.transpose(0, 3, 1, 2), X, info(layout="NCHW"))
    assert (e.channel_axis, e.spatial_axes) == (1, (2, 3))
    e = ev(X, X, info(layout="NC"))
    assert (e.channel_axis, e.spatial_axes) == (None, ())
    folded = ev(X, X, info(["bn"], op="BatchNormalization"), folded=info(op="Conv2D"))
    assert folded.subject == "Conv2D 'layer' (folded with BatchNormalization 'layer')"


def test_the_fallback_gives_the_relative_error():
    from xvalidate.core.diagnose import diagnose, first_failing
    row = LayerResult(index=0, src="layer", dst="d", match="name", passed=False)
    src = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    noise = np.array([[0.0, 0.01, -0.01, 0.0], [0.01, 0.0, 0.0, -0.01], [0.0, -0.01, 0.01, 0.01]])  # no channel shift
    dense = info(["dense"], layout="NC", inputs=["prev"], op="Dense")
    passed = {"prev": LayerResult(index=0, src="prev", dst="p", match="name", passed=True)}
    failed = {"prev": LayerResult(index=0, src="prev", dst="p", match="name", passed=False)}
    assert diagnose(row, src, src + noise, src + noise, dense, None, passed) == (
        "numerical: relative error 0.005, float32 rounding growing along the network; if expected, loosen the "
        "tolerance for this layer")
    wrong = src + np.array([[0.0, 1.0, -1.0, 0.5], [1.0, 0.0, 0.5, -1.0], [0.0, -1.0, 0.0, 1.0]])
    assert diagnose(row, src, wrong, wrong, dense, None, passed).startswith(
        "weights: the inputs of Dense 'layer' agree but its output does not (relative error 0.5):")
    assert diagnose(row, src, wrong, wrong, dense, None, {}).startswith("weights")    # inputs not compared
    assert diagnose(row, src, wrong, wrong, dense, None, failed) == (
        "unknown: outputs differ (relative error 0.5) and no single check explains it")
    rows = [LayerResult(index=i, src=f"l{i}", dst=None, match="none", passed=i != 1) for i in range(3)]
    assert first_failing(rows) is rows[1] and first_failing(rows[:1]) is None
