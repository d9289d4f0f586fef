"""Checks every adapter shares: input shape, asked layer names, layouts by rank."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from xvalidate.errors import InputShapeError, UnknownLayerError


def layout_for_rank(rank: int, channels_first: bool = False) -> str:
    """The layout name of a tensor of `rank` dimensions (batch included)."""
    if rank == 4:
        return "NCHW" if channels_first else "NHWC"
    if rank == 3:
        return "NCW" if channels_first else "NWC"
    if rank == 2:
        return "NC"
    return "none"


def check_input(x: np.ndarray, expected: Sequence[int | None], where: str) -> None:
    """Raise InputShapeError unless `x` fits `expected` (batch first; None matches anything)."""
    if not isinstance(x, np.ndarray):
        raise InputShapeError(f"{where}: input must be a numpy array, got {type(x).__name__}")
    if x.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, x.shape)):
        want = "(" + ", ".join("None" if d is None else str(d) for d in expected) + ")"
        raise InputShapeError(f"{where}: input has shape {tuple(x.shape)} but the model expects {want}")


def pick_layers(names: Sequence[str], asked: Sequence[str] | None, where: str) -> list[str]:
    """The asked names in topological order (all when None); unknown names raise UnknownLayerError."""
    if asked is None:
        return list(names)
    known = set(names)
    for name in asked:
        if name not in known:
            sample = ", ".join(list(names)[:5])
            raise UnknownLayerError(f"{where}: no layer {name!r}; it has {len(names)} layers ({sample}, ...)")
    wanted = set(asked)
    return [n for n in names if n in wanted]
