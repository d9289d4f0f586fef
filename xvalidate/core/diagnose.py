"""The suspected cause of a divergence, found by checks run on the two tensors.

`diagnose` is called for each root of divergence (a failing layer whose paired inputs pass). The
checks of `xvalidate.core.causes` test one hypothesis each on the actual values and return a
sentence when it holds; the first that holds is the cause (in this order):

  nan/inf          NaN/Inf appear on the destination side only
  constant input   the destination output is constant per channel (its input is all zeros)
  activation       dst is src before a softmax/relu/relu6/sigmoid/hard-sigmoid/tanh/swish/hard-swish/gelu,
                   or the reverse
  average pooling  only the border differs, by the padded cells' factor (count_include_pad)
  padding          the output shifted by a row/column (placement), or only the border differs
  strided padding  a strided 'same' window recomputed on the layer's input with its odd extra
                   row/column on the other side gives the destination (pooling; linear convolution)
  flatten order    the Dense's input agreed only after reordering a Flatten (NCHW vs NHWC)
  layout           dst equals src under another axis order
  channel order    each output channel equals another source channel
  kernel           the two sides' kernels differ by a spatial transpose or a 180-degree flip
  LSTM gate order  the destination's LSTM reproduces the source when its gate blocks are read in
                   another order (Keras i, f, c, o vs ONNX i, o, f, c)
  flatten order    the values agree as a multiset but not in place
  batchnorm        dst is a per-channel scale and shift of src
then, when none holds:
  weights          the inputs agree but the output does not
  numerical        small relative error
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from xvalidate.core.causes import CHECKS, Evidence
from xvalidate.core.causes.padding import shape_cause


def diagnose(row, src: np.ndarray | None, dst_raw: np.ndarray | None, dst: np.ndarray | None,
             src_info=None, dst_info=None, rows_by_src: Mapping | None = None,
             kernels: tuple[np.ndarray, np.ndarray | None] | None = None, folded=None, lstm: tuple | None = None,
             x: np.ndarray | None = None) -> str:
    """One sentence naming the likely cause of `row`'s divergence.

    src: the source tensor; dst_raw: the destination tensor as captured; dst: it in the
    source's layout (None when the shapes cannot agree); kernels: the two sides' convolution
    kernels behind the pair (Adapter.kernel) when the source has one (the destination's may be None); folded: the source Conv the destination
    folded into this BatchNorm layer (a "fused" pair), if any; lstm: (the LSTM's input, W, R, B of
    the destination's LSTM in ONNX's layout), when known; x: the source's value of the layer's
    single input, when known."""
    rows_by_src = rows_by_src or {}
    if src is None or dst_raw is None:
        return "no destination tensor to compare with"
    if dst is None:
        return shape_cause(src, dst_raw, src_info, dst_info)
    ev = Evidence(src.astype(np.float64), dst.astype(np.float64), dst_raw, src_info, dst_info, rows_by_src, kernels, folded,
                  lstm, None if x is None else np.asarray(x[:1], np.float64))
    for check in CHECKS:
        cause = check(ev)
        if cause:
            return cause
    return _fallback(ev)


def _fallback(ev: Evidence) -> str:
    with np.errstate(invalid="ignore"):
        rel = float(np.nanmax(np.abs(ev.src - ev.dst)) / (np.nanmax(np.abs(ev.src)) + 1e-30))
    if _inputs_agree(ev.src_info, ev.rows) and rel > 1e-2:
        return (f"weights: the inputs of {ev.subject} agree but its output does not (relative error "
                f"{rel:.2g}): its weights, bias or attributes (strides, dilation, groups) differ; compare them")
    if rel <= 1e-2:
        return (f"numerical: relative error {rel:.2g}, float32 rounding growing along the network; "
                "if expected, loosen the tolerance for this layer")
    return f"unknown: outputs differ (relative error {rel:.2g}) and no single check explains it"


def _inputs_agree(src_info, rows_by_src) -> bool:
    if src_info is None or not src_info.inputs:
        return True
    rows = [rows_by_src.get(name) for name in src_info.inputs]
    return all(r is not None and r.passed for r in rows) or all(r is None for r in rows)


def first_failing(rows: Sequence) -> object | None:
    """The first row, in source order, that did not pass."""
    return next((r for r in rows if not r.passed), None)
