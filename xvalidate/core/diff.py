"""The diff engine: paired tensors in, per-layer results out, one chunk of the batch at a time.

    differ = Differ(src_layers, dst_layers, alignment, tolerance_for)
    for src_out, dst_out in chunks:      # {name: array} from each side's adapter
        differ.add(src_out, dst_out)
    rows, first = differ.finish()

The first chunk fixes each pair's layout transform (trying every transform the
shapes allow and keeping the closest). After every chunk the tensors of the
earliest failing pair so far are kept (one pair, from a chunk where it fails),
so that the first divergence is diagnosed on real tensors that show it.
Metrics accumulate over chunks (xvalidate.core.metrics).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from xvalidate.core import layout
from xvalidate.core.align import Alignment
from xvalidate.core.diagnose import diagnose, first_failing
from xvalidate.core.metrics import MetricAccumulator
from xvalidate.core.report import METRIC_NAMES, LayerResult
from xvalidate.core.tolerances import passes


class Differ:
    """Accumulates the comparison of every aligned pair over chunks of the batch."""

    def __init__(self, src_layers: Sequence, dst_layers: Sequence, alignment: Alignment,
                 tolerance_for: Callable[[str], tuple[float, float]]):
        self.src_info = {info.name: info for info in src_layers}
        self.dst_info = {info.name: info for info in dst_layers}
        self.src_order = {info.name: i for i, info in enumerate(src_layers)}
        self.pairs = [p for p in alignment.pairs if p.dst is not None]
        self.tolerance_for = tolerance_for
        self._transform: dict[str, str | None] = {}
        self._producer_shape: dict[str, tuple | None] = {}
        self._shape_error: dict[str, str] = {}
        self._acc: dict[str, MetricAccumulator] = {}
        self._evidence: tuple[int, np.ndarray, np.ndarray] | None = None  # pair index, src, raw dst
        self._started = False
        self.shapes: dict[str, tuple[tuple, tuple]] = {}

    def add(self, src_out: Mapping[str, np.ndarray], dst_out: Mapping[str, np.ndarray]) -> None:
        """Fold one chunk (the same samples on both sides) into every pair's metrics."""
        if not self._started:
            self._setup(src_out, dst_out)
            self._started = True
        failing = None
        for i, pair in enumerate(self.pairs):
            if pair.src in self._shape_error:
                failing = i if failing is None else failing
                continue
            acc = self._acc[pair.src]
            before = acc.mismatched
            dst = layout.apply(self._transform[pair.src], dst_out[pair.dst], self._producer_shape[pair.src])
            acc.update(src_out[pair.src], dst)
            if failing is None and acc.mismatched > before:
                failing = i
        if failing is not None and (self._evidence is None or failing < self._evidence[0]):
            pair = self.pairs[failing]
            self._evidence = (failing, np.array(src_out[pair.src]), np.array(dst_out[pair.dst]))

    def _setup(self, src_out, dst_out) -> None:
        for pair in self.pairs:
            src, dst = src_out[pair.src], dst_out[pair.dst]
            self.shapes[pair.src] = (src.shape, dst.shape)
            producer = self._dst_producer_shape(pair.dst, dst_out)
            options = layout.candidates(src.shape, dst.shape, producer)
            atol, rtol = self.tolerance_for(pair.src)
            self._producer_shape[pair.src] = producer
            if not options:
                self._shape_error[pair.src] = (f"shapes cannot agree: source {tuple(src.shape)}, "
                                               f"destination {tuple(dst.shape)}")
                continue
            if len(options) > 1:
                options.sort(key=lambda t: _max_abs(src, layout.apply(t, dst, producer)))
            self._transform[pair.src] = options[0]
            self._acc[pair.src] = MetricAccumulator(atol, rtol)

    def _dst_producer_shape(self, dst_name: str, dst_out) -> tuple | None:
        info = self.dst_info.get(dst_name)
        if info is None or len(info.inputs) != 1:
            return None
        producer = dst_out.get(info.inputs[0])
        if producer is None:
            shape = self.dst_info.get(info.inputs[0]).shape if info.inputs[0] in self.dst_info else None
            return None if shape is None or None in shape[1:] else (1,) + tuple(shape[1:])
        return producer.shape

    def finish(self) -> tuple[list[LayerResult], LayerResult | None]:
        """The per-layer rows in source order and the first divergence, with its cause."""
        rows = []
        for pair in self.pairs:
            atol, rtol = self.tolerance_for(pair.src)
            src_info, dst_info = self.src_info[pair.src], self.dst_info.get(pair.dst)
            shapes = self.shapes.get(pair.src, (None, None))
            row = LayerResult(
                index=self.src_order[pair.src], src=pair.src, dst=pair.dst, match=pair.match,
                src_op=src_info.op, dst_op=None if dst_info is None else dst_info.op,
                src_shape=None if shapes[0] is None else tuple(shapes[0]),
                dst_shape=None if shapes[1] is None else tuple(shapes[1]),
                transform=self._transform.get(pair.src), atol=atol, rtol=rtol)
            if pair.src in self._shape_error:
                row.metrics = {name: None for name in METRIC_NAMES}
                row.passed, row.note = False, self._shape_error[pair.src]
            else:
                row.metrics = self._acc[pair.src].result()
                row.passed = passes(row.metrics, atol, rtol)
            rows.append(row)
        first = first_failing(rows)
        if first is not None:
            src = raw = moved = None
            if self._evidence is not None and self.pairs[self._evidence[0]].src == first.src:
                _, src, raw = self._evidence
                moved = None if first.src in self._shape_error else layout.apply(
                    first.transform, raw, self._producer_shape[first.src])
            first.cause = diagnose(first, src, raw, moved, self.src_info[first.src],
                                   self.dst_info.get(first.dst), {r.src: r for r in rows})
        self._evidence = None
        return rows, first


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        d = np.abs(a.astype(np.float64) - b)
    return float(np.nanmax(d)) if d.size else 0.0
