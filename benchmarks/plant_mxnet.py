"""Planting known faults into a correct MXNet model (symbol JSON + params), inside an MXNet worker.

`plant(kind, symbol_path, node, out_prefix, seed)` writes `<out_prefix>-symbol.json` and
`<out_prefix>-0000.params` with one fault at the node named `node`, and returns the symbol path.
Kinds: weights, kernel transposed, channel order, batchnorm (moving variance), batchnorm-eps,
activation dropped (the node becomes an identity copy)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np


def _params_of(symbol_path: str) -> Path:
    prefix = symbol_path[: -len("-symbol.json")]
    return sorted(Path(prefix).parent.glob(Path(prefix).name + "-[0-9]*.params"))[-1]


def _node(nodes: list, name: str) -> dict:
    return next(n for n in nodes if n["name"] == name)


def _input_name(nodes: list, node: dict, index: int) -> str:
    return nodes[node["inputs"][index][0]]["name"]


def plant(kind: str, symbol_path: str, name: str, out_prefix: str, seed: int = 0) -> str:
    import mxnet as mx

    rng = np.random.default_rng(seed)
    graph = json.loads(Path(symbol_path).read_text())
    nodes = graph["nodes"]
    params = {k: v.asnumpy() for k, v in mx.nd.load(str(_params_of(symbol_path))).items()}
    node = _node(nodes, name)
    if kind in ("weights", "kernel transposed", "channel order"):
        if kind == "channel order" and int(node.get("attrs", {}).get("num_group", "1")) > 1:
            raise ValueError(f"{name}: a grouped convolution's kernels do not reorder its outputs")
        key = "arg:" + _input_name(nodes, node, 1)
        w = params[key]
        if kind == "weights":
            params[key] = w + rng.normal(0.0, 0.3 * float(w.std()), w.shape).astype(w.dtype)
        elif kind == "kernel transposed":
            if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] < 2:
                raise ValueError(f"{name}: kernel {w.shape[2:]} is not square")
            params[key] = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
        else:
            w = w.copy()
            w[[0, 1]] = w[[1, 0]]
            params[key] = w
            if len(node["inputs"]) > 2 and "arg:" + _input_name(nodes, node, 2) in params:
                b = params["arg:" + _input_name(nodes, node, 2)].copy()
                b[[0, 1]] = b[[1, 0]]
                params["arg:" + _input_name(nodes, node, 2)] = b
    elif kind == "batchnorm":
        key = "aux:" + _input_name(nodes, node, 4)
        params[key] = params[key] * rng.uniform(1.5, 3.0, params[key].shape).astype(params[key].dtype)
    elif kind == "batchnorm-eps":
        node.setdefault("attrs", {})["eps"] = "0.5"
    elif kind == "activation dropped":
        node["op"], node["attrs"] = "_copy", {}
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + "-symbol.json").write_text(json.dumps(graph))
    mx.nd.save(str(out) + "-0000.params", {k: mx.nd.array(v) for k, v in params.items()})
    hint = Path(symbol_path[: -len("-symbol.json")] + "-input.json")
    if hint.exists():
        shutil.copy(hint, str(out) + "-input.json")
    return str(out) + "-symbol.json"
