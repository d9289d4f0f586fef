"""Every cause check of core/diagnose, through diagnose(...): one synthetic case where it must
fire and one near miss where it must not. Causes are told apart by the sentence's first words."""
import numpy as np
import pytest

from xvalidate.core.causes.lstm_gates import lstm_forward
from xvalidate.core.diagnose import diagnose
from xvalidate.core.report import LayerResult
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(7)
X = rng.standard_normal((2, 8, 8, 6))        # an NHWC activation
LOGITS = rng.standard_normal((4, 10))


def row(name="layer", passed=False, transform=None):
    return LayerResult(index=0, src=name, dst="d", match="name", passed=passed, transform=transform)


def info(kinds=("conv",), inputs=(), layout="NHWC", **attrs):
    return LayerInfo(name="layer", op="Op", layout=layout, kinds=list(kinds), inputs=list(inputs), attrs=attrs)


def cause(src, dst, src_info=None, rows=None, extra=None):
    return diagnose(row(), src, dst, dst, src_info or info(), None, rows or {}, **(extra or {}))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def border_scaled(x, factor):
    y = x.copy()
    for index in ((slice(None), 0), (slice(None), -1), (slice(None), slice(None), 0), (slice(None), slice(None), -1)):
        y[index] *= factor
    return y


def shuffled(x):
    return rng.permutation(x.reshape(-1)).reshape(x.shape)


def noisy(x, amount):
    return x + amount * rng.standard_normal(x.shape)


PASSED_INPUT = {"prev": row("prev", passed=True)}
FAILED_INPUT = {"prev": row("prev", passed=False)}
FLAT_INPUT = {"flatten": row("flatten", passed=True, transform="flatten:NCHW->NHWC")}
PLAIN_INPUT = {"flatten": row("flatten", passed=True)}
WITH_NAN = X.copy()
WITH_NAN[0, 1, 2, 3] = np.nan
CONSTANT = np.broadcast_to(rng.standard_normal(6), X.shape).copy()
PERM = np.array([1, 0, 3, 2, 5, 4])
SCALE, SHIFT = rng.uniform(0.5, 2.0, 6), rng.normal(0, 1, 6)
SHIFTED = np.roll(X, 1, axis=1)
INNER_CHANGED = X.copy()
INNER_CHANGED[:, 3:5, 3:5, :] += 1.0
BORDER_CHANGED = X.copy()
BORDER_CHANGED[:, 0, :, :] += 1.0

KERNEL = rng.standard_normal((4, 3, 3, 3))           # OIHW
LSTM_X, LSTM_H = rng.standard_normal((2, 5, 3)), 4
LSTM_W, LSTM_R = rng.standard_normal((4 * LSTM_H, 3)), rng.standard_normal((4 * LSTM_H, LSTM_H))
LSTM_B = rng.standard_normal(8 * LSTM_H)
LSTM_WEIGHTS = {"lstm": (LSTM_X, LSTM_W, LSTM_R, LSTM_B)}
KERAS_SEQ = lstm_forward(LSTM_X, LSTM_W, LSTM_R, LSTM_B, "ifco")[0]   # what the source computes
COPIED_SEQ = lstm_forward(LSTM_X, LSTM_W, LSTM_R, LSTM_B, "iofc")[0]  # the blocks read in ONNX's order

# (prefix, case where it must fire, near miss where it must not): (src, dst, src_info, rows[, diagnose kwargs])
CASES = {
    "nan/inf": ((X, WITH_NAN, None, None),
                (WITH_NAN, WITH_NAN * 2, None, None)),                      # the source has the NaN too
    "constant input": ((X, CONSTANT, None, None),
                       (X, CONSTANT + 0.01 * X, None, None)),               # it still varies a little
    "activation: the destination lacks the softmax": ((softmax(LOGITS), LOGITS, info(["dense"], layout="NC"), None),
                                                      (softmax(LOGITS), LOGITS * 2, info(["dense"], layout="NC"), None)),
    "activation: the destination applies an extra relu": ((X, np.maximum(X, 0), None, None),
                                                           (X, np.maximum(X, 0.3), None, None)),
    "average pooling": ((X, border_scaled(X, 2 / 3), info(["avgpool"]), None),
                        (X, border_scaled(X, 2 / 3), info(["conv"]), None)),  # not a pooling layer
    "padding placement": ((X, SHIFTED, None, None),
                          (X, BORDER_CHANGED, None, None)),                  # the inside is not shifted
    "padding: only the border": ((X, BORDER_CHANGED, None, None),
                                 (X, INNER_CHANGED, None, None)),            # the inside differs
    "flatten order: the input of Dense": ((LOGITS, noisy(LOGITS, 1), info(["dense"], ["flatten"], "NC"), FLAT_INPUT),
                                          (LOGITS, noisy(LOGITS, 1), info(["dense"], ["flatten"], "NC"), PLAIN_INPUT)),
    "layout": ((X, X.transpose(0, 3, 1, 2).reshape(X.shape), None, None),
               (X, shuffled(X), None, None)),                              # same values, no axis order
    "channel order": ((X, X[..., PERM], None, None),
                      (X, noisy(X[..., PERM], 0.5), None, None)),
    "flatten order: the destination holds the values": ((X, shuffled(X), None, None),
                                                        (X, shuffled(X) * 1.1, None, None)),
    "batchnorm": ((X, X * SCALE + SHIFT, info(["bn"]), None),
                  (X, noisy(X * SCALE + SHIFT, 0.3), info(["bn"]), None)),
    "per-channel scale": ((X, X * SCALE + SHIFT, info(["conv"]), None),
                          (X, (X * SCALE + SHIFT)[..., PERM], info(["conv"]), None)),
    "weights": ((X, rng.standard_normal(X.shape), info(["conv"], ["prev"]), PASSED_INPUT),
                (X, rng.standard_normal(X.shape), info(["conv"], ["prev"]), FAILED_INPUT)),
    "kernel transposed": ((X, noisy(X, 1), None, None, {"kernels": (KERNEL, KERNEL.transpose(0, 1, 3, 2))}),
                          (X, noisy(X, 1), None, None, {"kernels": (KERNEL, KERNEL * 2)})),  # same kernel, scaled
    "kernel flipped": ((X, noisy(X, 1), None, None, {"kernels": (KERNEL, KERNEL[:, :, ::-1, ::-1].copy())}),
                       (X, noisy(X, 1), None, None, {"kernels": (KERNEL, rng.standard_normal(KERNEL.shape))})),
    "LSTM gate order": ((KERAS_SEQ, COPIED_SEQ, info(["lstm"], layout="NTC"), None, LSTM_WEIGHTS),
                        (noisy(COPIED_SEQ, 0.05), COPIED_SEQ, info(["lstm"], layout="NTC"), None, LSTM_WEIGHTS)),
    "numerical": ((LOGITS[:2], noisy(LOGITS[:2], 1e-5), info(["dense"], layout="NC"), None),
                  (LOGITS[:2], noisy(LOGITS[:2], 1e-1), info(["dense"], layout="NC"), None)),
}


@pytest.mark.parametrize("prefix", CASES)
def test_check_fires(prefix):
    said = cause(*CASES[prefix][0])
    assert said.startswith(prefix), said


@pytest.mark.parametrize("prefix", CASES)
def test_check_holds_back_on_a_near_miss(prefix):
    said = cause(*CASES[prefix][1])
    assert not said.startswith(prefix), said


def test_unknown_when_the_inputs_already_differ():
    said = cause(X, rng.standard_normal(X.shape), info(["conv"], ["prev"]), FAILED_INPUT)
    assert said.startswith("unknown")


@pytest.mark.parametrize("dst_raw, prefix", [
    (rng.standard_normal((2, 6, 6, 6)), "padding: the destination output"),            # 2x2 smaller: unpadded 3x3
    (rng.standard_normal((2, 6, 10, 10)), "padding: the destination output"),           # NCHW reading, larger
    (rng.standard_normal((2, 6, 8, 8)), "layout: shapes"),                              # same dims, another order
    (rng.standard_normal((2, 5, 5)), "shape: the source output"),
])
def test_shape_causes(dst_raw, prefix):
    said = diagnose(row(), X, dst_raw, None, info(["conv"], kernel=(3, 3), padding="same"))
    assert said.startswith(prefix), said


def test_padding_from_shapes_names_the_kernel_and_the_fix():
    said = diagnose(row(), X, rng.standard_normal((2, 6, 6, 6)), None, info(["conv"], kernel=(3, 3)))
    assert "6x6 where the source's is 8x8" in said and "3x3 kernel" in said and "padding=(1, 1)" in said
    said = diagnose(row(), X, rng.standard_normal((2, 7, 5, 6)), None, info(["conv"], kernel=(3, 3)))
    assert "kernel" not in said.split("smaller")[1][:20] and "more padding" in said  # odd gaps: no kernel border


def test_no_destination_tensor():
    assert diagnose(row(), X, None, None) == "no destination tensor to compare with"
