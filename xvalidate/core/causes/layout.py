"""The same values in another axis order (NHWC/NCHW), or in another element order altogether."""
from __future__ import annotations

import itertools

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close


def axes(ev: Evidence) -> str | None:
    src, dst = ev.src, ev.dst
    if dst is None or src.ndim < 3 or src.ndim > 5 or src.size != dst.size:
        return None
    if close(src.reshape(dst.shape), dst):  # as close in their own order: a numerical difference, not a layout
        return None  # (a permutation moving only size-1 axes would "match" it just as well)
    for perm in itertools.permutations(range(1, src.ndim)):
        if perm != tuple(range(1, src.ndim)) and close(src.transpose((0,) + perm).reshape(dst.shape), dst):
            return (f"layout: the destination holds the output of {ev.subject} with its axes in another "
                    f"order (per-sample axis order {perm}): an NHWC/NCHW mix-up; transpose the input or the "
                    "weights to the destination's layout")
    return None


def multiset(ev: Evidence) -> str | None:
    src, dst = ev.src, ev.dst
    if dst is not None and src.size > 1 and close(np.sort(src, axis=None), np.sort(dst, axis=None)) and not close(src, dst):
        return (f"flatten order: the destination holds the values of {ev.subject} in another order: a "
                "Flatten or reshape over a different layout (NCHW vs NHWC element order)")
    return None
