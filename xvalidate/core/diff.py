"""The diff engine: paired tensors in, per-layer results out, one chunk of the batch at a time.

    differ = Differ(src_layers, dst_layers, alignment, tolerance_for)
    for src_out, dst_out in chunks:      # {name: array} from each side's adapter
        differ.add(src_out, dst_out)
    rows, roots = differ.finish()

With isolation, each chunk's isolated destination run (fed `differ.feeds(src_out)`) goes to
`differ.add_isolated(src_out, iso_out)`; rows then carry both errors and the roots are the layers
whose isolated error fails.

The first chunk fixes each pair's layout transform (trying every transform the shapes allow and
keeping the closest). After every chunk, each pair that fails in it while its paired inputs pass
there (a root on that chunk) keeps its tensors, those of the unpaired layers above it and of its
partner's inputs, from the first chunk where it is one (up to `max_roots` pairs), so that every
root is diagnosed on real tensors that show it. Metrics accumulate over chunks
(xvalidate.core.metrics).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

import numpy as np

from xvalidate.core import layout
from xvalidate.core.align import Alignment
from xvalidate.core.diagnose import diagnose
from xvalidate.core.metrics import MetricAccumulator
from xvalidate.core.report import METRIC_NAMES, LayerResult
from xvalidate.core.pairing import downstream_readers, upstream
from xvalidate.core.roots import is_root, tensors_above, upstream_blame
from xvalidate.core.tolerances import passes


class Differ:
    """Accumulates the comparison of every aligned pair over chunks of the batch."""

    def __init__(self, src_layers: Sequence, dst_layers: Sequence, alignment: Alignment,
                 tolerance_for: Callable[[str], tuple[float, float]], max_roots: int = 32,
                 parameters: Callable[[str, str], dict] | None = None):
        self.src_info = {info.name: info for info in src_layers}
        self.dst_info = {info.name: info for info in dst_layers}
        self.src_order = {info.name: i for i, info in enumerate(src_layers)}
        self.alignment = alignment
        self.pairs = [p for p in alignment.pairs if p.dst is not None]
        paired = {p.src: p for p in self.pairs}
        self._partners = {p.src: p.dst for p in self.pairs}
        self._partner_tensors = set(self._partners.values())
        self.upstream = {name: upstream(name, self.src_info, paired) for name in paired}
        self.tolerance_for = tolerance_for
        self.max_roots = max_roots
        self.parameters = parameters  # (source layer, destination tensor) -> {"kernels", "recurrent"}, for diagnosis
        self._transform: dict[str, str | None] = {}
        self._producer_shape: dict[str, tuple | None] = {}
        self._shape_error: dict[str, str] = {}
        self._acc: dict[str, MetricAccumulator] = {}
        self._kept: dict[str, dict] = {}  # root on some chunk -> its tensors from that chunk
        self._iso_acc: dict[str, MetricAccumulator] = {}  # with isolate: metrics of the isolated runs
        self._iso_kept: dict[str, dict] = {}  # isolated failure -> its tensors from the first chunk showing it
        self._started = False
        self.shapes: dict[str, tuple[tuple, tuple]] = {}

    def add(self, src_out: Mapping[str, np.ndarray], dst_out: Mapping[str, np.ndarray],
            inputs: Mapping[str, np.ndarray] | None = None) -> None:
        """Fold one chunk (the same samples on both sides) into every pair's metrics. inputs: the
        source model's input values of the chunk, for diagnosing a layer that reads one directly."""
        if not self._started:
            self._setup(src_out, dst_out)
            self._started = True
        failing: set[str] = set()
        for pair in self.pairs:
            if pair.src in self._shape_error:
                failing.add(pair.src)
                continue
            acc = self._acc[pair.src]
            before = acc.mismatched
            dst = layout.apply(self._transform[pair.src], dst_out[pair.dst], self._producer_shape[pair.src])
            acc.update(src_out[pair.src], dst)
            if acc.mismatched > before:
                failing.add(pair.src)
        for pair in self.pairs:
            if len(self._kept) >= self.max_roots:
                break
            if pair.src not in self._kept and is_root(pair.src, failing, self.upstream):
                self._kept[pair.src] = self._keep(pair, src_out, dst_out, inputs)

    def feeds(self, src_out: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{destination tensor: the source's value of its partner in the destination's layout}: what an
        isolated run of the destination reads instead of its own tensors (call after the first add)."""
        out = {}
        for pair in self.pairs:
            if pair.src in self._acc and pair.src in src_out:
                out[pair.dst] = layout.to_destination(self._transform[pair.src], src_out[pair.src],
                                                      self.shapes[pair.src][1], self._producer_shape[pair.src])
        return out

    def add_isolated(self, src_out: Mapping[str, np.ndarray], iso_out: Mapping[str, np.ndarray]) -> None:
        """Fold one chunk of an isolated destination run (each layer computed from the source's values of
        its inputs) into the isolated metrics; keep the tensors of the first chunk where a pair fails."""
        for pair in self.pairs:
            if pair.src not in self._acc or pair.dst not in iso_out:
                continue
            atol, rtol = self.tolerance_for(pair.src)
            acc = self._iso_acc.setdefault(pair.src, MetricAccumulator(atol, rtol))
            before = acc.mismatched
            acc.update(src_out[pair.src], layout.apply(self._transform[pair.src], iso_out[pair.dst],
                                                       self._producer_shape[pair.src]))
            if acc.mismatched > before and pair.src not in self._iso_kept and len(self._iso_kept) < self.max_roots:
                self._iso_kept[pair.src] = self._keep(pair, src_out, iso_out)

    def _keep(self, pair, src_out, dst_out, inputs: Mapping[str, np.ndarray] | None = None) -> dict:
        """Copies of what diagnosing `pair` may look at: its tensors, the source layers above it up to
        its nearest paired producers, the candidates refused on the way, the destination tensors
        above its partner (up to the partners of paired layers), and the model's input when the
        layer lists no input (it reads the model's only input)."""
        ups = self.upstream[pair.src]
        above = [n for n in tensors_above(pair.dst, self.dst_info, self._partner_tensors) if n in dst_out]
        refused = [self.alignment.rejected[n] for n in ups.path if n in self.alignment.rejected]
        src_names = [pair.src, *ups.path, *ups.producers]
        dst_names = [pair.dst, *above, *refused]
        reads_input = not self._reader(pair).inputs and inputs is not None and len(inputs) == 1
        return {"src": {n: np.array(src_out[n]) for n in src_names if n in src_out},
                "dst": {n: np.array(dst_out[n]) for n in dst_names if n in dst_out},
                "dst_above": above, "partners": {p: self._partners[p] for p in ups.producers},
                "input": np.array(next(iter(inputs.values()))) if reads_input else None}

    def _folded(self, pair):
        """The source layer the destination folded into `pair`'s layer (a "fused" pair: a Conv into the
        BatchNorm after it), or None."""
        inputs = self.src_info[pair.src].inputs
        return self.src_info.get(inputs[0]) if pair.match == "fused" and len(inputs) == 1 else None

    def _reader(self, pair):
        """The source layer whose input `pair`'s computation starts from: the folded one, else its own."""
        return self._folded(pair) or self.src_info[pair.src]

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

    def finish(self) -> tuple[list[LayerResult], list[LayerResult]]:
        """The per-layer rows in source order, and the roots of divergence in source order, each with
        its cause (a root may be an unpaired source layer, with dst None or a refused candidate)."""
        rows = self._without_healed([self._row(pair) for pair in self.pairs])
        by_src = {r.src: r for r in rows}
        roots: dict[str, LayerResult] = {}
        if self._iso_acc:  # isolated: a layer is a root when it fails on its inputs' source values
            for row in rows:
                if row.isolated_passed is False:
                    root = self._explain(row, {name: _passing(r) for name, r in by_src.items()}, self._iso_kept)
                    roots.setdefault(root.src, root)
        else:
            failing = {r.src for r in rows if not r.passed}
            for row in rows:
                if is_root(row.src, failing, self.upstream):
                    root = self._explain(row, by_src, self._kept)
                    roots.setdefault(root.src, root)
        self._kept, self._iso_kept = {}, {}
        return rows, sorted(roots.values(), key=lambda r: r.index)

    def _without_healed(self, rows: list[LayerResult]) -> list[LayerResult]:
        """Rows minus the differences every reader contradicts: a failing layer that something reads, whose
        nearest paired readers all pass. The destination does not compute that value as the source does
        (a sum re-associated by one framework, a tensor a converter folded into its consumers), but it computes
        what is built on it right: the pair is not comparable, so it goes to unmatched with the reason."""
        by_src = {r.src: r for r in rows}
        readers = downstream_readers(self.src_info, by_src)
        kept = []
        for row in rows:
            after = readers.get(row.src, [])
            if not row.passed and after and all(by_src[name].passed for name in after):
                how = row.note or f"max_abs {row.metrics.get('max_abs'):.3g}"
                self.alignment.reasons[row.src] = (
                    f"its partner {row.dst!r} differs ({how}), but every layer that reads it agrees "
                    f"({', '.join(after[:3])}): the destination computes this value another way (re-associated "
                    "or folded into its readers), so it is not compared")
                continue
            kept.append(row)
        return kept

    def _row(self, pair) -> LayerResult:
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
        if pair.src in self._iso_acc:
            row.isolated = self._iso_acc[pair.src].result()
            row.isolated_passed = passes(row.isolated, atol, rtol)
        return row

    def _explain(self, row: LayerResult, rows_by_src: Mapping[str, LayerResult], kept_by: Mapping) -> LayerResult:
        """The root `row` with its cause, or the unpaired layer above it where the blame belongs."""
        kept = kept_by.get(row.src)
        if kept is None:
            row.cause = "not diagnosed: more roots than the diagnosis keeps tensors for"
            return row
        blamed = upstream_blame(row, self.upstream[row.src], kept, self.src_info, self.src_order,
                                self.alignment.rejected, self.alignment.reasons)
        if blamed is not None:
            return blamed
        src, raw = kept["src"][row.src], kept["dst"][row.dst]
        moved = None if row.src in self._shape_error else layout.apply(row.transform, raw,
                                                                       self._producer_shape[row.src])
        params = self.parameters(row.src, row.dst) if self.parameters is not None else {}
        info = self.src_info[row.src]
        folded = self._folded(row)
        reader = folded or info  # a folded Conv's input is what the pair's computation starts from
        x = kept["src"].get(reader.inputs[0]) if len(reader.inputs) == 1 else kept.get("input")
        lstm = (x, *params["recurrent"]) if "recurrent" in params and x is not None else None
        row.cause = diagnose(row, src, raw, moved, info, self.dst_info.get(row.dst), rows_by_src,
                             params.get("kernels"), folded, lstm, x)
        return row


def _passing(row: LayerResult) -> LayerResult:
    """`row` as the isolated view sees it: its input values are the source's, so it agrees."""
    return replace(row, passed=True)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference, NaN counting as infinitely far (it ranks layout transforms)."""
    with np.errstate(invalid="ignore"):
        d = np.abs(a.astype(np.float64) - b)
    return float(np.max(np.where(np.isnan(d), np.inf, d))) if d.size else 0.0
