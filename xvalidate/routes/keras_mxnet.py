"""Route "keras-mxnet": Keras -> MXNet through keras-mxnet, Keras 2.2.4 running on MXNet's backend
(seed 2's third way). The tf.keras worker writes the model's config and h5 weights; a worker in
the keras-mxnet environment (a venv of its own: its `keras` package clashes with TensorFlow's)
rebuilds the model and saves it with `keras.models.save_mxnet_model`; the mxnet adapter captures
the result. Name hints come from the Keras layers' output nodes in the saved symbol."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xvalidate.environments import Environment
from xvalidate.errors import OptionError
from xvalidate.routes.base import Conversion, Route
from xvalidate.worker import get_env_worker, get_worker

EXPORT = "xvalidate.routes.keras_mxnet_export"
STEPS = "xvalidate.routes.keras_mxnet_steps"

# keras-mxnet 2.2.4.3 and what pip resolves for it on Python 3.11, pinned (numpy < 1.24 for mxnet 1.9.1)
ENVIRONMENT = Environment(
    name="keras-mxnet",
    requirements=("keras-mxnet==2.2.4.3", "mxnet==1.9.1", "numpy==1.23.5", "h5py==3.16.0", "scipy==1.15.3",
                  "keras-applications==1.0.8", "keras-preprocessing==1.1.2", "pyyaml==6.0.4", "six==1.17.0"),
    modules=(STEPS, "xvalidate.routes.keras_mxnet_config", "xvalidate.routes.keras_mxnet_shims",
             "xvalidate.input_hint"),
    # its own keras.json (tf.keras reads ~/.keras/keras.json too), and the backend whatever that file says
    variables={"KERAS_HOME": "{private}/keras", "KERAS_BACKEND": "mxnet"},
    check="import numpy, mxnet, h5py, scipy, keras_applications",
)


class KerasMXNetRoute(Route):
    """keras -> mxnet: tf.keras exports config and weights, keras-mxnet (in its environment) saves the symbol."""

    name = "keras-mxnet"
    pairs = (("keras", "mxnet"),)
    packages = ("tensorflow-cpu", "mxnet")  # the environment's pins are part of xvalidate's version
    environment = ENVIRONMENT

    def convert(self, source: str, src: str, dst: str, out_dir: Path, **options: Any) -> Conversion:
        self.check(src, dst)
        if options:
            raise OptionError(f"via='keras-mxnet' takes no route options, got {', '.join(options)}")
        exported = get_worker(src).call(f"{EXPORT}:export_keras", source, str(out_dir / "keras"))
        built = get_env_worker(ENVIRONMENT).call(f"{STEPS}:build_mxnet", exported["config"], exported["weights"],
                                                 str(out_dir / "mxnet"), str(source))
        tensors = {info.name for info in get_worker(dst).layers(built["symbol"])}
        hints = {node: (layer, "name") for node, layer in built["hints"].items() if node in tensors}
        artifacts = {"config": exported["config"], "weights": exported["weights"], "symbol": built["symbol"],
                     "params": built["params"]}
        return Conversion(dst_source=built["symbol"], hints=hints, artifacts=artifacts,
                          seconds={"export": exported["seconds"], "to_mxnet": built["seconds"]})
