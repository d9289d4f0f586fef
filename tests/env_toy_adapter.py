"""A numpy-only adapter whose worker runs in the keras-mxnet worker environment (any environment
with numpy would do): shipped there with xvalidate_adapters.base."""
import dataclasses

import numpy as np

from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo


class EnvToyAdapter(Adapter):
    """y = relu(x @ w0) @ w1 from an .npz of w0, w1."""
    name, layout, extensions = "envtoy", "NC", (".npz",)

    @property
    def environment(self):  # read in the parent only: the worker needs no xvalidate.routes
        from xvalidate.routes.keras_mxnet import ENVIRONMENT

        return dataclasses.replace(ENVIRONMENT, modules=("xvalidate_adapters.base", "env_toy_adapter"))

    def load(self, source):
        return dict(np.load(source))

    def input_info(self, model):
        return InputInfo("x", (None, model["w0"].shape[0]), "float32", "NC")

    def layers(self, model):
        return [LayerInfo("dense0", "matmul", (None, model["w0"].shape[1]), "NC", ["dense"]),
                LayerInfo("relu0", "relu", (None, model["w0"].shape[1]), "NC", ["relu"], ["dense0"]),
                LayerInfo("dense1", "matmul", (None, model["w1"].shape[1]), "NC", ["dense"], ["relu0"])]

    def run(self, model, x, layers=None):
        out = {"dense0": x @ model["w0"]}
        out["relu0"] = np.maximum(out["dense0"], 0)
        out["dense1"] = out["relu0"] @ model["w1"]
        return {k: v for k, v in out.items() if layers is None or k in layers}
