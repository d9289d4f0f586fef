"""Refuse Keras files whose loading would run Python code they carry, unless the user trusts them.

A Lambda layer stores its function: in .h5 as marshalled bytecode, which Keras rebuilds and
calls while loading the model (the layer is called on symbolic tensors), so the code runs
before any check of ours could. The model's config JSON is readable without deserializing
anything (the h5's `model_config` attribute, the .keras zip's `config.json`): Lambda
layers are found there first and the file is refused with one line saying how to allow it.
For .keras files, Keras's own `safe_mode` is also left on unless the model is trusted.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from xvalidate.errors import InputFileError, UntrustedModelError

# classes whose config carries code that Keras turns back into a Python function
CODE_CARRYING = ("Lambda",)


def code_layers(path: str | Path) -> list[str]:
    """Names of the layers in a .h5 / .keras file whose loading would run code they carry."""
    config = _model_config(Path(path))
    return [f"{node.get('config', {}).get('name', '?')} ({node['class_name']})"
            for node in _nodes(config) if node.get("class_name") in CODE_CARRYING]


def check_trusted(path: str | Path, trust: bool) -> None:
    """Raise UntrustedModelError when the file holds code-carrying layers and `trust` is off."""
    if trust:
        return
    found = code_layers(path)
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise UntrustedModelError(
            f"{path}: refused to load: layer {found[0]}{more} holds Python code that Keras would run while "
            f"loading the file; if you trust it, pass trust_model=True (CLI: --trust-model)")


def _model_config(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":  # the .keras (v3) zip; Keras 2.12 also writes HDF5 under that name
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, RuntimeError) as exc:
        raise InputFileError(f"{path}: not a readable Keras model ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else 'corrupt'})") from None
    if raw is None:
        return {}  # weights only: load_model reports it
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable Keras model (its model_config is not JSON: {exc})") from None


def _nodes(config: Any) -> Iterator[dict]:
    """Every dict with a class_name in a Keras config, nested models and wrappers included."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _nodes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _nodes(value)
