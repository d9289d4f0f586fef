"""The result of validating one model through several conversion routes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xvalidate.core.report import Report, output


@dataclass
class RouteComparison:
    """`reports` maps each route that converted the model to its Report; `errors` maps each
    route that could not to its one-line error. `passed` holds when every route ran and passed."""

    model: str
    src: str
    dst: str
    routes: list[str]
    reports: dict[str, Report] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.reports) and not self.errors and all(r.passed for r in self.reports.values())

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> list[dict[str, Any]]:
        """One row per route: status, timings, layers paired, first divergence, final error."""
        rows = []
        for route in self.routes:
            report = self.reports.get(route)
            if report is None:
                rows.append({"route": route, "status": "error", "error": self.errors.get(route, "")})
                continue
            final = report.layers[-1] if report.layers else None
            rows.append({
                "route": route,
                "status": "pass" if report.passed else "fail",
                "convert_s": report.timings.get("convert"),
                "src_run_s": report.timings.get("src_run"),
                "dst_run_s": report.timings.get("dst_run"),
                "paired": len(report.layers),
                "unmatched_src": len(report.unmatched.get("src", [])),
                "first_divergence": None if report.first_divergence is None else report.first_divergence.src,
                "final_layer": None if final is None else final.src,
                "final_max_abs": None if final is None else final.metrics.get("max_abs"),
                "worst_layer": max(report.layers, key=_max_abs).src if report.layers else None,
                "worst_max_abs": max((_max_abs(r) for r in report.layers), default=None),
                "cache_hit": report.meta.get("cache_hit"),
            })
        return rows

    def table(self) -> list[dict[str, Any]]:
        """Per source layer, in source order: {"layer": name, "index": i, <route>: max_abs or None}."""
        layers: dict[str, dict[str, Any]] = {}
        for route, report in self.reports.items():
            for row in report.layers:
                entry = layers.setdefault(row.src, {"layer": row.src, "index": row.index,
                                                    **{r: None for r in self.reports}})
                entry[route] = row.metrics.get("max_abs")
        return sorted(layers.values(), key=lambda e: e["index"])

    def to_dict(self) -> dict:
        report_to_dict = output("dict")
        return {"model": self.model, "src": self.src, "dst": self.dst, "routes": self.routes,
                "passed": self.passed, "errors": self.errors, "summary": self.summary(),
                "reports": {k: report_to_dict(v) for k, v in self.reports.items()}}

    def to_json(self, path: str) -> str:
        """Write the comparison as JSON atomically; return the path."""
        return output("comparison-json")(self, path)

    def to_html(self, path: str) -> str:
        """Write one self-contained HTML page with both error curves on one plot; return the path."""
        return output("comparison-html")(self, path)


def _max_abs(row) -> float:
    v = row.metrics.get("max_abs")
    return float("inf") if v is None else float(v)
