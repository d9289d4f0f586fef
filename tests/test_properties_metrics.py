"""Properties of core.metrics: every metric equals an independent float64 numpy reference, with
NaN and Inf on either side, and any split of a batch into chunks gives the one-shot result."""
import math
import os
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xvalidate.core import metrics
from xvalidate.core.metrics import MetricAccumulator, compute_metrics
from xvalidate.core.report import METRIC_NAMES

EXAMPLES = int(os.environ.get("XVALIDATE_PROPERTY_EXAMPLES", 200))  # make mutation lowers it
finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0] + [float(np.float32(v)) for v in (1e-7, 1e-6)])
elements = st.one_of(finite, finite, finite, special)  # mostly finite, a non-finite value now and then
shapes = st.tuples(st.integers(1, 6), st.integers(1, 9))
tolerances = st.tuples(st.sampled_from([0.0, 1e-4, 0.5]), st.sampled_from([0.0, 1e-3, 0.1]))


@st.composite
def pairs(draw, elements=elements):
    shape = draw(shapes)
    ref = draw(arrays(np.float32, shape, elements=elements))
    # the destination: a copy, a noisy copy or unrelated values
    kind = draw(st.sampled_from(["same", "noisy", "other"]))
    if kind == "other":
        return ref, draw(arrays(np.float32, shape, elements=elements))
    out = ref.copy()
    if kind == "noisy":
        noise = draw(arrays(np.float32, shape, elements=st.floats(-0.0078125, 0.0078125, width=32)))
        with np.errstate(invalid="ignore"):
            out = (out + noise).astype(np.float32)
    return ref, out


def sample_floors(ref):
    """Per element: a tenth of the rms of the finite source values of its sample (row of axis 0)."""
    rows = ref.astype(np.float64).reshape(ref.shape[0] if ref.ndim > 1 else 1, -1)
    floors = []
    for row in rows:
        finite = row[np.isfinite(row)]
        rms = math.sqrt(float(np.sum(finite * finite)) / finite.size) if finite.size else 0.0
        floors.append(np.full(row.size, metrics.SCALE_FRACTION * rms))
    return np.concatenate(floors) if floors else np.zeros(0)


def reference(ref, out, atol, rtol):
    """The metrics in plain float64 numpy, one shot, from their definitions."""
    r, o = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    floor = sample_floors(ref)
    both = np.isfinite(r) & np.isfinite(o)
    same_infinity = np.isinf(r) & (r == o)
    fr, fo = r[both], o[both]
    d = fr - fo
    n = d.size
    big = np.abs(fr) > metrics.REL_FLOOR
    ref_sq, out_sq, d_sq = float(np.sum(fr * fr)), float(np.sum(fo * fo)), float(np.sum(d * d))
    if n == 0:
        cosine = None
    elif ref_sq == 0 or out_sq == 0:
        cosine = 1.0 if ref_sq == out_sq else 0.0
    else:
        cosine = float(np.sum(fr * fo)) / math.sqrt(ref_sq) / math.sqrt(out_sq)
    if n == 0:
        snr = None
    elif d_sq == 0:
        snr = math.inf
    else:
        snr = 10 * math.log10(ref_sq / d_sq) if ref_sq > 0 else -math.inf
    limit = atol + rtol * np.maximum(np.abs(fr), floor[both])
    mismatched = int(np.sum(np.abs(d) > limit)) + int(np.sum(~both & ~same_infinity))
    return {
        "max_abs": float(np.max(np.abs(d))) if n else None,
        "mean_abs": float(np.mean(np.abs(d))) if n else None,
        "rmse": math.sqrt(d_sq / n) if n else None,
        "max_rel": float(np.max(np.abs(d[big]) / np.abs(fr[big]))) if big.any() else None,
        "cosine": cosine,
        "diff_var": float(np.var(d)) if n else None,
        "snr_db": snr,
        "mismatched": mismatched,
        "size": r.size,
        "nan_src": int(np.isnan(r).sum()), "nan_dst": int(np.isnan(o).sum()),
        "inf_src": int(np.isinf(r).sum()), "inf_dst": int(np.isinf(o).sum()),
    }


def top_k_bounds(ref, out, k):
    """(fewest, most) rows whose source top-1 is in the destination's top-k, over every way of
    breaking ties; rows with a NaN on either side never count."""
    lo = hi = 0
    for r, o in zip(ref.astype(np.float64), out.astype(np.float64)):
        if np.isnan(r).any() or np.isnan(o).any():
            continue
        v = o[int(np.argmax(r))]
        lo += int(np.sum(o >= v) - 1 < k)   # ties ranked ahead of it
        hi += int(np.sum(o > v) < k)        # ties ranked behind it
    return lo, hi


def assert_close(name, got, want, scale=0.0):
    if want is None or got is None or isinstance(want, int):
        assert got == want, (name, got, want)
    elif math.isinf(want):
        assert got == want, (name, got, want)
    else:
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12 + 1e-9 * scale), (name, got, want)


def assert_matches_reference(got, ref, out, atol, rtol):
    want = reference(ref, out, atol, rtol)
    finite = np.isfinite(ref) & np.isfinite(out)
    d = ref[finite].astype(np.float64) - out[finite]
    mean_sq = float(np.mean(d * d)) if d.size else 0.0  # cancellation in the variance is bounded by this
    for name, value in want.items():
        assert_close(name, got[name], value, scale=mean_sq if name == "diff_var" else 1.0)


@given(pairs(), tolerances)
@settings(max_examples=EXAMPLES, deadline=None)
def test_metrics_equal_the_float64_reference(pair, tol):
    ref, out = pair
    got = compute_metrics(ref, out, *tol)
    assert tuple(got) == METRIC_NAMES
    assert_matches_reference(got, ref, out, *tol)


@given(pairs(), st.integers(5, 10))
@settings(max_examples=EXAMPLES, deadline=None)
def test_top_k_within_the_tie_bounds(pair, classes):
    ref, out = pair
    ref, out = np.resize(ref, (ref.shape[0], classes)), np.resize(out, (out.shape[0], classes))
    got = compute_metrics(ref, out, 1e-4, 1e-3)
    rows = ref.shape[0]
    lo1, hi1 = top_k_bounds(ref, out, 1)
    lo5, hi5 = top_k_bounds(ref, out, 5)
    assert lo1 / rows <= got["top1"] <= hi1 / rows and lo5 / rows <= got["top5"] <= hi5 / rows


@given(st.integers(5, 12), st.integers(1, 6), st.randoms(use_true_random=False))
@settings(max_examples=EXAMPLES, deadline=None)
def test_top_k_exact_without_ties(classes, rows, rnd):
    ref = np.array([rnd.sample(range(classes), classes) for _ in range(rows)], np.float64)
    out = np.array([rnd.sample(range(classes), classes) for _ in range(rows)], np.float64)
    rank = [int(np.sum(o > o[np.argmax(r)])) for r, o in zip(ref, out)]
    got = compute_metrics(ref, out, 0, 0)
    assert got["top1"] == sum(k == 0 for k in rank) / rows
    assert got["top5"] == sum(k < 5 for k in rank) / rows


@given(pairs(), tolerances, st.data())
@settings(max_examples=EXAMPLES, deadline=None)
def test_any_split_into_chunks_equals_one_shot(pair, tol, data):
    """Chunks along the batch, folded by update() or by merge(), and float64 blocks of any size."""
    ref, out = pair
    rows = len(ref)
    cuts = sorted(data.draw(st.lists(st.integers(0, rows), max_size=4)))  # empty chunks allowed
    block = data.draw(st.sampled_from([1, 2, 5, metrics.BLOCK]))
    bounds = list(zip([0] + cuts, cuts + [rows]))
    with mock.patch.object(metrics, "BLOCK", block):
        folded = MetricAccumulator(*tol)
        merged = MetricAccumulator(*tol)
        for lo, hi in bounds:
            folded.update(ref[lo:hi], out[lo:hi])
            merged.merge(MetricAccumulator(*tol).update(ref[lo:hi], out[lo:hi]))
    for acc in (folded, merged):
        got = acc.result()
        assert_matches_reference(got, ref, out, *tol)
        whole = compute_metrics(ref, out, *tol)
        assert (got["top1"], got["top5"], got["mismatched"]) == (whole["top1"], whole["top5"], whole["mismatched"])


@given(st.integers(1, 50), st.sampled_from([np.nan, np.inf, -np.inf]), st.sampled_from([np.nan, np.inf, -np.inf]))
@settings(max_examples=EXAMPLES, deadline=None)
def test_non_finite_agree_only_as_the_same_infinity(size, a, b):
    ref, out = np.full((1, size), a), np.full((1, size), b)
    m = compute_metrics(ref, out, 1.0, 1.0)
    agree = not np.isnan(a) and a == b
    assert m["mismatched"] == (0 if agree else size)
    assert (m["size"], m["max_abs"]) == (size, None)
