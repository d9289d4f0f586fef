"""The activation functions the activation check tries (core/causes/activation.ACTIVATIONS), each
against an independent scalar reference from Python's math module: a wrong formula there would make
the check name the wrong activation, or none, and the fire/near-miss tests (which build their cases
with the same functions) could not tell."""
import math

import numpy as np
import pytest

from xvalidate.core.causes.activation import ACTIVATIONS

X = np.linspace(-9.0, 9.0, 42).reshape(2, 3, 7)  # 3-D: the last axis is the one softmax normalizes


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


REFERENCE = {
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "sigmoid": sigmoid,
    "hard-sigmoid": lambda v: min(max(0.2 * v + 0.5, 0.0), 1.0),
    "tanh": math.tanh,
    "swish": lambda v: v * sigmoid(v),
    "hard-swish": lambda v: v * min(max(v + 3.0, 0.0), 6.0) / 6.0,
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    "gelu (tanh approximation)": lambda v: 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) *
                                                                      (v + 0.044715 * v ** 3))),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_elementwise_activation_matches_its_formula(name):
    expected = np.vectorize(REFERENCE[name])(X)
    np.testing.assert_allclose(ACTIVATIONS[name](X), expected, rtol=1e-6, atol=1e-6)  # erf to 1.5e-7, times |x|/2


def test_the_list_of_activations_is_the_one_documented():
    assert list(ACTIVATIONS) == ["softmax", "relu", "relu6", "sigmoid", "hard-sigmoid", "tanh", "swish", "hard-swish",
                                 "gelu", "gelu (tanh approximation)"]


def test_sigmoid_stays_finite_far_out():
    with np.errstate(all="raise"):  # no overflow on the way
        out = ACTIVATIONS["sigmoid"](np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    np.testing.assert_allclose(out, [0.0, sigmoid(-40.0), 0.5, sigmoid(40.0), 1.0], rtol=1e-12, atol=1e-200)


def test_softmax_normalizes_the_last_axis_of_each_row_even_for_large_logits():
    logits = np.stack([X, X * 100 + 900, X * 100 - 900])  # rows far apart: each needs its own maximum
    out = ACTIVATIONS["softmax"](logits)
    assert np.isfinite(out).all()
    flat = logits.reshape(-1, logits.shape[-1])
    expected = [[math.exp(v - max(row)) / sum(math.exp(w - max(row)) for w in row) for v in row] for row in flat]
    np.testing.assert_allclose(out.reshape(flat.shape), expected, rtol=1e-9, atol=1e-300)
