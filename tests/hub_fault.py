"""A route for the hub tests: the onnx route, then a fault planted in the imported model's weights
(the import half), so the three-way report has a known place to find."""
from __future__ import annotations

import json
import os
from pathlib import Path

from xvalidate.routes.onnx import OnnxRoute
from xvalidate.worker import get_worker

FAULTY_NODE = "convolution1"  # the second convolution MXNet's importer builds


class FaultyImport(OnnxRoute):
    name = "hubfault"

    def convert(self, source, src, dst, out_dir, **options):
        conversion = super().convert(source, src, dst, out_dir, **options)
        get_worker(dst).call("hub_fault:scale_weight", conversion.dst_source, conversion.artifacts["params"],
                             FAULTY_NODE, 1.5)
        return conversion


def scale_weight(symbol: str, params: str, node: str, factor: float) -> str:
    """Multiply the weight of convolution `node` in an MXNet checkpoint by `factor` (in the mxnet worker)."""
    import mxnet as mx

    nodes = json.loads(Path(symbol).read_text())["nodes"]
    conv = next(n for n in nodes if n["name"] == node)
    weight = nodes[conv["inputs"][1][0]]["name"]
    arrays = mx.nd.load(params)
    arrays[f"arg:{weight}"] = arrays[f"arg:{weight}"] * factor
    mx.nd.save(params, arrays)
    st = os.stat(symbol)  # workers key a loaded model by its symbol file's stat: load it anew
    os.utime(symbol, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    return weight
