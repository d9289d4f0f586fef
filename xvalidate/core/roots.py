"""Roots of divergence: failing layers whose paired inputs all pass.

A layer's inputs are its nearest *paired* producers: unpaired layers between (a Conv folded into
its BatchNorm, an activation whose partner vanished, a layer whose candidate was refused) are
looked through, and remembered as the `path`, where the blame may belong instead (see
`upstream_blame`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from xvalidate.core import layout
from xvalidate.core.align import ACTIVATIONS, finding_shapes
from xvalidate.core.causes import activation
from xvalidate.core.causes.evidence import close, describe
from xvalidate.core.causes.padding import shape_cause
from xvalidate.core.report import METRIC_NAMES, LayerResult


@dataclass
class Upstream:
    """The nearest paired producers of a layer and the unpaired layers met on the way, nearest first."""

    producers: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)


def upstream(name: str, src_by_name: Mapping, paired: Mapping) -> Upstream:
    """Walk up from source layer `name` through unpaired layers to the nearest paired producers."""
    out = Upstream()
    seen: set[str] = set()
    queue = list(src_by_name[name].inputs) if name in src_by_name else []
    while queue:
        producer = queue.pop(0)
        if producer in seen or producer not in src_by_name:
            continue
        seen.add(producer)
        if producer in paired:
            out.producers.append(producer)
        else:
            out.path.append(producer)
            queue.extend(src_by_name[producer].inputs)
    return out


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
    """A root on an unpaired layer upstream of failing `row`, when the tensors show the fault is there:
    - a layer whose structural candidate was refused for a shape that reads as a finding (padding);
    - a layer the destination lacks: the destination input of `row`'s partner equals the source
      value before that layer's activation.
    `kept`: tensors of the chunk where `row` was a root: "src" {layer: array}, "dst" {tensor: array},
    "dst_inputs" [names of the inputs of row's partner]."""
    src_t, dst_t = kept.get("src", {}), kept.get("dst", {})
    for name in reversed(ups.path):  # the earliest first
        candidate = rejected.get(name)
        if candidate in dst_t and name in src_t and finding_shapes(src_t[name].shape, dst_t[candidate].shape):
            cause = shape_cause(src_t[name], dst_t[candidate], src_info.get(name), None)
            return unpaired_row(name, order[name], src_info.get(name), cause, reasons.get(name, ""), candidate,
                                tuple(src_t[name].shape), tuple(dst_t[candidate].shape))
    for name in ups.path:  # nearest first
        info = src_info.get(name)
        if info is None or name not in src_t or info.kinds[-1] not in ACTIVATIONS:
            continue
        for dst_name in kept.get("dst_inputs", []):
            moved = _in_source_layout(src_t[name], dst_t.get(dst_name))
            if moved is None or close(src_t[name], moved):
                continue
            lacking = activation.missing(moved, src_t[name])
            if lacking:
                cause = (f"activation: the destination lacks {describe(info)}: the input of {row.dst!r} equals the "
                         f"value before its {lacking}; add the {lacking} in the destination")
                return unpaired_row(name, order[name], info, cause,
                                    f"no destination partner; {row.src!r} receives its input without it")
    return None


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
