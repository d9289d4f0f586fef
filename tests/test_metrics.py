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


def test_nan_on_both_sides_is_mismatched():
    ref = np.array([[np.nan, 1.0, 2.0]])
    m = compute_metrics(ref, ref.copy(), 1e-4, 1e-3)
    assert m["mismatched"] == 1 and m["nan_src"] == m["nan_dst"] == 1
    assert m["max_abs"] == 0.0  # the finite elements agree: the NaN alone fails the pair


def test_opposite_infinities_are_mismatched_equal_ones_are_not():
    ref = np.array([[np.inf, -np.inf, np.inf, 1.0]])
    out = np.array([[-np.inf, np.inf, np.inf, 1.0]])
    m = compute_metrics(ref, out, 1e-4, 1e-3)
    assert m["mismatched"] == 2 and m["inf_src"] == m["inf_dst"] == 3
    assert compute_metrics(-ref, -ref.copy(), 0, 0)["mismatched"] == 0


def test_nothing_finite_leaves_the_value_metrics_undefined():
    nan = np.full((2, 3), np.nan)
    m = compute_metrics(nan, nan.copy(), 1e-4, 1e-3)
    assert m["mismatched"] == 6 and m["size"] == 6
    assert all(m[k] is None for k in ("max_abs", "mean_abs", "rmse", "max_rel", "cosine", "diff_var", "snr_db"))
    assert m["top1"] == m["top5"] == 0.0  # a row holding a NaN never agrees


def test_cosine_known_values():
    assert math.isclose(compute_metrics(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]]), 0, 0)["cosine"],
                        1 / math.sqrt(2), rel_tol=1e-12)
    a, b = np.array([[1.0, 2.0, 3.0]]), np.array([[4.0, 5.0, 6.0]])
    assert math.isclose(compute_metrics(a, b, 0, 0)["cosine"], 32 / math.sqrt(14 * 77), rel_tol=1e-12)
    assert compute_metrics(a, -a, 0, 0)["cosine"] == -1.0
    assert compute_metrics(np.zeros((1, 3)), np.zeros((1, 3)), 0, 0)["cosine"] == 1.0
    assert compute_metrics(np.zeros((1, 3)), a, 0, 0)["cosine"] == 0.0


def test_top5_with_ten_classes():
    """Row i puts the source's top class at rank i of the destination: top-1 in 1 row of 10, top-5 in 5."""
    rng = np.random.default_rng(3)
    ref, out = np.zeros((10, 10)), np.zeros((10, 10))
    for i in range(10):
        ref[i] = rng.permutation(10)
        best = int(ref[i].argmax())
        order = [c for c in rng.permutation(10) if c != best]
        order.insert(i, best)                        # destination classes from best to worst
        out[i, order] = np.arange(10, 0, -1)
    m = compute_metrics(ref, out, 1e-4, 1e-3)
    assert m["top1"] == 0.1 and m["top5"] == 0.5


def test_top5_counts_the_fifth_ranked_class_whatever_the_order_of_the_others():
    """The source's class ranked exactly 5th by the destination is in its top 5, for every ordering of
    6 destination scores (a partial selection that fixes only the 4th place misses 144 of the 720)."""
    import itertools

    for order in itertools.permutations(range(6)):
        out = np.array([order], float)
        ref = np.zeros((1, 6))
        ref[0, int(np.argsort(-out[0])[4])] = 1.0
        assert compute_metrics(ref, out, 0, 0)["top5"] == 1.0, order
        ref = np.zeros((1, 6))
        ref[0, int(np.argsort(-out[0])[5])] = 1.0
        assert compute_metrics(ref, out, 0, 0)["top5"] == 0.0, order


def test_snr_of_a_zero_source_and_max_rel_floor():
    m = compute_metrics(np.zeros((1, 2)), np.ones((1, 2)), 0, 0)
    assert m["snr_db"] == -math.inf and m["max_rel"] is None and m["mismatched"] == 2
    m = compute_metrics(np.array([[1e-7, 2.0]]), np.array([[1.0, 3.0]]), 0, 0)
    assert m["max_rel"] == 0.5  # |ref| <= REL_FLOOR is left out of max_rel


def test_tolerance_is_relative_to_the_source():
    ref, out = np.array([[100.0, 0.0]]), np.array([[100.09, 0.0]])
    assert compute_metrics(ref, out, 0.0, 1e-3)["mismatched"] == 0
    at_zero = compute_metrics(np.array([[0.0, 100.0]]), np.array([[0.09, 100.0]]), 0.0, 1e-3)
    assert at_zero["mismatched"] == 1  # rtol scales |src|, which is 0 there
    assert compute_metrics(ref, out, 0.1, 0.0)["mismatched"] == 0 and compute_metrics(ref, out, 0.08, 0.0)["mismatched"] == 1


def test_classifier_flag_overrides_the_shape_rule():
    a = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert compute_metrics(a, a, 0, 0, classifier=False)["top1"] is None
    assert compute_metrics(a[:, :1], a[:, :1], 0, 0)["top1"] is None  # one class is not a classifier
    assert compute_metrics(a, a[:, ::-1], 0, 0, classifier=True)["top1"] == 0.0


def test_shapes_must_agree():
    import pytest

    with pytest.raises(ValueError, match=r"shapes differ: \(2, 3\) vs \(3, 2\)"):
        compute_metrics(np.zeros((2, 3)), np.zeros((3, 2)), 0, 0)


def test_max_rel_floor_is_exclusive():
    m = compute_metrics(np.array([[1e-6, 2.0]]), np.array([[1.0, 3.0]]), 0, 0)
    assert m["max_rel"] == 0.5  # |ref| == REL_FLOOR is left out


def test_two_classes_are_a_classifier_and_a_classifier_flag_needs_two_axes():
    a = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert compute_metrics(a, a[:, ::-1], 0, 0)["top1"] == 0.0
    assert compute_metrics(np.ones((2, 3, 4)), np.ones((2, 3, 4)), 0, 0, classifier=True)["top1"] is None


def test_cosine_stays_within_one_under_rounding():
    a = np.array([[0.3289696294602021, -0.258572545473924, 1.5834728788021222, 1.3203609870818391,
                   0.6333526228249152, -2.2035098806466507, 0.05202897425988651]])
    b = np.array([[3.0524532917192686, -2.3992507116089112, 14.692775771364834, 12.25140523728268,
                   5.876771364983491, -20.44599375192326, 0.4827680111533847]])  # a scaled: 1 + 2e-16 unclamped
    assert compute_metrics(a, b, 0, 0)["cosine"] == 1.0
    assert compute_metrics(a, -b, 0, 0)["cosine"] == -1.0


def test_small_elements_are_judged_at_a_tenth_of_their_samples_rms():
    # a BatchNorm output near zero computed from inputs near 50: rounding of 3e-4 on a sample of rms ~50
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 50.0, (2, 1000)).astype(np.float32)
    ref[0, 0] = 1e-3
    out = ref.copy()
    out[0, 0] += 3e-4
    assert compute_metrics(ref, out, 1e-4, 1e-3)["mismatched"] == 0  # limit 1e-4 + 1e-3 * 5
    out[0, 0] = ref[0, 0] + 0.05                                    # a tenth of a percent of the rms more
    assert compute_metrics(ref, out, 1e-4, 1e-3)["mismatched"] == 1


def test_the_scale_is_each_samples_own():
    # sample 1 is large, sample 0 small: sample 0's elements do not borrow sample 1's scale
    ref = np.stack([np.full(100, 0.01), np.full(100, 100.0)]).astype(np.float32)
    out = ref.copy()
    out[0, 5] += 1e-3                                 # 10% of its own sample: a real difference
    out[1, 5] += 1e-2                                 # within 1e-3 of 100
    assert compute_metrics(ref, out, 1e-4, 1e-3)["mismatched"] == 1
    assert compute_metrics(ref, out, 1e-4, 1e-3)["mismatched"] == compute_metrics(
        ref[:1], out[:1], 1e-4, 1e-3)["mismatched"]


def test_nonfinite_values_do_not_set_the_scale():
    ref = np.array([[np.inf, 1.0, 1.0, 0.0]], np.float32)
    out = np.array([[np.inf, 1.0, 1.0, 1e-3]], np.float32)
    assert compute_metrics(ref, out, 1e-4, 1e-3)["mismatched"] == 1  # rms of the finite values: 0.8
