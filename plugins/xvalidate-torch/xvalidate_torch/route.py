"""Route "torch-onnx": torch -> ONNX through torch.onnx.export, run in the torch worker. It is the
exporter half that via='onnx' composes with an ONNX importer (torch -> onnx -> mxnet)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xvalidate.errors import OptionError
from xvalidate.routes.base import Conversion, Route
from xvalidate.worker import get_worker

STEPS = "xvalidate_torch.steps"


class TorchOnnxRoute(Route):
    name = "torch-onnx"
    pairs = (("torch", "onnx"),)
    packages = ("torch", "onnx")
    options = {"opset": ("int", "ONNX opset (routes onnx and torch-onnx; torch exports at 13 by default).")}

    def convert(self, source: str, src: str, dst: str, out_dir: Path, opset: int | None = None,
                **options: Any) -> Conversion:
        self.check(src, dst)
        unknown = set(options) - {"input_shape"}
        if unknown:
            raise OptionError(f"via={self.name!r} takes the route option opset, got {', '.join(sorted(unknown))}")
        out_dir.mkdir(parents=True, exist_ok=True)
        worker = get_worker("torch")
        made = worker.call(f"{STEPS}:torch_to_onnx", source, str(out_dir / "model.onnx"), opset or 13)
        layers = [info.to_dict() for info in worker.layers(source)]
        hints = worker.call(f"{STEPS}:onnx_hints", made["onnx"], layers)
        return Conversion(made["onnx"], {k: tuple(v) for k, v in hints.items()}, {"onnx": made["onnx"]},
                          {"to_onnx": made["seconds"]})
