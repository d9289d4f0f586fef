"""Checks every adapter shares: input shapes, inputs given by name, asked layer names, layouts by rank."""
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


def input_arrays(x, infos: Sequence, where: str) -> dict[str, np.ndarray]:
    """{input name: array} from `x`: one array (a single-input model) or a dict keyed by input
    names; keys that name no input are taken in the model's input order. Each is shape-checked."""
    if isinstance(x, np.ndarray):
        if len(infos) != 1:
            names = ", ".join(info.name for info in infos)
            raise InputShapeError(f"{where}: the model has {len(infos)} inputs ({names}); give a dict "
                                  "{input name: array}")
        arrays = {infos[0].name: x}
    elif isinstance(x, dict):
        arrays = pair_by_name([info.name for info in infos], x, where)
    else:
        raise InputShapeError(f"{where}: input must be a numpy array or a dict of arrays, got {type(x).__name__}")
    for info in infos:
        check_input(arrays[info.name], info.shape, where if len(infos) == 1 else f"{where} (input {info.name!r})")
    return arrays


def pair_by_name(names: Sequence[str], given: dict, where: str) -> dict:
    """`given` re-keyed by `names`: a key equal to a name (or to it without a ':0' suffix) goes to
    that name; the other keys go to the remaining names in order."""
    if len(given) != len(names):
        raise InputShapeError(f"{where}: the model has {len(names)} inputs ({', '.join(names)}), "
                              f"got {len(given)} ({', '.join(map(str, given))})")
    out, rest = {}, []
    bare = {n.split(":")[0]: n for n in names}
    for key, value in given.items():
        name = key if key in names else bare.get(str(key).split(":")[0])
        if name is not None and name not in out:
            out[name] = value
        else:
            rest.append(value)
    for name in names:
        if name not in out:
            out[name] = rest.pop(0)
    return {name: out[name] for name in names}
