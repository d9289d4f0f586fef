"""Padding placement of a strided 'same' window: when a window's total padding along an axis is odd
(a stride 2 on an even size), TensorFlow puts the extra row/column at the bottom/right, other
implementations at the top/left. Each window then moves by one input pixel, not one output pixel,
so the output is no shifted copy (padding.shift cannot see it); the hypothesis is tested by
recomputing the layer on the source's input with each placement: max/average pooling from the
input alone, a linear convolution from its kernel (the bias cancels in the difference). A
convolution the destination folded into the BatchNorm after it is recomputed with the
destination's folded kernel, which carries the BatchNorm's per-channel scale."""
from __future__ import annotations

import itertools
import math

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close

MAX_WINDOW_ELEMENTS = 2 ** 25  # one sample's windows (H x W x C x kh x kw) recomputed at most


def check(ev: Evidence) -> str | None:
    setup = _setup(ev)
    if setup is None:
        return None
    op, x, size, strides, pads, kernel = setup
    if op != "conv" and not close(_pool(op, x, size, strides, pads), ev.src[:1]):
        return None  # the source's own output is not what this recomputation gives
    for moved in _placements(pads):
        if op == "conv":  # the bias (and a folded BatchNorm's shift) cancels in the difference of the two sides
            expected = _conv(x, kernel, strides, pads) - _conv(x, kernel, strides, moved)
            found = ev.src[:1] - ev.dst[:1]
        else:
            expected, found = _pool(op, x, size, strides, moved), ev.dst[:1]
        if expected.shape == found.shape and close(expected, found):
            return _sentence(ev, strides, pads, moved)
    return None


def _setup(ev: Evidence):
    """(op, one sample of the input, window size, strides, TF's pads per axis, kernel or None) when the
    hypothesis applies."""
    layer = ev.folded if ev.folded is not None else ev.src_info
    attrs = getattr(layer, "attrs", None) or {}
    kinds = list(getattr(layer, "kinds", None) or [])
    kernel = None if ev.kernels is None else ev.kernels[1] if ev.folded is not None else ev.kernels[0]
    op = "maxpool" if "maxpool" in kinds else "avgpool" if "avgpool" in kinds else \
        "conv" if ("conv" in kinds or "dwconv" in kinds) and kernel is not None else None
    x = ev.x
    if op is None or x is None or ev.dst is None or attrs.get("padding") != "same":
        return None
    if op == "conv" and attrs.get("activation") not in (None, "linear"):
        return None
    if ev.spatial_axes != (1, 2) or x.ndim != 4 or ev.src.ndim != 4:
        return None
    size = _pair(attrs.get("pool_size") if op != "conv" else attrs.get("kernel"))
    strides = _pair(attrs.get("strides"))
    if size is None or strides is None or max(strides) < 2 or _pair(attrs.get("dilation_rate") or 1) != (1, 1):
        return None
    if math.prod(x.shape[1:]) * size[0] * size[1] > MAX_WINDOW_ELEMENTS:
        return None
    pads = [_tf_same(n, k, s) for n, k, s in zip(x.shape[1:3], size, strides)]
    if all(before == after for before, after in pads):
        return None  # no odd extra row/column: nothing to place
    return op, np.asarray(x[:1], np.float64), size, strides, pads, kernel


def _pair(value) -> tuple[int, int] | None:
    if value is None:
        return None
    values = tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else (value, value)))
    return values if len(values) == 2 else None


def _tf_same(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of an axis of size n: the extra one goes after."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _placements(pads: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Every other placement of the same amounts: the odd extra row/column moved before, axis by axis."""
    options = [[p] if p[0] == p[1] else [p, (p[1], p[0])] for p in pads]
    return [list(c) for c in itertools.product(*options) if list(c) != pads]


def _windows(x: np.ndarray, size, strides, pads, fill: float) -> np.ndarray:
    """(1, Ho, Wo, C, kh, kw) windows of the padded input."""
    padded = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(padded, size, axis=(1, 2))
    return view[:, ::strides[0], ::strides[1]]


def _pool(op: str, x: np.ndarray, size, strides, pads) -> np.ndarray:
    if op == "maxpool":
        return _windows(x, size, strides, pads, -np.inf).max(axis=(-2, -1))
    total = _windows(x, size, strides, pads, 0.0).sum(axis=(-2, -1))
    count = _windows(np.ones_like(x[..., :1]), size, strides, pads, 0.0).sum(axis=(-2, -1))
    return total / count  # 'same' average pooling averages over the real values only


def _conv(x: np.ndarray, kernel: np.ndarray, strides, pads) -> np.ndarray:
    """The convolution of x (NHWC) with kernel (out, in per group, kh, kw), without bias."""
    kernel = np.asarray(kernel, np.float64)
    out, per_group, kh, kw = kernel.shape
    groups = x.shape[-1] // per_group
    windows = _windows(x, (kh, kw), strides, pads, 0.0)  # (1, Ho, Wo, C, kh, kw)
    n, ho, wo = windows.shape[:3]
    grouped = windows.reshape(n, ho, wo, groups, per_group, kh, kw)
    weights = kernel.reshape(groups, out // groups, per_group, kh, kw)
    return np.einsum("nhwgcij,gocij->nhwgo", grouped, weights).reshape(n, ho, wo, out)


def _sentence(ev: Evidence, strides, pads, moved) -> str:
    where = [("top/bottom", p, m) for p, m in ((pads[0], moved[0]),) if p != m] + \
            [("left/right", p, m) for p, m in ((pads[1], moved[1]),) if p != m]
    said = "; ".join(f"{axes} {m[0]}/{m[1]} where the source pads {p[0]}/{p[1]}" for axes, p, m in where)
    return (f"padding placement: {ev.subject} pads the odd extra row/column of its stride "
            f"{strides[0]}x{strides[1]} 'same' window on the other side ({said}): recomputed on the layer's "
            f"input with that placement, it gives the destination's output. TensorFlow's 'same' puts the extra "
            f"padding at the bottom/right; give the destination explicit pads (top, bottom, left, right) = "
            f"({pads[0][0]}, {pads[0][1]}, {pads[1][0]}, {pads[1][1]})")
