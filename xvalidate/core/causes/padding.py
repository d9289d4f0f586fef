"""Padding faults: a different amount (shapes differ by a kernel's border), a different placement
(the output shifted by a row or column: TF 'same' pads bottom/right for a stride 2 on even sizes or
an even kernel, other frameworks pad symmetrically), or only the border values differing."""
from __future__ import annotations

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close, describe

_SHIFTS = ((1, 1), (1, 0), (0, 1), (-1, -1), (-1, 0), (0, -1), (1, -1), (-1, 1))


def _kernel(info) -> tuple | None:
    k = None if info is None else (info.attrs.get("kernel") or info.attrs.get("kernel_size")
                                    or info.attrs.get("pool_size"))
    if k is None:
        return None
    k = tuple(int(v) for v in (k if isinstance(k, (list, tuple)) else (k, k)))
    return k if len(k) == 2 else None


def _spatial(ev: Evidence) -> tuple[int, int] | None:
    axes = ev.spatial_axes
    if len(axes) == 2:
        return axes
    return (1, 2) if ev.src.ndim == 4 and not axes else None


def shift(ev: Evidence) -> str | None:
    """The destination output equals the source's moved by one row and/or column, away from the border."""
    axes = _spatial(ev)
    if ev.dst is None or axes is None or min(ev.src.shape[a] for a in axes) < 4:
        return None
    h, w = axes
    for dy, dx in _SHIFTS:
        src_part = ev.src.take(range(max(dy, 0) + 1, ev.src.shape[h] + min(dy, 0) - 1), axis=h)
        src_part = src_part.take(range(max(dx, 0) + 1, ev.src.shape[w] + min(dx, 0) - 1), axis=w)
        dst_part = ev.dst.take(range(max(-dy, 0) + 1, ev.dst.shape[h] + min(-dy, 0) - 1), axis=h)
        dst_part = dst_part.take(range(max(-dx, 0) + 1, ev.dst.shape[w] + min(-dx, 0) - 1), axis=w)
        if close(src_part, dst_part) and not close(ev.src, ev.dst):
            moved = " and ".join(p for p in (f"{abs(dy)} row" if dy else "", f"{abs(dx)} column" if dx else "") if p)
            where = "down/right" if dy >= 0 and dx >= 0 else "up/left" if dy <= 0 and dx <= 0 else "diagonally"
            return (f"padding placement: the destination output of {ev.subject} is the source's shifted "
                    f"by {moved} ({where}): the same amount of padding is put on other sides. TensorFlow's 'same' "
                    "pads the extra row/column at the bottom/right (stride 2 on even sizes, even kernels), others "
                    "pad symmetrically: give the destination explicit pads [top, left, bottom, right] that match "
                    "the source")
    return None


def border(ev: Evidence) -> str | None:
    axes = _spatial(ev)
    if ev.dst is None or axes is None or min(ev.src.shape[a] for a in axes) < 3:
        return None
    h, w = axes
    inner = [slice(None)] * ev.src.ndim
    inner[h], inner[w] = slice(1, -1), slice(1, -1)
    inner = tuple(inner)
    if close(ev.src[inner], ev.dst[inner]) and not close(ev.src, ev.dst):
        return (f"padding: only the border rows and columns of {ev.subject} differ: the two sides pad "
                "differently (the amount, or where the extra row/column goes for an even kernel or a stride)")
    return None


def shape_cause(src: np.ndarray, dst_raw: np.ndarray, src_info, dst_info) -> str:
    """The cause of two shapes that no layout makes agree: padding, a layout, or just the shapes."""
    s, d = src.shape[1:], dst_raw.shape[1:]
    if len(s) == len(d) == 3:
        src_hw, src_c = (s[0], s[1]), s[2]  # the source is read in its own layout: try both readings of dst
        for dh, dw, dc in ((d[1], d[2], d[0]), (d[0], d[1], d[2])):
            if dc != src_c or (dh, dw) == src_hw:
                continue
            gap = (src_hw[0] - dh, src_hw[1] - dw)
            kernel = _kernel(src_info) or _kernel(dst_info)
            if 0 < gap[0] <= 10 and 0 < gap[1] <= 10:
                ksay = (f", the border of its {kernel[0]}x{kernel[1]} kernel" if kernel and
                        gap == (kernel[0] - 1, kernel[1] - 1) else "")
                pad = f"padding={tuple((g // 2) for g in gap)}" if all(g % 2 == 0 for g in gap) else "more padding"
                return (f"padding: the destination output of {describe(src_info)} is {dh}x{dw} where the source's is "
                        f"{src_hw[0]}x{src_hw[1]}, {gap[0]}x{gap[1]} smaller{ksay}: the source pads and the "
                        f"destination does not; use {pad}")
            if gap[0] < 0 and gap[1] < 0:
                return (f"padding: the destination output of {describe(src_info)} is {dh}x{dw}, larger than the "
                        f"source's {src_hw[0]}x{src_hw[1]}: the destination pads more")
    if int(np.prod(s)) == int(np.prod(d)) and sorted(s) == sorted(d):
        return (f"layout: shapes {tuple(s)} and {tuple(d)} hold the same dimensions in another order: "
                "the destination reads the data in another layout (NHWC vs NCHW)")
    return f"shape: the source output has shape {tuple(s)}, the destination's {tuple(d)} (per sample)"
