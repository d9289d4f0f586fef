"""Route "mmdnn": Keras -> MMdnn IR -> MXNet, the steps behind `mmtoir -f keras` and
`mmtocode -f mxnet`, each in a worker of its framework (MMdnn's MXNet emitter imports
mxnet, which must not meet TensorFlow in one process). MMdnn 0.3.1 needs shims to
read TF2 Keras models: see xvalidate.routes.mmdnn_shims."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xvalidate.routes.base import Conversion, Route
from xvalidate.worker import get_worker

STEPS = "xvalidate.routes.mmdnn_steps"
_ACTIVATION = re.compile(r"_activation$", re.IGNORECASE)


class MMdnnRoute(Route):
    name = "mmdnn"
    pairs = (("keras", "mxnet"),)
    packages = ("mmdnn", "tensorflow-cpu", "mxnet")

    def pairing_name(self, name: str) -> str:
        """MMdnn names a layer's activation `<layer>_activation`."""
        return _ACTIVATION.sub("", name)

    def convert(self, source: str, src: str, dst: str, out_dir: Path, **options: Any) -> Conversion:
        self.check(src, dst)
        if options:
            from xvalidate.errors import OptionError
            raise OptionError(f"via='mmdnn' takes no route options, got {', '.join(options)}")
        keras, mxnet = get_worker(src), get_worker(dst)
        ir = keras.call(f"{STEPS}:keras_to_ir", source, str(out_dir / "ir"))
        with ThreadPoolExecutor(1) as pool:  # the keras worker loads the model for the comparison meanwhile
            layers = pool.submit(keras.layers, source)
            built = mxnet.call(f"{STEPS}:ir_to_mxnet", ir["ir_pb"], ir["ir_npy"], str(out_dir / "mxnet"))
            keras_names = [info.name for info in layers.result()]
        hints = mxnet.call(f"{STEPS}:mxnet_name_hints", built["symbol"], keras_names)
        artifacts = {"ir_json": ir["ir_json"], "ir_pb": ir["ir_pb"], "ir_npy": ir["ir_npy"],
                     "code": built["code"], "symbol": built["symbol"], "params": built["params"]}
        return Conversion(dst_source=built["symbol"], hints={k: (v, "name") for k, v in hints.items()},
                          artifacts=artifacts, seconds={"to_ir": ir["seconds"], "to_mxnet": built["seconds"]})
