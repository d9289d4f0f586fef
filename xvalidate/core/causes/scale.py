"""A per-channel scale and shift between the two sides: BatchNorm statistics or epsilon, or a
normalization folded in on one side only."""
from __future__ import annotations

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close


def check(ev: Evidence) -> str | None:
    src, dst = ev.src, ev.dst
    axis = ev.channel_axis if ev.channel_axis is not None else src.ndim - 1
    if dst is None or src.ndim < 2 or src.shape[axis] < 2:
        return None
    x = np.moveaxis(src, axis, -1).reshape(-1, src.shape[axis])
    y = np.moveaxis(dst, axis, -1).reshape(-1, src.shape[axis])
    if x.shape[0] < 3:
        return None
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    var = (xc * xc).sum(0)
    ok = var > 1e-12
    if not ok.any():
        return None
    scale = np.where(ok, (xc * yc).sum(0) / np.where(ok, var, 1.0), 1.0)
    shift = ym - scale * xm
    if not close(x * scale + shift, y):
        return None
    off = np.flatnonzero((np.abs(scale - 1) > 1e-3) | (np.abs(shift) > 1e-3 * (np.abs(x).max() + 1e-12)))
    if not len(off):  # no channel is scaled or shifted: plain noise, not a per-channel cause
        return None
    ranges = f"scale {scale.min():.3g}..{scale.max():.3g}, shift {shift.min():.3g}..{shift.max():.3g}"
    where = f"{len(off)} of {len(scale)} channels"
    if "bn" in ev.kinds:
        eps = (ev.src_info.attrs or {}).get("epsilon")
        return (f"batchnorm: the destination output of BatchNorm layer {ev.subject} is a per-channel scale and shift "
                f"of the source's ({where}; {ranges}): its moving mean/variance, epsilon"
                f"{f' (source {eps})' if eps is not None else ''} or gamma/beta differ; copy them exactly")
    return (f"per-channel scale: the destination output of {ev.subject} is a per-channel scale and shift "
            f"of the source's ({where}; {ranges}): a BatchNorm folded in on one side only, its statistics or "
            "epsilon, or weights scaled per output channel")
