"""Output channels in another order: each destination channel equals some other source channel."""
from __future__ import annotations

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close

_MAX_CHANNELS = 4096


def match_channels(src: np.ndarray, dst: np.ndarray, axis: int) -> np.ndarray | None:
    """perm with dst channel j == src channel perm[j] for every j, or None."""
    c = src.shape[axis]
    if c < 2 or c > _MAX_CHANNELS or src.shape != dst.shape:
        return None
    a = np.moveaxis(src, axis, 0).reshape(c, -1)
    b = np.moveaxis(dst, axis, 0).reshape(c, -1)
    if a.shape[1] < 2:
        return None
    an = a - a.mean(1, keepdims=True)
    bn = b - b.mean(1, keepdims=True)
    an /= np.linalg.norm(an, axis=1, keepdims=True) + 1e-30
    bn /= np.linalg.norm(bn, axis=1, keepdims=True) + 1e-30
    perm = np.argmax(np.einsum("ik,jk->ji", an, bn), axis=1)
    if len(set(perm.tolist())) != c or not close(a[perm], b):
        return None
    return perm


def check(ev: Evidence) -> str | None:
    axis = ev.channel_axis
    if ev.dst is None or axis is None:
        return None
    perm = match_channels(ev.src, ev.dst, axis)
    if perm is None or (perm == np.arange(len(perm))).all():
        return None
    moved = [(int(j), int(i)) for j, i in enumerate(perm) if i != j]
    sample = ", ".join(f"{j}<-{i}" for j, i in moved[:4]) + (" ..." if len(moved) > 4 else "")
    return (f"channel order: {len(moved)} output channels of {ev.subject} hold other source channels "
            f"(destination<-source: {sample}): the output-channel order of its weights and bias differs; "
            "reorder the kernel's output axis (and the bias) to the source's order")
