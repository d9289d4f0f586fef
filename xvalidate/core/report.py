"""The result of a comparison: plain data, rendered by xvalidate.report.*."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2

# Keys of LayerResult.metrics, in display order.
METRIC_NAMES = (
    "max_abs", "mean_abs", "rmse", "max_rel", "cosine", "diff_var", "snr_db",
    "mismatched", "size", "nan_src", "nan_dst", "inf_src", "inf_dst", "top1", "top5",
)


@dataclass
class LayerResult:
    """One paired (or unpairable) source layer.

    index:      position in the source model's topological order.
    src, dst:   tensor names on each side (dst is None when nothing pairs).
    match:      how the pair was made: "name", "normalized", "layer_map",
                "structural", "fused" (dst output of fused ops, e.g. Conv+BN) or "none".
    transform:  how dst was brought to src's layout before comparing, e.g.
                "NCHW->NHWC", "flatten:NCHW->NHWC", or None.
    metrics:    {name: value} for the names in METRIC_NAMES; None where not defined.
    passed:     within tolerance (False when shapes cannot agree).
    cause:      suspected cause of a divergence (first divergence only), or None.
    note:       anything else worth saying about the pair (e.g. a shape mismatch).
    """

    index: int
    src: str
    dst: str | None
    match: str
    src_op: str = ""
    dst_op: str | None = None
    src_shape: tuple | None = None
    dst_shape: tuple | None = None
    transform: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    atol: float = 0.0
    rtol: float = 0.0
    passed: bool = True
    cause: str | None = None
    note: str | None = None


@dataclass
class Report:
    """A comparison of two models. `bool(report)` is the verdict."""

    src: str                      # source adapter name
    dst: str                      # destination adapter name
    src_model: str                # what the source model was (path or description)
    dst_model: str
    layers: list[LayerResult]     # paired rows, in source order
    unmatched: dict[str, list[str]] = field(default_factory=lambda: {"src": [], "dst": []})
    via: str | None = None        # route name when a conversion was made
    passed: bool = True
    first_divergence: LayerResult | None = None  # the first of `roots`
    # failing layers whose paired inputs all pass, in source order, each with its cause; a root may be
    # a source layer without a comparable partner (dst None), where the tensors put the blame
    roots: list[LayerResult] = field(default_factory=list)
    unmatched_reasons: dict[str, str] = field(default_factory=dict)  # unmatched source layer -> why
    inputs: dict[str, Any] = field(default_factory=dict)      # shape, dtype, source, seed
    tolerances: dict[str, Any] = field(default_factory=dict)  # atol, rtol, per-layer overrides
    timings: dict[str, float] = field(default_factory=dict)   # stage -> seconds
    artifacts: dict[str, str] = field(default_factory=dict)   # name -> path
    meta: dict[str, Any] = field(default_factory=dict)        # versions, created, cache hit...

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """A few lines of plain text: verdict, pairs, first divergence and its cause."""
        from xvalidate.report.text import summary_text
        return summary_text(self)

    def to_dict(self) -> dict:
        """The JSON document (schema in docs/report-schema.md)."""
        from xvalidate.report.json import report_to_dict
        return report_to_dict(self)

    def to_json(self, path: str) -> str:
        """Write the JSON document atomically; return the path."""
        from xvalidate.report.json import write_json
        return write_json(self, path)

    def to_html(self, path: str) -> str:
        """Write one self-contained HTML file atomically; return the path."""
        from xvalidate.report.html import write_html
        return write_html(self, path)

    def worst(self, n: int = 10) -> list[LayerResult]:
        """The n rows with the largest max_abs (rows that cannot be compared first)."""
        def key(row: LayerResult) -> float:
            v = row.metrics.get("max_abs")
            return float("inf") if v is None else float(v)
        return sorted(self.layers, key=key, reverse=True)[:n]
