"""The input hint kept beside a model file that does not record its input (an MXNet symbol):
`prefix-input.json` with {"name", "shape", "layout"} and, for several inputs, "inputs".

Written by routes and adapters alike, so it lives apart from both."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def input_hint_path(symbol_path: str | Path) -> Path:
    """Where the input hint of the model at `symbol_path` is kept: `prefix-input.json`."""
    symbol_path = str(symbol_path)
    prefix = symbol_path[: -len("-symbol.json")] if symbol_path.endswith("-symbol.json") else symbol_path
    return Path(prefix + "-input.json")


def write_input_hint(symbol_path: str | Path, name: str | None, shape: Sequence[int | None], layout: str,
                     inputs: Sequence[dict] | None = None) -> None:
    """Record the input shape and layout of a model beside its symbol file; `inputs` lists every
    input ({"name", "shape", "layout"}) of a model with several."""
    hint = {"name": name, "shape": list(shape), "layout": layout}
    if inputs:
        hint["inputs"] = [{"name": i["name"], "shape": list(i["shape"]), "layout": i["layout"],
                           "dtype": i.get("dtype", "float32")} for i in inputs]
    input_hint_path(symbol_path).write_text(json.dumps(hint))


def read_input_hint(symbol_path: str | Path) -> dict:
    """The hint beside `symbol_path`, or {} when there is none or it cannot be read."""
    path = input_hint_path(symbol_path)
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}
