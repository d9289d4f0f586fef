"""NaN/Inf appearing on the destination side, and a destination output that is constant per channel."""
from __future__ import annotations

import numpy as np

from xvalidate.core.causes.evidence import Evidence


def nonfinite(ev: Evidence) -> str | None:
    bad_dst = ~np.isfinite(ev.dst_raw)
    if not bad_dst.any() or not np.isfinite(ev.src).all():
        return None
    n_nan, n_inf = int(np.isnan(ev.dst_raw).sum()), int(np.isinf(ev.dst_raw).sum())
    return (f"nan/inf: {ev.subject} gives {n_nan} NaN and {n_inf} Inf values on the destination "
            f"where the source is finite: a negative BatchNorm variance, a zero epsilon, an overflow or an "
            f"uninitialized parameter in the destination; check this layer's parameters")


def constant(ev: Evidence) -> str | None:
    axis = ev.channel_axis
    if ev.dst is None or axis is None or ev.src.ndim < 3:
        return None
    others = tuple(i for i in range(ev.src.ndim) if i != axis)
    spread_dst = np.ptp(ev.dst, axis=others)
    spread_src = np.ptp(ev.src, axis=others)
    scale = max(float(np.max(np.abs(ev.src))), 1e-12)
    if np.all(spread_dst <= 1e-6 * scale + 1e-9) and np.any(spread_src > 1e-3 * scale):
        return (f"constant input: the destination output of {ev.subject} is constant over every "
                "position (per channel, equal to its bias): its input on the destination side is all zeros or "
                "constant; check what feeds this layer in the destination")
    return None
