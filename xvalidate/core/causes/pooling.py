"""Average pooling that counts the padding on one side and not on the other (MXNet #14345)."""
from __future__ import annotations

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close


def check(ev: Evidence) -> str | None:
    if ev.dst is None or "avgpool" not in ev.kinds or len(ev.spatial_axes or (1, 2)) != 2 or ev.src.ndim != 4:
        return None
    h, w = ev.spatial_axes or (1, 2)
    inner = [slice(None)] * 4
    inner[h], inner[w] = slice(1, -1), slice(1, -1)
    if not close(ev.src[tuple(inner)], ev.dst[tuple(inner)]) or close(ev.src, ev.dst):
        return None
    mask = np.abs(ev.src) > 1e-6 * max(float(np.max(np.abs(ev.src))), 1e-12)
    ratio = np.divide(ev.dst, ev.src, out=np.ones_like(ev.src), where=mask)
    ratio_corner = np.median(np.moveaxis(ratio, (h, w), (0, 1))[0, 0])
    if ratio_corner < 1.0 - 1e-3:
        side = "the destination counts the padded zeros in the average and the source does not"
        fix = "count_include_pad=False (exclude the padding)"
    elif ratio_corner > 1.0 + 1e-3:
        side = "the source counts the padded zeros in the average and the destination does not"
        fix = "count_include_pad=True"
    else:
        return None
    return (f"average pooling: only the border of {ev.subject} differs, by the factor of the padded "
            f"cells ({ratio_corner:.3g} at the corner): {side}; set {fix} in the destination")
