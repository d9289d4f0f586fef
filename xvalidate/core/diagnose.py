"""The suspected cause of a divergence, found by checks run on the two tensors.

`diagnose` is called for the first failing layer only. Each check tests one
hypothesis on the actual values and returns a sentence when it holds; the
first hypothesis that holds is the cause:

  padding      shapes differ by a kernel's border, or only border rows/columns differ
  activation   dst is src before its softmax/relu/sigmoid, or the reverse
  layout       dst equals src under another axis order
  flatten      the layer's input agreed only after reordering a Flatten (NCHW vs NHWC
               element order), so the weights after it were not permuted; or the
               values agree as a multiset but not in place
  batchnorm    dst is a per-channel scale and shift of src (BatchNorm statistics, epsilon,
               or a normalization folded in on one side only)
  weights      the inputs agree but the output does not
  numerical    small relative error
"""
from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

import numpy as np

CLOSE_RTOL = 1e-3  # how near a transformed tensor must come to count as "equal" in a check


def diagnose(row, src: np.ndarray | None, dst_raw: np.ndarray | None, dst: np.ndarray | None,
             src_info=None, dst_info=None, rows_by_src: Mapping | None = None) -> str:
    """One sentence naming the likely cause of `row`'s divergence.

    src: the source tensor; dst_raw: the destination tensor as captured; dst: it in the
    source's layout (None when the shapes cannot agree)."""
    rows_by_src = rows_by_src or {}
    if src is None or dst_raw is None:
        return "no destination tensor to compare with"
    if dst is None:
        return _shape_cause(src, dst_raw, src_info, dst_info)
    src64, dst64 = src.astype(np.float64), dst.astype(np.float64)
    for check in (_activation_cause, _border_cause, _flatten_cause, _permutation_cause, _reorder_cause,
                  _affine_cause):
        cause = check(src64, dst64, src_info, rows_by_src)
        if cause:
            return cause
    inputs_ok = _inputs_agree(src_info, rows_by_src)
    rel = float(np.max(np.abs(src64 - dst64)) / (np.max(np.abs(src64)) + 1e-30))
    if inputs_ok and rel > 1e-2:
        return ("weights: this layer's inputs agree but its output does not (relative error "
                f"{rel:.2g}): its weights, bias or attributes (strides, dilation, groups) differ")
    if rel <= 1e-2:
        return (f"numerical: relative error {rel:.2g}, float32 rounding growing along the network; "
                "if expected, loosen the tolerance for this layer")
    return f"unknown: outputs differ (relative error {rel:.2g}) and no single check explains it"


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-12)
    return bool(np.max(np.abs(a - b)) <= CLOSE_RTOL * scale + 1e-6) if a.size else True


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"softmax": _softmax, "relu": _relu, "sigmoid": _sigmoid}


def _activation_cause(src, dst, src_info, rows_by_src) -> str | None:
    for name, fn in _ACTIVATIONS.items():
        if not np.allclose(fn(dst), dst) and _close(fn(dst), src):
            return (f"activation: the destination lacks the {name} the source applies here "
                    f"({name} of the destination output equals the source output)")
        if not np.allclose(fn(src), src) and _close(fn(src), dst):
            return (f"activation: the destination applies an extra {name} here "
                    f"(the destination output equals {name} of the source output)")
    return None


def _shape_cause(src, dst_raw, src_info, dst_info) -> str:
    s, d = src.shape[1:], dst_raw.shape[1:]
    if len(s) == len(d) == 3:
        src_hw, src_c = (s[0], s[1]), s[2]  # sources are read in their own layout: try both readings of dst
        for label, (dh, dw, dc) in (("NCHW", (d[1], d[2], d[0])), ("NHWC", (d[0], d[1], d[2]))):
            if dc != src_c or (dh, dw) == src_hw:
                continue
            gap = (src_hw[0] - dh, src_hw[1] - dw)
            kernel = _kernel(src_info) or _kernel(dst_info)
            if 0 < gap[0] <= 10 and 0 < gap[1] <= 10:
                ksay = (f", the border of its {kernel[0]}x{kernel[1]} kernel" if kernel and
                        gap == (kernel[0] - 1, kernel[1] - 1) else "")
                pad = f"padding={tuple((g // 2) for g in gap)}" if all(g % 2 == 0 for g in gap) else "more padding"
                return (f"padding: the destination output is {dh}x{dw} where the source's is "
                        f"{src_hw[0]}x{src_hw[1]}, {gap[0]}x{gap[1]} smaller{ksay}: the source pads "
                        f"({_padding(src_info)}) and the destination does not; use {pad}")
            if gap[0] < 0 and gap[1] < 0:
                return (f"padding: the destination output is {dh}x{dw}, larger than the source's "
                        f"{src_hw[0]}x{src_hw[1]}: the destination pads more")
    if int(np.prod(s)) == int(np.prod(d)) and sorted(s) == sorted(d):
        return (f"layout: shapes {tuple(s)} and {tuple(d)} hold the same dimensions in another order: "
                "the destination reads the data in another layout (NHWC vs NCHW)")
    return f"shape: the source output has shape {tuple(s)}, the destination's {tuple(d)} (per sample)"


def _kernel(info) -> tuple | None:
    if info is None:
        return None
    k = info.attrs.get("kernel") or info.attrs.get("kernel_size")
    if k is None:
        return None
    k = tuple(int(v) for v in (k if isinstance(k, (list, tuple)) else (k, k)))
    return k if len(k) == 2 else None


def _padding(info) -> str:
    pad = None if info is None else info.attrs.get("padding")
    return f"padding={pad!r}" if pad is not None else "padding"


def _border_cause(src, dst, src_info, rows_by_src) -> str | None:
    if src.ndim != 4 or min(src.shape[1], src.shape[2]) < 3:
        return None
    inner = (slice(None), slice(1, -1), slice(1, -1))
    if _close(src[inner], dst[inner]) and not _close(src, dst):
        return ("padding: only the border rows and columns differ: the two sides pad differently "
                "(amount, or where the extra row/column goes for an even kernel or a stride)")
    return None


def _flatten_cause(src, dst, src_info, rows_by_src) -> str | None:
    if src_info is not None and src_info.kinds and src_info.kinds[0] == "dense":
        for name in src_info.inputs:
            row = rows_by_src.get(name)
            if row is not None and row.passed and (row.transform or "").startswith("flatten:"):
                order = row.transform.split(":", 1)[1]
                return (f"flatten order: this Dense's input agrees only after reordering the Flatten "
                        f"({order}), so its weights were copied without permuting their input rows to the "
                        f"destination's Flatten order (transfer_weights(..., permute_flatten=True) does this)")
    return None


def _reorder_cause(src, dst, src_info, rows_by_src) -> str | None:
    if src.size > 1 and _close(np.sort(src, axis=None), np.sort(dst, axis=None)) and not _close(src, dst):
        return ("flatten order: the destination holds the same values in another order: a Flatten or "
                "reshape over a different layout (NCHW vs NHWC element order)")
    return None


def _permutation_cause(src, dst, src_info, rows_by_src) -> str | None:
    if src.ndim < 3 or src.ndim > 5:
        return None
    for perm in itertools.permutations(range(1, src.ndim)):
        if perm != tuple(range(1, src.ndim)) and _close(src.transpose((0,) + perm).reshape(dst.shape), dst):
            return ("layout: the destination holds this tensor with its axes in another order "
                    f"(per-sample axis order {perm}): an NHWC/NCHW mix-up")
    return None


def _affine_cause(src, dst, src_info, rows_by_src) -> str | None:
    if src.ndim < 2 or src.shape[-1] < 2:
        return None
    x = src.reshape(-1, src.shape[-1])
    y = dst.reshape(-1, dst.shape[-1])
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
    fit = x * scale + shift
    if not _close(fit, y):
        return None
    kinds = src_info.kinds if src_info is not None else []
    ranges = f"scale {scale.min():.3g}..{scale.max():.3g}, shift {shift.min():.3g}..{shift.max():.3g}"
    if "bn" in kinds:
        return (f"batchnorm: the destination is a per-channel scale and shift of the source ({ranges}): "
                "BatchNorm differs: moving mean/variance, epsilon, or gamma/beta not carried over")
    return (f"per-channel scale: the destination is a per-channel scale and shift of the source ({ranges}): "
            "this layer's weights and bias differ by a per-channel factor (a BatchNorm folded in on one side "
            "only, its statistics or epsilon, or scaled weights)")


def _inputs_agree(src_info, rows_by_src) -> bool:
    if src_info is None or not src_info.inputs:
        return True
    rows = [rows_by_src.get(name) for name in src_info.inputs]
    return all(r is not None and r.passed for r in rows) or all(r is None for r in rows)


def first_failing(rows: Sequence) -> object | None:
    """The first row, in source order, that did not pass."""
    return next((r for r in rows if not r.passed), None)
