"""Saved results: one model's layer outputs written to a `.xvr` file, compared later, elsewhere.

    xvalidate capture model.h5 --adapter keras --save run.xvr        # on machine A
    xvalidate compare run.xvr model.onnx --dst onnx                  # on machine B
    xvalidate compare run-a.xvr run-b.xvr

A `.xvr` file is an uncompressed `.npz` (a zip of `.npy` members) plus a JSON manifest member
(docs/saved-results.md). It is written one chunk of the batch at a time and read one layer's
rows at a time, so neither side ever holds the whole capture in memory.
"""
from __future__ import annotations

from xvalidate.saved.format import FORMAT, SUFFIX, VERSION, is_saved
from xvalidate.saved.reader import SavedResult

__all__ = ["FORMAT", "SUFFIX", "VERSION", "SavedResult", "is_saved", "save_capture"]


def __getattr__(name: str):
    if name == "save_capture":
        from xvalidate.saved.capture import save_capture
        return save_capture
    raise AttributeError(f"module 'xvalidate.saved' has no attribute {name!r}")
