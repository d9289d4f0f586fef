"""Steps run in the torch worker: export a loaded torch model to ONNX, and the name hints
{ONNX tensor: (torch layer, how)} read from the exporter's scoped node names."""
from __future__ import annotations

import re
import time
from typing import Sequence

from xvalidate.errors import ConversionError

DEFAULT_OPSET = 13  # the TorchScript-based exporter; MXNet's ONNX importer reads opsets up to 13
_REPEAT = re.compile(r"^(.*)_(\d+)$")


def torch_to_onnx(source: str, onnx_path: str, opset: int = DEFAULT_OPSET) -> dict:
    """Export the torch model at `source` (as the worker's adapter loads it) to `onnx_path`, batch dynamic.
    Returns {"onnx", "seconds", "opset"}."""
    import torch

    from xvalidate.registry import get_adapter

    adapter = get_adapter("torch")
    model = adapter.load(source)
    if source.endswith(".pt2"):
        raise ConversionError(f"{source}: a torch.export program exports to ONNX only with the dynamo exporter "
                              f"(package onnxscript), not installed here; give the nn.Module or a TorchScript .pt")
    start = time.perf_counter()
    example = adapter._probe(model)
    try:
        torch.onnx.export(model.module, (example,), onnx_path, dynamo=False, opset_version=int(opset),
                          input_names=["x"], output_names=["output"],
                          dynamic_axes={"x": {0: "batch"}, "output": {0: "batch"}})
    except Exception as exc:  # the exporter raises whatever fails in it
        line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{source}: torch.onnx.export failed: {type(exc).__name__}: {line}") from None
    return {"onnx": onnx_path, "seconds": time.perf_counter() - start, "opset": int(opset)}


def onnx_hints(onnx_path: str, torch_layers: Sequence[dict]) -> dict[str, tuple[str, str]]:
    """{ONNX tensor: (torch layer, "name" | "fused")}. The exporter names a node by the module path of
    the call (`/layer1/layer1.0/conv1/Conv`; a second call of module `pool` is scope `pool_1`, a second
    functional relu in a scope is `Relu_1`); these are the adapter's names `layer1.0.conv1`, `pool@1`,
    `layer1.0.relu@1`. A Conv whose BatchNorm the exporter folded in stands for that BatchNorm ("fused")."""
    import onnx

    by_name = {info["name"]: info for info in torch_layers}
    folded = {info["inputs"][0]: info["name"] for info in torch_layers
              if info["kinds"] == ["bn"] and len(info["inputs"]) == 1}
    hints: dict[str, tuple[str, str]] = {}
    for node in onnx.load(onnx_path, load_external_data=False).graph.node:
        name = _torch_name(node.name, node.op_type, by_name)
        if name is None or not node.output:
            continue
        if node.op_type == "Conv" and name in folded:
            hints[node.output[0]] = (folded[name], "fused")
        else:
            hints[node.output[0]] = (name, "name")
    return hints


def _torch_name(node_name: str, op_type: str, known: dict) -> str | None:
    parts = [p for p in node_name.split("/") if p]
    if not parts:
        return None
    *scopes, op = parts
    path = _module_path(scopes)
    if path in known:  # a module call: its op is the module's own
        return path
    base, repeat = op, 0
    found = _REPEAT.match(op)
    if found and found.group(1) == op_type:
        base, repeat = found.group(1), int(found.group(2))
    function = base.lower()
    name = f"{path}.{function}" if path else function
    name = name if repeat == 0 else f"{name}@{repeat}"
    return name if name in known else None


def _module_path(scopes: Sequence[str]) -> str:
    """`layer1/layer1.0/conv1` -> `layer1.0.conv1`; `pool_1` (a second call) -> `pool@1`."""
    path, last = "", ""
    for scope in scopes:
        if last and scope.startswith(last + "."):
            path = path[: len(path) - len(last)] + scope
        else:
            path = f"{path}.{scope}" if path else scope
        last = scope
    found = _REPEAT.match(path)
    return f"{found.group(1)}@{found.group(2)}" if found else path
