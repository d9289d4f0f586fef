"""Route "tflite": keras -> tflite through TFLiteConverter (float32), run in the keras worker; the name
hints are read from the tensor names in the tflite worker."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xvalidate.errors import OptionError
from xvalidate.routes.base import Conversion, Route
from xvalidate.worker import get_worker

STEPS = "xvalidate_tflite.steps"


class TFLiteRoute(Route):
    name = "tflite"
    pairs = (("keras", "tflite"),)
    packages = ("tensorflow-cpu",)
    options: dict = {}

    def convert(self, source: str, src: str, dst: str, out_dir: Path, **options: Any) -> Conversion:
        self.check(src, dst)
        if set(options) - {"input_shape"}:
            raise OptionError(f"via='tflite' takes no route options, got {', '.join(sorted(options))}")
        out_dir.mkdir(parents=True, exist_ok=True)
        keras = get_worker(src)
        made = keras.call(f"{STEPS}:keras_to_tflite", source, str(out_dir / "model.tflite"))
        names = [info.name for info in keras.layers(source)]
        hints = get_worker(dst).call(f"{STEPS}:tflite_hints", made["tflite"], names)
        return Conversion(made["tflite"], {k: tuple(v) for k, v in hints.items()}, {"tflite": made["tflite"]},
                          {"to_tflite": made["seconds"]})
