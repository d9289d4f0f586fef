"""ONNX as the hub: via='onnx' from any adapter with an ONNX exporter to any with an ONNX importer
or runtime, composed from two halves.

An exporter half is any registered route that converts (src, "onnx") (a plugin's "torch-onnx",
say); the importer halves are ONNX itself (run by onnxruntime) and MXNet's ONNX import. The
intermediate ONNX model stays among the conversion's artifacts and is the conversion's
`intermediate`, with the hints of each half, so that validate compares source vs ONNX and ONNX vs
destination too."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xvalidate.input_hint import write_input_hint
from xvalidate.registry import get_route, route_names
from xvalidate.routes.base import Conversion, Intermediate, Route
from xvalidate.routes.onnx_names import _spelled
from xvalidate.worker import get_worker

HUB = "onnx"
IMPORTERS = ("onnx", "mxnet")  # the destinations the hub reaches from an ONNX model
STEPS = "xvalidate.routes.onnx_steps"


def exporter_for(src: str) -> Route | None:
    """A registered route other than the hub that converts `src` models to ONNX, or None."""
    for name in route_names():
        if name != HUB:
            route = get_route(name)
            if (src, "onnx") in getattr(route, "pairs", ()):
                return route
    return None


def composed_pairs() -> set[tuple[str, str]]:
    """Every (src, dst) the hub composes: src exported to ONNX by another route, dst an importer."""
    pairs = set()
    for name in route_names():
        if name != HUB:
            pairs |= {(src, dst) for src, d in getattr(get_route(name), "pairs", ()) if d == "onnx"
                      for dst in IMPORTERS}
    return pairs


def reachable() -> list[tuple[str, str, str]]:
    """Every (src, dst, via) that a registered route converts (xvalidate.registry.reachable)."""
    from xvalidate.registry import reachable as every

    return every()


def compose(source: str, src: str, dst: str, out_dir: Path, **options: Any) -> Conversion:
    """`src` -> ONNX by its exporter, then ONNX -> `dst` (nothing more when `dst` is "onnx")."""
    exporter = exporter_for(src)
    first = exporter.convert(source, src, "onnx", out_dir / "export", **{k: v for k, v in options.items()
                                                                         if v is not None})
    if dst == "onnx":
        return first
    importer = get_worker(dst)
    built = importer.call(f"{STEPS}:onnx_to_mxnet", first.dst_source, str(out_dir / dst))
    inputs = get_worker(src).inputs_info(source)
    write_input_hint(built["symbol"], inputs[0].name, list(inputs[0].shape), inputs[0].layout,
                     [i.to_dict() for i in inputs])
    tensor_map = json.loads(Path(built["tensor_map"]).read_text())
    dst_names = [info.name for info in importer.layers(built["symbol"])]
    hints = {}
    for onnx_tensor, pair in first.hints.items():
        name = _spelled(tensor_map.get(onnx_tensor), dst_names)
        if name is not None and name not in hints:
            hints[name] = tuple(pair)
    artifacts = {**first.artifacts, "symbol": built["symbol"], "params": built["params"],
                 "tensor_map": built["tensor_map"]}
    hub = Intermediate(HUB, first.dst_source, dict(first.hints), import_hints(tensor_map, dst_names))
    return Conversion(built["symbol"], hints, artifacts, {**first.seconds, "to_" + dst: built["seconds"]},
                      intermediate=hub)


def import_hints(tensor_map: dict[str, str], dst_names: list[str]) -> dict[str, tuple[str, str]]:
    """{destination tensor: (ONNX tensor, "name")} from the importer's tensor map, for comparing the
    intermediate ONNX model with the imported one (the first ONNX tensor of a destination tensor wins)."""
    hints: dict[str, tuple[str, str]] = {}
    for onnx_tensor, mx_output in tensor_map.items():
        name = _spelled(mx_output, dst_names)
        if name is not None and name not in hints:
            hints[name] = (onnx_tensor, "name")
    return hints
