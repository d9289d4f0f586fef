"""The constants of the `.xvr` format and the names of its members (docs/saved-results.md)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FORMAT = "xvalidate-results"
VERSION = 1
SUFFIX = ".xvr"
MANIFEST = "manifest.json"


def is_saved(model: Any) -> bool:
    """Whether `model` names a saved result (a path ending in .xvr) rather than a model."""
    return isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == SUFFIX


def input_member(index: int) -> str:
    """The member holding the whole batch of the model's `index`-th input."""
    return f"input{index:03d}.npy"


def layer_member(layer: int, chunk: int) -> str:
    """The member holding the rows of chunk `chunk` of the `layer`-th captured tensor."""
    return f"l{layer:05d}_c{chunk:05d}.npy"


def parameter_member(index: int) -> str:
    """The member holding the `index`-th distinct parameter array (a kernel, an LSTM's W, R or B)."""
    return f"p{index:05d}.npy"
