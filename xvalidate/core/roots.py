"""Roots of divergence: failing layers whose paired inputs all pass.

A layer's inputs are its nearest *paired* producers: unpaired layers between (a Conv folded into
its BatchNorm, an activation whose partner vanished, a layer whose candidate was refused) are
looked through, and remembered as the `path`, where the blame may belong instead (see
`upstream_blame`)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from xvalidate.core import layout
from xvalidate.core.align import ACTIVATIONS, finding_shapes
from xvalidate.core.pairing import Upstream
from xvalidate.core.causes import activation
from xvalidate.core.causes import layout as layout_cause
from xvalidate.core.causes.evidence import Evidence, close, describe
from xvalidate.core.causes.padding import shape_cause
from xvalidate.core.report import METRIC_NAMES, LayerResult


def is_root(name: str, failing: set[str], ups: Mapping[str, Upstream]) -> bool:
    """A failing layer none of whose nearest paired producers fails."""
    return name in failing and not any(p in failing for p in ups[name].producers)


def unpaired_row(name: str, index: int, info, cause: str, note: str, dst: str | None = None,
                 src_shape=None, dst_shape=None) -> LayerResult:
    """A root placed on a source layer that has no comparable partner."""
    return LayerResult(index=index, src=name, dst=dst, match="structural" if dst else "none",
                       src_op=getattr(info, "op", ""), src_shape=src_shape, dst_shape=dst_shape,
                       metrics={m: None for m in METRIC_NAMES}, passed=False, cause=cause, note=note)


def upstream_blame(row: LayerResult, ups: Upstream, kept: Mapping, src_info: Mapping, order: Mapping,
                   rejected: Mapping[str, str], reasons: Mapping[str, str]) -> LayerResult | None:
    """Where the tensors put the blame for failing root `row`, when it is not `row`'s own computation,
    tried in this order:
    - an unpaired layer above whose structural candidate was refused for a shape that reads as a
      finding (padding): a new root there;
    - an unpaired activation layer above that the destination lacks (a destination tensor feeding
      `row`'s partner equals the source value before that activation): a new root there;
    - `row`'s own activation lacking (its partner is not its output; the value before it is above);
    - what the destination does between a paired producer and `row` (an extra activation, a
      transpose): `row` itself, with that cause.
    `kept`: tensors of the chunk where `row` was a root: "src" {layer: array}, "dst" {tensor: array},
    "dst_above" [destination tensors above row's partner, nearest first], "partners" {src: dst}."""
    return (_refused_shape(ups, kept, src_info, order, rejected, reasons)
            or _lacking_above(row, ups, kept, src_info, order)
            or _own_activation_lacking(row, kept, src_info)
            or _edge(row, ups, kept, src_info))


def _refused_shape(ups, kept, src_info, order, rejected, reasons) -> LayerResult | None:
    src_t, dst_t = kept.get("src", {}), kept.get("dst", {})
    for name in reversed(ups.path):  # the earliest first
        candidate = rejected.get(name)
        if candidate in dst_t and name in src_t and finding_shapes(src_t[name].shape, dst_t[candidate].shape):
            cause = shape_cause(src_t[name], dst_t[candidate], src_info.get(name), None)
            return unpaired_row(name, order[name], src_info.get(name), cause, reasons.get(name, ""), candidate,
                                tuple(src_t[name].shape), tuple(dst_t[candidate].shape))
    return None


def _lacking_above(row, ups, kept, src_info, order) -> LayerResult | None:
    src_t, dst_t = kept.get("src", {}), kept.get("dst", {})
    above = [dst_t[n] for n in kept.get("dst_above", []) if n in dst_t]
    for name in ups.path:  # nearest first
        info = src_info.get(name)
        if info is None or name not in src_t or info.kinds[-1] not in ACTIVATIONS:
            continue
        for tensor in above:
            moved = _in_source_layout(src_t[name], tensor)
            if moved is None or close(src_t[name], moved):
                continue
            lacking = activation.missing(moved, src_t[name])
            if lacking:
                cause = (f"activation: the destination lacks {describe(info)}: {row.src!r} receives the value "
                         f"before its {lacking}; add the {lacking} in the destination")
                return unpaired_row(name, order[name], info, cause,
                                    f"no destination partner; {row.src!r} receives its input without it")
    return None


def _own_activation_lacking(row, kept, src_info) -> LayerResult | None:
    src_t, dst_t = kept.get("src", {}), kept.get("dst", {})
    own = src_info.get(row.src)
    if own is None or own.kinds[-1] not in ACTIVATIONS or row.src not in src_t:
        return None
    partner = _in_source_layout(src_t[row.src], dst_t.get(row.dst))
    for name in kept.get("dst_above", []):  # its partner is not its output: is the value before it there?
        moved = _in_source_layout(src_t[row.src], dst_t.get(name))
        lacking = None if moved is None else activation.missing(moved, src_t[row.src])
        if lacking and not _applies(lacking, moved, partner):
            row.cause = (f"activation: the destination lacks the {lacking} of {describe(own)}: tensor {name!r}, "
                         f"above its partner {row.dst!r}, holds the value before it; add the {lacking}")
            return row
    return None


def _applies(name: str, before: np.ndarray, partner: np.ndarray | None) -> bool:
    """The partner is the activation `name` of the tensor above it: the destination does apply it."""
    if partner is None:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        return close(activation.ACTIVATIONS[name](before), partner)


def _edge(row, ups, kept, src_info) -> LayerResult | None:
    if any(src_info[n].kinds[-1] in ACTIVATIONS for n in ups.path if n in src_info):
        return None  # an activation between the two sides' producers: the edge checks would misread it
    src_t, dst_t, partners = kept.get("src", {}), kept.get("dst", {}), kept.get("partners", {})
    for producer in ups.producers:
        if producer not in src_t:
            continue
        for name in kept.get("dst_above", []):
            if name == partners.get(producer) or name not in dst_t:
                continue
            cause = _edge_cause(src_t[producer], dst_t[name], src_info.get(producer), src_info.get(row.src), name)
            if cause:
                row.cause = cause
                return row
    return None


def _edge_cause(src: np.ndarray, dst: np.ndarray, producer, consumer, tensor: str) -> str | None:
    """What the destination did to the (correct) value of `producer` on its way to `consumer`:
    an extra activation, or an axis order changed."""
    moved = _in_source_layout(src, dst)
    if moved is None:
        return None
    extra = activation.missing(src, moved)
    if extra:
        return (f"activation: the destination applies an extra {extra} to the output of {describe(producer)} before "
                f"{describe(consumer)} (tensor {tensor!r} equals {extra} of the source value): remove it")
    if not close(src, moved) and layout_cause.axes(Evidence(src.astype(np.float64), moved, dst, producer)):
        return (f"layout: the destination feeds {describe(consumer)} with the output of {describe(producer)} in "
                f"another axis order (tensor {tensor!r}): remove or fix that transpose")
    return None


def tensors_above(dst: str, dst_info: Mapping, stop: set[str], depth: int = 4) -> list[str]:
    """Destination tensors feeding `dst`, nearest first, up to `depth` steps and not beyond the
    tensors in `stop` (the partners of paired source layers), which are included."""
    out: list[str] = []
    frontier = [dst]
    for _ in range(depth):
        nxt = []
        for name in frontier:
            info = dst_info.get(name)
            for producer in [] if info is None else info.inputs:
                if producer not in out and producer != dst:
                    out.append(producer)
                    if producer not in stop:
                        nxt.append(producer)
        frontier = nxt
    return out


def _in_source_layout(src: np.ndarray, dst: np.ndarray | None) -> np.ndarray | None:
    """`dst` moved into the layout of `src` (the closest of the transforms the shapes allow), or None."""
    if dst is None:
        return None
    best = None
    for transform in layout.candidates(src.shape, dst.shape):
        if transform is not None and transform.startswith("flatten:"):
            continue
        moved = layout.apply(transform, dst).astype(np.float64)
        error = float(np.max(np.abs(src - moved))) if src.size else 0.0
        if best is None or error < best[0]:
            best = (error, moved)
    return None if best is None else best[1]
