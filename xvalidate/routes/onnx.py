"""Route "onnx": Keras -> ONNX with tf2onnx (run by onnxruntime, or imported into MXNet),
and MXNet -> ONNX with mx.onnx.export_model. Each step runs in a worker of its framework."""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xvalidate.errors import OptionError
from xvalidate.naming import strip_suffixes
from xvalidate.routes.base import Conversion, Intermediate, Route
from xvalidate.worker import get_worker
from xvalidate.input_hint import write_input_hint

STEPS = "xvalidate.routes.onnx_steps"
NAMES = "xvalidate.routes.onnx_names"
DEFAULT_OPSET = 11  # MXNet's ONNX importer reads opsets up to 13; 11 is what tf2onnx and it agree on best
# Keras -> ONNX run by onnxruntime: attention layers become Einsum, which exists from opset 12
ONNX_RUNTIME_OPSET = 13
_PAIRING_SUFFIXES = re.compile(r"(:\d+|_output\d*|_?fwd)$", re.IGNORECASE)


class OnnxRoute(Route):
    name = "onnx"
    pairs = (("keras", "onnx"), ("keras", "mxnet"), ("mxnet", "onnx"))
    packages = ("tf2onnx", "onnx", "tensorflow-cpu", "mxnet", "onnxruntime")
    options = {"opset": ("int", "ONNX opset (route onnx)."),
               "input_shape": ("shape", "Input shape for models that do not record it, e.g. 1,3,224,224 "
                                        "(route onnx from mxnet).")}

    def check(self, src: str, dst: str) -> None:
        """Also every (src, dst) the hub composes: an exporter route for `src`, an importer for `dst`."""
        from xvalidate.routes.onnx_hub import IMPORTERS, exporter_for

        if (src, dst) not in self.pairs and dst in IMPORTERS and exporter_for(src) is not None:
            return
        super().check(src, dst)

    def reachable_pairs(self) -> set[tuple[str, str]]:
        """Its own pairs and every (src, dst) the hub composes from an exporter route and an importer."""
        from xvalidate.routes.onnx_hub import composed_pairs

        return set(self.pairs) | composed_pairs()

    def pairing_name(self, name: str) -> str:
        """tf2onnx keeps TensorFlow's tensor names (`model/conv1/Relu:0`), MXNet's exporter keeps Gluon's
        (`resnetv10_conv0_fwd`), and MXNet's importer spells both as output names (`..._output`)."""
        return strip_suffixes(name, _PAIRING_SUFFIXES)

    def needs_input_shape(self, src: str, dst: str) -> bool:
        return src == "mxnet"  # an MXNet symbol file records no input shape

    def convert(self, source: str, src: str, dst: str, out_dir: Path, opset: int | None = None,
                input_shape: list[int] | None = None, **options: Any) -> Conversion:
        self.check(src, dst)
        if (src, dst) not in self.pairs:  # composed: another route exports src to ONNX
            from xvalidate.routes.onnx_hub import compose
            return compose(source, src, dst, out_dir, opset=opset, **options)
        opset = opset or (ONNX_RUNTIME_OPSET if dst == "onnx" else DEFAULT_OPSET)
        if options:
            raise OptionError(f"via='onnx' takes the route options opset and input_shape, got {', '.join(options)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        onnx_path = str(out_dir / "model.onnx")
        if src == "mxnet":
            return self._from_mxnet(source, onnx_path, input_shape)
        keras = get_worker(src)
        made = keras.call(f"{STEPS}:keras_to_onnx", source, onnx_path, opset)
        keras_names = [info.name for info in keras.layers(source)]
        seconds = {"to_onnx": made["seconds"]}
        artifacts = {"onnx": made["onnx"]}
        if dst == "onnx":
            hints = get_worker("onnx").call(f"{NAMES}:keras_onnx_hints", made["onnx"], keras_names)
            return Conversion(made["onnx"], _tuples(hints), artifacts, seconds)
        mxnet = get_worker(dst)
        built = mxnet.call(f"{STEPS}:onnx_to_mxnet", made["onnx"], str(out_dir / "mxnet"))
        source_inputs = keras.inputs_info(source)  # tf2onnx keeps the Keras inputs' names and layouts
        first = source_inputs[0]
        write_input_hint(built["symbol"], first.name, list(first.shape), first.layout,
                         [i.to_dict() for i in source_inputs])
        mxnet_names = [info.name for info in mxnet.layers(built["symbol"])]
        with ThreadPoolExecutor(1) as pool:  # the hints of the export half, for comparing the ONNX model too
            onnx_hints = pool.submit(get_worker("onnx").call, f"{NAMES}:keras_onnx_hints", made["onnx"], keras_names)
            hints = mxnet.call(f"{NAMES}:mxnet_onnx_hints", made["onnx"], built["symbol"], keras_names, mxnet_names)
            src_hints = _tuples(onnx_hints.result())
        seconds["to_mxnet"] = built["seconds"]
        artifacts.update(symbol=built["symbol"], params=built["params"], tensor_map=built["tensor_map"])
        from xvalidate.routes.onnx_hub import import_hints

        tensor_map = json.loads(Path(built["tensor_map"]).read_text())
        hub = Intermediate("onnx", made["onnx"], src_hints, import_hints(tensor_map, mxnet_names))
        return Conversion(built["symbol"], _tuples(hints), artifacts, seconds, intermediate=hub)

    def _from_mxnet(self, symbol: str, onnx_path: str, input_shape: list[int] | None) -> Conversion:
        mxnet = get_worker("mxnet")
        if input_shape is None:
            info = mxnet.input_info(symbol)
            if any(d is None for d in info.shape[1:]):
                raise OptionError(f"{symbol}: the input shape is unknown; give inputs (CLI: --input) or the route "
                                  f"option input_shape (CLI: --input-shape 1,3,224,224)")
            input_shape = [1, *info.shape[1:]]
        params = _params_beside(symbol)
        made = mxnet.call(f"{STEPS}:mxnet_to_onnx", symbol, params, list(input_shape), onnx_path)
        mxnet_names = [info.name for info in mxnet.layers(symbol)]
        hints = get_worker("onnx").call(f"{NAMES}:gluon_onnx_hints", symbol, made["onnx"], mxnet_names)
        return Conversion(made["onnx"], _tuples(hints), {"onnx": made["onnx"]}, {"to_onnx": made["seconds"]})


def _params_beside(symbol: str) -> str:
    prefix = symbol[: -len("-symbol.json")] if symbol.endswith("-symbol.json") else symbol
    found = sorted(Path(prefix).parent.glob(Path(prefix).name + "-*.params"))
    if not found:
        from xvalidate.errors import InputFileError
        raise InputFileError(f"{symbol}: no {Path(prefix).name}-NNNN.params file beside it")
    return str(found[-1])


def _tuples(hints: dict) -> dict[str, tuple[str, str]]:
    return {k: (v[0], v[1]) if isinstance(v, (list, tuple)) else (v, "name") for k, v in hints.items()}
