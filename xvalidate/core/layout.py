"""Bringing a destination tensor into the source tensor's layout before comparing.

A transform is named by a string stored in the report:
  None                    same layout
  "NCHW->NHWC", "NHWC->NCHW", "NCW->NWC", "NWC->NCW"
  "TNC->NTC"              a time-major sequence (ONNX RNN outputs once squeezed) to batch-major
  "rnn:TDNC->NTC"         an ONNX LSTM/GRU/RNN node's Y (time, directions, batch, hidden) to
                          (batch, time, directions * hidden), the directions side by side as Keras has them
  "rnn:DNC->NC"           its Y_h / Y_c (directions, batch, hidden) to (batch, directions * hidden)
  "flatten:NCHW->NHWC"    a Flatten of an NCHW tensor, reordered to the element order
                          a Flatten of the NHWC tensor has (and the reverse)
  "reshape:2048"          the same values with size-1 axes added or dropped, e.g. a global
                          pooling that keeps (N, C, 1, 1) where the source has (N, C)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_PERMS = {
    "NCHW->NHWC": (0, 2, 3, 1),
    "NHWC->NCHW": (0, 3, 1, 2),
    "NCW->NWC": (0, 2, 1),
    "NWC->NCW": (0, 2, 1),
    "TNC->NTC": (1, 0, 2),
}


def candidates(src_shape: Sequence[int], dst_shape: Sequence[int],
               dst_producer_shape: Sequence[int] | None = None) -> list[str | None]:
    """Transforms that make a tensor of `dst_shape` take `src_shape` (batch dims included).
    `dst_producer_shape` is the shape of the tensor a flattened destination tensor came from."""
    src_shape, dst_shape = tuple(src_shape), tuple(dst_shape)
    out: list[str | None] = []
    if src_shape == dst_shape:
        out.append(None)
    for name, perm in _PERMS.items():
        if len(perm) == len(dst_shape) and tuple(dst_shape[p] for p in perm) == src_shape and name not in out:
            if not (name == "NWC->NCW" and "NCW->NWC" in out):
                out.append(name)
    if not out and _without_ones(src_shape) == _without_ones(dst_shape):
        out.append("reshape:" + "x".join(str(d) for d in src_shape[1:]))
    if not out:  # one direction's state is a reshape too
        out += _rnn_candidates(src_shape, dst_shape)
    if (len(src_shape) == len(dst_shape) == 2 and src_shape == dst_shape and dst_producer_shape is not None
            and len(dst_producer_shape) == 4 and int(np.prod(dst_producer_shape[1:])) == dst_shape[1]):
        out += ["flatten:NCHW->NHWC", "flatten:NHWC->NCHW"]
    return out


def apply(transform: str | None, arr: np.ndarray, dst_producer_shape: Sequence[int] | None = None) -> np.ndarray:
    """`arr` (a destination tensor) in the source's layout."""
    if transform is None:
        return arr
    if transform in _PERMS:
        return arr.transpose(_PERMS[transform])
    if transform == "rnn:TDNC->NTC":
        t, d, n, h = arr.shape
        return arr.transpose(2, 0, 1, 3).reshape(n, t, d * h)
    if transform == "rnn:DNC->NC":
        d, n, h = arr.shape
        return arr.transpose(1, 0, 2).reshape(n, d * h)
    if transform.startswith("reshape:"):
        return arr.reshape((arr.shape[0],) + tuple(int(d) for d in transform[8:].split("x") if d))
    if transform.startswith("flatten:"):
        perm = _PERMS[transform.split(":", 1)[1]]
        inner = tuple(dst_producer_shape[1:])
        return arr.reshape((arr.shape[0],) + inner).transpose(perm).reshape(arr.shape[0], -1)
    raise ValueError(f"unknown transform {transform!r}")


def _rnn_candidates(src: tuple, dst: tuple) -> list[str]:
    """The RNN-node transforms whose result has the source's shape."""
    if len(dst) == 4 and len(src) == 3 and (dst[2], dst[0], dst[1] * dst[3]) == src:
        return ["rnn:TDNC->NTC"]
    if len(dst) == 3 and len(src) == 2 and (dst[1], dst[0] * dst[2]) == src:
        return ["rnn:DNC->NC"]
    return []


def to_destination(transform: str | None, arr: np.ndarray, dst_shape: Sequence[int],
                   dst_producer_shape: Sequence[int] | None = None) -> np.ndarray:
    """The inverse of `apply`: a source tensor in the destination's layout (`dst_shape` per sample
    as the destination holds it), so that it can stand in for the destination's own tensor."""
    n = arr.shape[0]
    if transform is None:
        return arr
    if transform in _PERMS:
        return np.ascontiguousarray(arr.transpose(np.argsort(_PERMS[transform])))
    if transform.startswith("reshape:"):
        return arr.reshape((n,) + tuple(dst_shape[1:]))
    if transform.startswith("flatten:"):
        perm = _PERMS[transform.split(":", 1)[1]]
        inner = tuple(dst_producer_shape[1:])
        permuted = tuple(inner[p - 1] for p in perm[1:])
        return np.ascontiguousarray(arr.reshape((n,) + permuted).transpose(np.argsort(perm)).reshape(n, -1))
    raise ValueError(f"unknown transform {transform!r}")


def _without_ones(shape: tuple) -> tuple:
    return shape[:1] + tuple(d for d in shape[1:] if d != 1)


def to_layout(x: np.ndarray, src_layout: str, dst_layout: str) -> np.ndarray:
    """An input batch moved from one model's layout to another's (NHWC <-> NCHW, NWC <-> NCW)."""
    key = f"{src_layout}->{dst_layout}"
    if src_layout == dst_layout or key not in _PERMS or x.ndim != len(_PERMS[key]):
        return x
    return np.ascontiguousarray(x.transpose(_PERMS[key]))
