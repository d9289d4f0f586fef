"""Padding placement of a strided window: when a window's total padding along an axis is odd (a
stride 2 on an even size), TensorFlow puts the extra row/column at the bottom/right, other
implementations at the top/left. Each window then moves by one input pixel, not one output pixel,
so the output is no shifted copy (padding.shift cannot see it); the hypothesis is tested by
recomputing the layer on the source's input with each placement: max/average pooling from the
input alone, a linear convolution from its kernel (the bias cancels in the difference). Two forms:
a 'same' window (the placement computed as TensorFlow does), and a 'valid' window whose input ends
in a zero row/column (keras.applications' ZeroPadding2D before a stride 2, which a converter may
fuse into the window and place first). A convolution the destination folded into the BatchNorm
after it is recomputed with the destination's folded kernel, which carries the BatchNorm's scale."""
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
    if op == "conv":  # the bias (and a folded BatchNorm's shift) cancels in the difference of the two sides
        source, found = _conv(x, kernel, strides, pads), ev.src[:1] - ev.dst[:1]
    else:
        found = ev.dst[:1]
    for x_alt, pads_alt, placed in _alternatives(x, pads):
        if op == "conv":
            expected = source - _conv(x_alt, kernel, strides, pads_alt)
        else:
            expected = _pool(op, x_alt, size, strides, pads_alt)
        if expected.shape == found.shape and close(expected, found):
            return _sentence(ev, strides, *placed)
    return None


def _setup(ev: Evidence):
    """(op, one sample of the input, window size, strides, pads per axis, kernel or None) when the
    hypothesis applies: a 'same' window with TF's odd extra padding, or a 'valid' one whose input
    ends in a zero row/column (a ZeroPadding2D before it, as keras.applications writes a stride 2)."""
    layer = ev.folded if ev.folded is not None else ev.src_info
    attrs = getattr(layer, "attrs", None) or {}
    kinds = list(getattr(layer, "kinds", None) or [])
    kernel = None if ev.kernels is None else ev.kernels[1] if ev.folded is not None else ev.kernels[0]
    op = "maxpool" if "maxpool" in kinds else "avgpool" if "avgpool" in kinds else \
        "conv" if ("conv" in kinds or "dwconv" in kinds) and kernel is not None else None
    x = ev.x
    if op is None or x is None or ev.dst is None or attrs.get("padding") not in ("same", "valid"):
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
    x = np.asarray(x[:1], np.float64)
    if attrs["padding"] == "valid":
        pads = [(0, 0), (0, 0)]
        if not _trailing_zero_axes(x):
            return None
    else:
        pads = [_tf_same(n, k, s) for n, k, s in zip(x.shape[1:3], size, strides)]
        if all(before == after for before, after in pads):
            return None  # no odd extra row/column: nothing to place
    return op, x, size, strides, pads, kernel


def _trailing_zero_axes(x: np.ndarray) -> list[int]:
    """The spatial axes whose last row/column is all zero and whose first is not: padded at the end only."""
    return [axis for axis in (1, 2) if not x.take(-1, axis=axis).any() and x.take(0, axis=axis).any()]


def _alternatives(x: np.ndarray, pads):
    """(input, pads, (the source's placement, the other one)) for every other placement of the odd extra
    padding, placements as [(before, after)] per spatial axis: with 'same', the extra row/column moved
    before; with 'valid', the input's zero end row/column moved to the front."""
    if pads != [(0, 0), (0, 0)]:
        for moved in _placements(pads):
            yield x, moved, (pads, moved)
        return
    axes = _trailing_zero_axes(x)
    source = [(0, 1) if axis in axes else (0, 0) for axis in (1, 2)]
    for count in range(1, len(axes) + 1):
        for chosen in itertools.combinations(axes, count):
            moved = [(1, 0) if axis in chosen else p for axis, p in zip((1, 2), source)]
            yield np.roll(x, 1, axis=chosen), pads, (source, moved)


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


def _sentence(ev: Evidence, strides, source: list, moved: list) -> str:
    said = "; ".join(f"{axes} {m[0]}/{m[1]} where the source pads {p[0]}/{p[1]}"
                     for axes, p, m in zip(("top/bottom", "left/right"), source, moved) if p != m)
    return (f"padding placement: {ev.subject} pads the odd extra row/column of its stride "
            f"{strides[0]}x{strides[1]} window on the other side ({said}): recomputed on the layer's input with "
            f"that placement, it gives the destination's output. TensorFlow puts the extra padding at the "
            f"bottom/right; give the destination explicit pads (top, bottom, left, right) = "
            f"({source[0][0]}, {source[0][1]}, {source[1][0]}, {source[1][1]})")
