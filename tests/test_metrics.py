import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xvalidate.core.metrics import MetricAccumulator, compute_metrics
from xvalidate.core.report import METRIC_NAMES

floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)
pairs = st.integers(1, 6).flatmap(lambda n: st.tuples(
    arrays(np.float32, (n, 7), elements=floats), arrays(np.float32, (n, 7), elements=floats)))

SYMMETRIC = ("max_abs", "mean_abs", "rmse", "cosine", "diff_var", "size")


@given(pairs)
@settings(max_examples=60, deadline=None)
def test_zero_on_equal_inputs(pair):
    a, _ = pair
    m = compute_metrics(a, a.copy(), 1e-4, 1e-3)
    assert tuple(m) == METRIC_NAMES
    assert m["max_abs"] == m["mean_abs"] == m["rmse"] == m["diff_var"] == 0
    assert m["mismatched"] == 0 and m["snr_db"] == math.inf and m["top1"] == 1.0


@given(pairs)
@settings(max_examples=60, deadline=None)
def test_symmetric_metrics(pair):
    a, b = pair
    ab, ba = compute_metrics(a, b, 1e-4, 0.0), compute_metrics(b, a, 1e-4, 0.0)
    for name in SYMMETRIC:
        assert math.isclose(ab[name], ba[name], rel_tol=1e-9, abs_tol=1e-12), name
    assert ab["mismatched"] == ba["mismatched"]  # with rtol = 0 the threshold does not depend on the side


@given(pairs, st.data())
@settings(max_examples=60, deadline=None)
def test_chunks_equal_one_shot(pair, data):
    a, b = pair
    whole = compute_metrics(a, b, 1e-2, 1e-3)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(a) - 1), max_size=3, unique=True)) if len(a) > 1 else [])
    chunked = MetricAccumulator(1e-2, 1e-3)
    for lo, hi in zip([0] + cuts, cuts + [len(a)]):
        chunked.update(a[lo:hi], b[lo:hi])
    merged = MetricAccumulator(1e-2, 1e-3)
    for lo, hi in zip([0] + cuts, cuts + [len(a)]):
        merged.merge(MetricAccumulator(1e-2, 1e-3).update(a[lo:hi], b[lo:hi]))
    for got in (chunked.result(), merged.result()):
        for name in METRIC_NAMES:
            x, y = whole[name], got[name]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-7, abs_tol=1e-9) or (math.isinf(x) and x == y), name
            else:
                assert x == y, name


def test_known_values():
    ref = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = np.array([[1.0, 2.0, 3.0, 5.0]])
    m = compute_metrics(ref, out, atol=0.5, rtol=0.0)
    assert m["max_abs"] == 1.0 and m["mean_abs"] == 0.25 and m["rmse"] == 0.5
    assert math.isclose(m["diff_var"], np.var(ref - out)) and m["max_rel"] == 0.25
    assert m["mismatched"] == 1 and m["size"] == 4
    assert math.isclose(m["snr_db"], 10 * math.log10(30 / 1))
    assert m["top1"] == 1.0 and m["top5"] == 1.0


def test_nan_aware():
    ref = np.array([[1.0, np.nan, 3.0, np.inf]])
    out = np.array([[1.0, 2.0, 3.0, np.inf]])
    m = compute_metrics(ref, out, 1e-4, 1e-3)
    assert m["nan_src"] == 1 and m["nan_dst"] == 0 and m["inf_src"] == m["inf_dst"] == 1
    assert m["mismatched"] == 1  # the NaN on one side only; equal infinities agree
    assert m["max_abs"] == 0.0 and m["size"] == 4


def test_top_k_agreement():
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    out = np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1]])
    m = compute_metrics(ref, out, 1e-4, 1e-3)
    assert m["top1"] == 0.5 and m["top5"] == 1.0
    assert compute_metrics(np.ones((2, 3, 4)), np.ones((2, 3, 4)), 0, 0)["top1"] is None
