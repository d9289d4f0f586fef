"""Per-pair error metrics, accumulated in float64 and mergeable across chunks of a batch.

`ref` is the source tensor, `out` the destination tensor in the source's layout,
d = ref - out. Over the elements where both are finite:

  max_abs    max |d|
  mean_abs   mean |d|
  rmse       sqrt(mean d^2)
  max_rel    max |d| / |ref| over elements with |ref| > REL_FLOOR (None if there are none)
  cosine     <ref, out> / (|ref| |out|) over all elements (1.0 when both are zero)
  diff_var   variance of d (the seed's "variance of the difference"); merged with Chan's formula
  snr_db     10 log10(sum ref^2 / sum d^2); inf when d is zero
  mismatched elements with |d| > atol + rtol max(|ref|, SCALE_FRACTION * rms), plus every
             non-finite element that is not the same infinity on both sides (see below);
             rms is the root mean square of the finite source values of the element's sample

Why the sample's magnitude: float32 rounding grows with the magnitude of the values a layer
computes with, not with each result. A BatchNorm subtracting a mean of 50 from inputs near 50
gives results near 0 that carry errors of 50 * 1e-7 * (depth); judged against their own size
alone they fail, although the layer agrees to 1e-6 of its scale. An element smaller than a
tenth of its sample's rms is judged as if it were that tenth: a real fault (layout, padding,
activation, weights) moves elements by a sizeable part of the rms and still fails.
  size       element count; nan_src/nan_dst/inf_src/inf_dst: non-finite counts per side
  top1/top5  for classifier outputs (2-D, >= 2 classes): fraction of rows whose top-1
             classes agree / whose source top-1 is in the destination's top-5

NaN and Inf: an element agrees only when both sides are finite and within tolerance, or
both are the same infinity (+inf and +inf). NaN never agrees, not even with NaN, and +inf
does not agree with -inf: each such element is mismatched, so the pair fails. The other
metrics cover the elements finite on both sides (None when there are none), and a row
holding a NaN on either side never counts as agreeing in top1/top5.

Every metric merges exactly across chunks (sums, counts, maxima, Chan's variance),
so a batch in one piece and in chunks agree up to float64 rounding.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

REL_FLOOR = 1e-6
SCALE_FRACTION = 0.1  # elements below this fraction of their sample's rms are judged at that fraction
BLOCK = 1 << 16  # elements per block of the float64 computation


class MetricAccumulator:
    """Accumulates the metrics of one tensor pair over chunks of the batch."""

    def __init__(self, atol: float, rtol: float, classifier: bool | None = None):
        self.atol, self.rtol, self.classifier = float(atol), float(rtol), classifier
        self.n = 0                 # finite elements
        self.size = 0
        self.sum_abs = self.sum_sq = self.sum_ref_sq = self.sum_out_sq = self.sum_dot = 0.0
        self.mean_d = self.m2_d = 0.0
        self.max_abs = 0.0
        self.max_rel: float | None = None
        self.mismatched = 0
        self.nan_src = self.nan_dst = self.inf_src = self.inf_dst = 0
        self.rows = self.top1 = self.top5 = 0

    def update(self, ref: np.ndarray, out: np.ndarray) -> "MetricAccumulator":
        """Fold in one chunk: `ref` and `out` of the same shape, batch on axis 0."""
        if ref.shape != out.shape:
            raise ValueError(f"shapes differ: {ref.shape} vs {out.shape}")
        flat_r, flat_o = np.asarray(ref).reshape(-1), np.asarray(out).reshape(-1)
        self.size += flat_r.size
        floors = _sample_floors(flat_r, ref.shape[0] if ref.ndim > 1 else 1)
        per_sample = flat_r.size // max(len(floors), 1)
        n = d_sum = d_sq = abs_sum = 0.0
        for lo in range(0, flat_r.size, BLOCK):  # blocks: float64 scratch stays in cache, no page faults
            r = flat_r[lo:lo + BLOCK].astype(np.float64)
            o = flat_o[lo:lo + BLOCK].astype(np.float64)
            floor = _block_floor(floors, per_sample, lo, r.size)
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in the sum: a non-finite block
                finite = math.isfinite(float(r.sum())) and math.isfinite(float(o.sum()))
            if not finite:
                r, o, floor = self._drop_nonfinite(r, o, floor)
            if not r.size:
                continue
            d = np.subtract(r, o)
            n += r.size
            d_sum += float(d.sum())
            d_sq += _dot(d, d)
            self.sum_ref_sq += _dot(r, r)
            self.sum_out_sq += _dot(o, o)
            self.sum_dot += _dot(r, o)
            a = np.abs(d, out=d)
            abs_sum += float(a.sum())
            self.max_abs = max(self.max_abs, float(a.max()))
            abs_r = np.abs(r, out=r)
            limit = np.maximum(abs_r, floor, out=o)
            limit *= self.rtol
            limit += self.atol
            self.mismatched += int(np.count_nonzero(a > limit))
            big = abs_r > REL_FLOOR
            if big.any():
                ratio = np.divide(a, abs_r, out=limit, where=big)
                rel = float(np.max(ratio, where=big, initial=0.0))
                self.max_rel = rel if self.max_rel is None else max(self.max_rel, rel)
        if n:
            mean = d_sum / n
            self._merge_var(int(n), mean, max(d_sq - d_sum * mean, 0.0))
            self.sum_sq += d_sq
            self.sum_abs += abs_sum
        self._update_topk(ref, out)
        return self

    def _drop_nonfinite(self, r: np.ndarray, o: np.ndarray,
                        floor: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
        fin_r, fin_o = np.isfinite(r), np.isfinite(o)
        self.nan_src += int(np.isnan(r).sum())
        self.nan_dst += int(np.isnan(o).sum())
        self.inf_src += int(np.isinf(r).sum())
        self.inf_dst += int(np.isinf(o).sum())
        # a value finite on one side only is a mismatch; identical infinities are not
        self.mismatched += int((fin_r != fin_o).sum()) + int((~fin_r & ~fin_o & ~(r == o)).sum())
        both = fin_r & fin_o
        return r[both], o[both], floor[both] if isinstance(floor, np.ndarray) else floor

    def _merge_var(self, n_b: int, mean_b: float, m2_b: float) -> None:
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self.mean_d
        self.mean_d += delta * n_b / n
        self.m2_d += m2_b + delta * delta * n_a * n_b / n
        self.n = n

    def _is_classifier(self, ref: np.ndarray) -> bool:
        if self.classifier is not None:
            return self.classifier
        return ref.ndim == 2 and ref.shape[1] >= 2

    def _update_topk(self, ref: np.ndarray, out: np.ndarray) -> None:
        if not self._is_classifier(ref) or ref.ndim != 2 or ref.shape[0] == 0:
            return
        r, o = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        clean = ~(np.isnan(r).any(axis=1) | np.isnan(o).any(axis=1))  # a row with a NaN never agrees
        r, o = r[clean], o[clean]
        top_r = r.argmax(axis=1)
        k = min(5, o.shape[1])
        top5_o = np.argpartition(-o, k - 1, axis=1)[:, :k]
        self.rows += ref.shape[0]
        self.top1 += int((top_r == o.argmax(axis=1)).sum())
        self.top5 += int((top5_o == top_r[:, None]).any(axis=1).sum())

    def merge(self, other: "MetricAccumulator") -> "MetricAccumulator":
        """Fold another accumulator (other chunks of the same pair) into this one."""
        if other.n:
            self._merge_var(other.n, other.mean_d, other.m2_d)
        for name in ("size", "sum_abs", "sum_sq", "sum_ref_sq", "sum_out_sq", "sum_dot", "mismatched",
                     "nan_src", "nan_dst", "inf_src", "inf_dst", "rows", "top1", "top5"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_abs = max(self.max_abs, other.max_abs)
        if other.max_rel is not None:
            self.max_rel = other.max_rel if self.max_rel is None else max(self.max_rel, other.max_rel)
        return self

    def result(self) -> dict[str, Any]:
        """The metrics, keyed by METRIC_NAMES."""
        n = self.n
        norm = math.sqrt(self.sum_ref_sq * self.sum_out_sq)
        if n == 0:
            cosine = None
        elif norm == 0.0:
            cosine = 1.0 if self.sum_ref_sq == self.sum_out_sq else 0.0
        else:
            cosine = max(-1.0, min(1.0, self.sum_dot / norm))
        if self.sum_sq == 0.0:
            snr = math.inf if n else None
        else:
            snr = 10.0 * math.log10(self.sum_ref_sq / self.sum_sq) if self.sum_ref_sq > 0 else -math.inf
        out = {
            "max_abs": self.max_abs if n else None,
            "mean_abs": self.sum_abs / n if n else None,
            "rmse": math.sqrt(self.sum_sq / n) if n else None,
            "max_rel": self.max_rel,
            "cosine": cosine,
            "diff_var": self.m2_d / n if n else None,
            "snr_db": snr,
            "mismatched": self.mismatched,
            "size": self.size,
            "nan_src": self.nan_src, "nan_dst": self.nan_dst, "inf_src": self.inf_src, "inf_dst": self.inf_dst,
            "top1": self.top1 / self.rows if self.rows else None,
            "top5": self.top5 / self.rows if self.rows else None,
        }
        return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not np.dot: BLAS threads spin against the framework workers on a busy machine
    return float(np.einsum("i,i->", a, b))


def _sample_floors(flat: np.ndarray, samples: int) -> np.ndarray:
    """SCALE_FRACTION * the rms of each sample's finite values (a sample: a row of axis 0)."""
    if flat.size == 0 or samples == 0:
        return np.zeros(max(samples, 1))
    rows = flat.reshape(samples, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)  # buffered: no float64 copy of the batch
    counts = np.full(samples, float(rows.shape[1]))
    for i in np.flatnonzero(~np.isfinite(sums)):  # non-finite values do not count towards the scale
        finite = rows[i][np.isfinite(rows[i])].astype(np.float64)
        sums[i], counts[i] = _dot(finite, finite), finite.size
    return SCALE_FRACTION * np.sqrt(sums / np.maximum(counts, 1.0))


def _block_floor(floors: np.ndarray, per_sample: int, lo: int, size: int) -> np.ndarray | float:
    """The floor of each element of the block [lo, lo + size) of the flattened batch."""
    if per_sample == 0:
        return 0.0
    first, last = lo // per_sample, (lo + size - 1) // per_sample
    if first == last:
        return float(floors[first])
    return floors[np.arange(lo, lo + size) // per_sample]


def compute_metrics(ref: np.ndarray, out: np.ndarray, atol: float, rtol: float,
                    classifier: bool | None = None) -> dict[str, Any]:
    """The metrics of one pair in one call."""
    return MetricAccumulator(atol, rtol, classifier).update(ref, out).result()
