"""The result of a comparison: plain data, rendered by xvalidate.report.*."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

SCHEMA_VERSION = 3

# How a finished result is written out ("summary", "dict", "json", "html", "comparison-json"...): the
# report package registers its renderers here when imported (xvalidate's __init__ imports it), so the
# core never imports the report package.
_OUTPUTS: dict[str, Callable[..., Any]] = {}


def register_output(kind: str, fn: Callable[..., Any]) -> None:
    """Make `fn` the renderer of output `kind` (called by xvalidate.report)."""
    _OUTPUTS[kind] = fn


def output(kind: str) -> Callable[..., Any]:
    """The renderer registered for `kind` (importing the package `xvalidate` registers them all)."""
    return _OUTPUTS[kind]


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
    cause:      suspected cause of a divergence (on roots of divergence), or None.
    note:       anything else worth saying about the pair (e.g. a shape mismatch).
    isolated:   with isolate, the metrics of the destination layer run on the source's values of its
                inputs; isolated_passed says whether they are within tolerance.
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
    # with isolate: the metrics of the destination layer computed from the SOURCE's values of its
    # paired inputs (so errors do not accumulate), and whether they are within tolerance
    isolated: dict[str, Any] | None = None
    isolated_passed: bool | None = None


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
    # a conversion through an intermediate model: each half compared on its own, source vs intermediate
    # (hop "export") and intermediate vs destination (hop "import"), and the hop where the divergence
    # appears (core.hops.locate); empty otherwise
    hops: list["Report"] = field(default_factory=list)
    hop: str | None = None                                    # on a hop's own report: its name
    located: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """A few lines of plain text: verdict, pairs, first divergence and its cause."""
        return output("summary")(self)

    def to_dict(self) -> dict:
        """The JSON document (schema in docs/report-schema.md)."""
        return output("dict")(self)

    def to_json(self, path: str) -> str:
        """Write the JSON document atomically; return the path."""
        return output("json")(self, path)

    def to_html(self, path: str) -> str:
        """Write one self-contained HTML file atomically; return the path."""
        return output("html")(self, path)

    def worst(self, n: int = 10) -> list[LayerResult]:
        """The n rows with the largest max_abs (rows that cannot be compared first)."""
        def key(row: LayerResult) -> float:
            v = row.metrics.get("max_abs")
            return float("inf") if v is None else float(v)
        return sorted(self.layers, key=key, reverse=True)[:n]
