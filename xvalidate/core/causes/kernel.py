"""A convolution kernel transposed spatially (HWIO read as WHIO) or flipped (convolution vs
cross-correlation), told from the two sides' kernels; a per-output-channel scale (a BatchNorm
folded into one side's kernel) does not hide it."""
from __future__ import annotations

import numpy as np

from xvalidate.core.causes.evidence import Evidence


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The mean over output channels of |cosine| between the two kernels' channel slices."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    num = np.abs(np.einsum("ij,ij->i", a, b))
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30
    return float(np.mean(num / den))


def check(ev: Evidence) -> str | None:
    if ev.kernels is None or ev.kernels[1] is None:
        return None
    src, dst = (np.asarray(k, np.float64) for k in ev.kernels)
    if src.shape != dst.shape or src.ndim != 4 or src.shape[2] < 2 and src.shape[3] < 2:
        return None
    if _agreement(src, dst) > 0.999:
        return None
    spatial = "x".join(str(d) for d in src.shape[2:])
    if src.shape[2] == src.shape[3] and _agreement(src.transpose(0, 1, 3, 2), dst) > 0.999:
        return (f"kernel transposed: the destination's {spatial} kernel of {ev.subject} is the source's "
                "with its two spatial axes swapped (HWIO read as WHIO): transpose the kernel's spatial axes when "
                "copying it")
    if _agreement(src[:, :, ::-1, ::-1], dst) > 0.999:
        return (f"kernel flipped: the destination's {spatial} kernel of {ev.subject} is the source's "
                "rotated by 180 degrees (convolution vs cross-correlation): flip it when copying it")
    return None
