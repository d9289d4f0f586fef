"""Which pairs can be compared, and why the others are not made.

- `shapes_compatible`: whether two shapes can hold the same values under a layout transform;
- `finding_shapes`: whether two shapes differ the way a real fault makes them differ (padding, layout);
- `drop_impossible`: removes the pairs that cannot be compared (see xvalidate.core.align);
- `explain_unmatched`: a reason for every source layer left without a partner;
- `order_calls`: the calls of one layer (name, name@1...) given the partners their inputs call for.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Mapping

from xvalidate.core import layout

def shapes_compatible(a, b) -> bool:
    """Whether tensors of shapes `a` and `b` (batch first) can hold the same values under a layout
    transform the engine knows. Unknown shapes (None, or None dimensions) are taken as compatible."""
    if a is None or b is None or None in tuple(a)[1:] or None in tuple(b)[1:]:
        return True
    a, b = (1, *tuple(a)[1:]), (1, *tuple(b)[1:])
    return bool(layout.candidates(a, b))


def finding_shapes(a, b) -> bool:
    """Shapes that differ the way a real conversion fault makes them differ: the same rank with
    the same channel count under some reading and a spatial size a few pixels off (padding), or
    the same dimensions in another order (layout)."""
    a, b = tuple(a)[1:], tuple(b)[1:]
    if sorted(a) == sorted(b):
        return True
    if len(a) != len(b) or len(a) < 2:
        return False
    for channel in {b[0], b[-1]}:
        spatial_b = b[1:] if channel == b[0] else b[:-1]
        if a[-1] == channel and all(0 < abs(x - y) <= 10 for x, y in zip(a[:-1], spatial_b)):
            return True
        if a[0] == channel and all(0 < abs(x - y) <= 10 for x, y in zip(a[1:], spatial_b)):
            return True
    return False


def drop_impossible(src_layers, dst_layers, found: dict, src_shapes, dst_shapes, trusted: set[str]) -> dict[str, str]:
    """Remove the pairs that cannot be compared (`found`: {src layer: Pair}, edited in place);
    return {source layer: reason}. Pairs made by a match in `trusted` always stand."""
    reasons: dict[str, str] = {}
    for info in src_layers:
        pair = found.get(info.name)
        if pair is None or pair.match in trusted:
            continue
        a, b = src_shapes.get(pair.src), dst_shapes.get(pair.dst)
        if shapes_compatible(a, b) or (pair.match == "normalized" and finding_shapes(a, b)):
            continue
        del found[info.name]
        reasons[info.name] = (f"its {pair.match} partner {pair.dst!r} has shape {_fmt(b)} where it has "
                              f"{_fmt(a)}: no layout makes them comparable")
    bits, position = ancestors(dst_layers)
    src_by_name = {i.name: i for i in src_layers}
    for info in src_layers:
        pair = found.get(info.name)
        if pair is None or pair.match != "structural":
            continue
        for producer in upstream(info.name, src_by_name, found).producers:
            partner = found[producer].dst
            if partner in position and not bits.get(pair.dst, 0) >> position[partner] & 1:
                del found[info.name]
                reasons[info.name] = (f"its structural partner {pair.dst!r} does not descend from {partner!r}, "
                                      f"the partner of its input {producer!r}: the branches differ")
                break
    return reasons


def _fmt(shape) -> str:
    return "unknown" if shape is None else "(" + ", ".join("N" if i == 0 else str(d) for i, d in enumerate(shape)) + ")"


@dataclass
class Upstream:
    """The nearest paired producers of a layer and the unpaired layers met on the way, nearest first."""

    producers: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)


def upstream(name: str, src_by_name: Mapping, paired: Mapping) -> Upstream:
    """Walk up from source layer `name` through the layers not in `paired` to the nearest ones in it."""
    out = Upstream()
    seen: set[str] = set()
    queue = list(src_by_name[name].inputs) if name in src_by_name else []
    while queue:
        producer = queue.pop(0)
        if producer in seen or producer not in src_by_name:
            continue
        seen.add(producer)
        if producer in paired:
            out.producers.append(producer)
        else:
            out.path.append(producer)
            queue.extend(src_by_name[producer].inputs)
    return out


def downstream_readers(src_by_name: Mapping, paired: Mapping) -> dict[str, list[str]]:
    """{source layer: its nearest readers in `paired`, looking through the layers not in it}."""
    consumers: dict[str, list[str]] = {}
    for info in src_by_name.values():
        for name in info.inputs:
            consumers.setdefault(name, []).append(info.name)
    out: dict[str, list[str]] = {}
    for name in paired:
        found, seen, queue = [], set(), list(consumers.get(name, []))
        while queue:
            reader = queue.pop(0)
            if reader in seen:
                continue
            seen.add(reader)
            if reader in paired:
                found.append(reader)
            else:
                queue.extend(consumers.get(reader, []))
        out[name] = found
    return out


def ancestors(dst_layers) -> tuple[dict[str, int], dict[str, int]]:
    """({dst layer: its ancestors as a bit set (an int) over positions}, {dst layer: position})."""
    position = {info.name: i for i, info in enumerate(dst_layers)}
    bits: dict[str, int] = {}
    for info in dst_layers:
        value = 0
        for producer in info.inputs:
            if producer in bits:
                value |= bits[producer] | (1 << position[producer])
        bits[info.name] = value
    return bits, position


def explain_unmatched(src_layers, found: Mapping, reasons: dict[str, str], skipped) -> None:
    """Give every source layer without a partner (and without a reason yet) a reason."""
    consumers: dict[str, list[str]] = {}
    for info in src_layers:
        for name in info.inputs:
            consumers.setdefault(name, []).append(info.name)
    for info in src_layers:
        if info.name in found or info.name in reasons:
            continue
        fused = [c for c in consumers.get(info.name, []) if getattr(found.get(c), "match", None) == "fused"]
        twin = next((other for other in src_layers if other.name != info.name and other.name in found
                     and other.kinds == info.kinds and other.inputs == info.inputs and other.op == info.op), None)
        if skipped(info):
            reasons[info.name] = "does nothing at inference (identity, dropout): nothing to compare"
        elif fused:
            reasons[info.name] = (f"folded into the layer after it: {fused[0]!r} is compared with the destination "
                                  "tensor that computes both")
        elif info.kinds == ["pad"]:
            reasons[info.name] = ("a padding the destination merged into the op after it (its pads): the padded "
                                  "tensor does not exist there; the op after it is compared")
        elif twin is not None:
            reasons[info.name] = (f"the destination computes it once: {twin.name!r}, the same op on the same inputs, "
                                  f"is paired with {found[twin.name].dst!r}")
        else:
            reasons[info.name] = ("no destination tensor carries its name, and none of a compatible shape and "
                                  "kind stands in its place in the graph")


_CALL = re.compile(r"@\d+")


def order_calls(src_layers, dst_layers, found: dict) -> None:
    """Calls of one source layer ("name", "name@1"...; "outer@1/inner" inside a nested model called
    twice) are alike in every way but their inputs, so names cannot tell their partners apart. Give
    them the permutation of their partners under which each partner descends from the partners of
    its call's inputs (`found` edited in place); leave them when none or several do."""
    groups: dict[str, list[str]] = {}
    for info in src_layers:
        if info.name in found:
            groups.setdefault(_CALL.sub("", info.name), []).append(info.name)
    groups = {base: names for base, names in groups.items() if len(names) > 1 and len(names) <= 6}
    if not groups:
        return
    bits, position = ancestors(dst_layers)
    src_by_name = {info.name: info for info in src_layers}

    def fits(name: str, dst: str) -> bool:
        return all(found[p].dst in position and bits.get(dst, 0) >> position[found[p].dst] & 1
                   for p in upstream(name, src_by_name, found).producers)

    for names in groups.values():
        partners = [found[n].dst for n in names]
        good = [perm for perm in itertools.permutations(partners) if all(fits(n, d) for n, d in zip(names, perm))]
        if len(good) == 1 and list(good[0]) != partners:
            for name, dst in zip(names, good[0]):
                found[name] = type(found[name])(name, dst, found[name].match)
