"""The JSON form of a Report (schema: docs/report-schema.md)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from typing import Any

from xvalidate.core.report import SCHEMA_VERSION, LayerResult, Report
from xvalidate.report.files import write_atomic


def _encode(value: Any) -> Any:
    """inf/-inf/nan as strings (JSON has no such numbers), tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _encode(value.item())
    return value


def _decode(value: Any) -> Any:
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _row(row: LayerResult) -> dict:
    return _encode(asdict(row))


def report_to_dict(report: Report) -> dict:
    """The report as a JSON-ready dict."""
    data = {"schema_version": SCHEMA_VERSION}
    for f in fields(report):
        value = getattr(report, f.name)
        if f.name == "layers":
            data["layers"] = [_row(r) for r in value]
        elif f.name == "first_divergence":
            data["first_divergence"] = None if value is None else value.src
        elif f.name == "roots":
            data["roots"] = [_row(r) for r in value]
        elif f.name == "hops":
            data["hops"] = [report_to_dict(hop) for hop in value]
        else:
            data[f.name] = _encode(value)
    return data


def report_from_dict(data: dict) -> Report:
    """A Report back from `report_to_dict`'s output."""
    data = dict(data)
    data.pop("schema_version", None)
    rows = [_layer_result(r) for r in data.pop("layers")]
    first = data.pop("first_divergence")
    by_src = {r.src: r for r in rows}
    roots = [by_src.get(r["src"]) or _layer_result(r) for r in data.pop("roots", [])]
    hops = [report_from_dict(hop) for hop in data.pop("hops", [])]
    report = Report(layers=rows, roots=roots, hops=hops, **{k: _decode(v) for k, v in data.items()})
    report.first_divergence = next((r for r in roots if r.src == first), None) or by_src.get(first)
    return report


def _layer_result(data: dict) -> LayerResult:
    data = _decode(data)
    for key in ("src_shape", "dst_shape"):
        if data.get(key) is not None:
            data[key] = tuple(data[key])
    return LayerResult(**data)


def write_json(report: Report, path: str) -> str:
    """Write the report as JSON, atomically."""
    return write_atomic(path, json.dumps(report_to_dict(report), indent=1) + "\n")
