"""The input of a comparison with a saved side: the one saved with it, in the source's layout."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.core import layout
from xvalidate.errors import InputShapeError
from xvalidate.inputs import load_input_batch, pair_inputs
from xvalidate.saved.reader import SavedResult


def saved_input(saved: Mapping[str, SavedResult], given: Any, src_infos: Sequence, dst_infos: Sequence,
                dst_where: str, preprocess: str = "unit") -> tuple[dict[str, np.ndarray], dict]:
    """{source input: batch} and its description for a comparison where `saved` holds the saved
    side(s) ("src", "dst"). Two saved sides must hold the same input; inputs the caller `given`
    must equal the saved one (a saved side cannot run anything else)."""
    pairs = pair_inputs(src_infos, dst_infos, dst_where)
    if "src" in saved:
        origin = saved["src"]
        x = origin.inputs()
    else:
        origin = saved["dst"]
        held = origin.inputs()
        x = {s.name: layout.to_layout(held[d.name], d.layout, s.layout) for s, d in pairs}
    if "src" in saved and "dst" in saved:
        held = saved["dst"].inputs()
        for s, d in pairs:
            _same(layout.to_layout(x[s.name], s.layout, d.layout), held[d.name],
                  f"{saved['dst'].path}: its input {d.name!r} is not the one saved in {origin.path}")
    if given is not None:
        wanted, _ = load_input_batch(given, src_infos, preprocess=preprocess)
        for name, array in wanted.items():
            _same(array, x[name], f"inputs ({given if isinstance(given, str) else type(given).__name__}): input "
                                  f"{name!r} differs from the one saved in {origin.path}; a saved result is "
                                  "compared on its own input: give no inputs")
    described = {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in x.items()}
    return x, {"source": f"saved in {origin.path}", **(next(iter(described.values())) if len(x) == 1 else {}),
               "inputs": described}


def _same(a: np.ndarray, b: np.ndarray, message: str) -> None:
    if a.shape != b.shape:
        raise InputShapeError(f"{message} (shape {tuple(a.shape)}, saved {tuple(b.shape)})")
    if not np.array_equal(a, b):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        raise InputShapeError(f"{message} ({int((diff > 0).sum())} of {a.size} values differ, by up to {diff.max():.3g})")
