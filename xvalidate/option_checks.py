"""Checks of the user's per-layer options against the models, once their layers are known:
tolerance entries that name no layer, layer_map pairs whose shapes cannot agree."""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Mapping, Sequence

from xvalidate.core import layout
from xvalidate.errors import OptionError, UnknownLayerError

_PADDING = 8  # a spatial size this much apart may be a padding difference: a finding, not an error


def check_tolerance_names(per_layer: Mapping[str, object] | None, src_layers: Sequence) -> None:
    """Every name or pattern in `tolerances` (but "default") must match a source layer."""
    names = [info.name for info in src_layers]
    known = set(names)
    for key in per_layer or {}:
        key = str(key)
        if key == "default" or key in known or any(fnmatchcase(n, key) for n in names):
            continue
        sample = ", ".join(names[:5])
        raise UnknownLayerError(f"tolerances: {key!r} matches no layer of the source model "
                                f"({len(names)} layers: {sample}, ...)")


def check_layer_map_shapes(layer_map: Mapping[str, str], src_layers: Sequence, dst_layers: Sequence) -> None:
    """A layer_map pair whose shapes are both known and can agree under no layout transform, and
    differ by more than a padding border, is an error in the map."""
    src_shapes = {info.name: info.shape for info in src_layers}
    dst_shapes = {info.name: info.shape for info in dst_layers}
    for src, dst in layer_map.items():
        a, b = src_shapes.get(src), dst_shapes.get(dst)
        if a is None or b is None or None in a[1:] or None in b[1:]:
            continue  # unknown names are the aligner's to report; unknown shapes are checked on the data
        if not shapes_can_agree((1, *a[1:]), (1, *b[1:])):
            raise OptionError(f"layer_map: {src!r} {tuple(a)} and {dst!r} {tuple(b)} cannot hold the same tensor "
                              f"in any layout; check the pair")


def shapes_can_agree(src_shape: Sequence[int], dst_shape: Sequence[int]) -> bool:
    """True when a layout transform maps one shape onto the other, or when (with spatial axes) they
    differ only in up to two sizes by a padding border."""
    if layout.candidates(src_shape, dst_shape):
        return True
    a, b = sorted(src_shape[1:]), sorted(dst_shape[1:])
    if len(a) != len(b) or len(a) < 2:  # padding needs a spatial axis beside the channels
        return False
    off = [(x, y) for x, y in zip(a, b) if x != y]
    return len(off) <= 2 and all(abs(x - y) <= _PADDING for x, y in off)
