"""Pairing the layers of two models.

Every source layer gets at most one destination tensor, found in this order:
1. the user's `layer_map` (match "layer_map");
2. a conversion route's hints, {dst tensor: (src layer, "name" | "fused")};
3. the exact name (match "name");
4. a normalized name (match "normalized"): the destination name as the adapters and routes spell it
   for pairing (`dst_names`: Adapter.pairing_name, Route.pairing_name strip what a framework or a
   converter adds), then lower-cased, carries the source layer's name: equal, a component of a scope
   path (`model/<layer>/Op`), or after a prefix joined by "_" (`net0_<layer>`);
5. structure (match "structural", or "fused" for a Conv whose BatchNorm the
   destination folded in): between the pairs found so far, both graphs are
   walked in topological order as sequences of op kinds and aligned by dynamic
   programming, with agreeing shapes as a bonus.

Name matches are followed to a single consumer that applies the activation the
source layer ends with (a conv with a fused activation may be one layer on one side and
two on the other). Nothing is dropped: source layers without a partner
stay in the result with dst None, and destination tensors nobody claimed are
returned as `unmatched_dst`.

A pair is only kept when it can be compared:
- structural pairs must have shapes that agree under some layout transform, and must respect
  the graphs: the partners of a layer's nearest paired producers must be ancestors of its
  partner (no crosswise pairs between branches);
- a normalized-name pair whose shapes cannot agree is kept only when the difference reads as a
  finding (a padding border, an axis order); otherwise it goes back to unmatched;
- exact names, route hints and the user's `layer_map` always stand: a shape difference there is
  a finding (e.g. padding).
Every pair dropped this way leaves its source layer unmatched with the reason in `reasons`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from xvalidate.core.pairing import drop_impossible, explain_unmatched, finding_shapes, order_calls, shapes_compatible
from xvalidate.errors import UnknownLayerError

__all__ = ["ACTIVATIONS", "Alignment", "Pair", "align", "finding_shapes", "normalize", "shapes_compatible"]

SKIPPED_KINDS = {"identity", "dropout", "input"}
ACTIVATIONS = {"relu", "relu6", "sigmoid", "tanh", "swish", "act", "softmax"}
_SIMILAR = [  # kinds that may stand for each other, at a lower score
    {"relu", "relu6", "sigmoid", "tanh", "swish", "act"},
    {"avgpool", "gpool"},
    {"flatten", "reshape"},
    {"conv", "dense"},
    {"conv", "dwconv"},
]


@dataclass
class Pair:
    """A source layer and the destination tensor it is compared with (dst None: none found)."""

    src: str
    dst: str | None
    match: str


TRUSTED_MATCHES = {"name", "layer_map", "fused"}  # exact names, route hints, the user's map


@dataclass
class Alignment:
    pairs: list[Pair]                       # one per source layer, in source order
    unmatched_dst: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # unmatched source layer -> why it has no partner
    rejected: dict[str, str] = field(default_factory=dict)  # unmatched source layer -> the candidate refused

    @property
    def unmatched_src(self) -> list[str]:
        return [p.src for p in self.pairs if p.dst is None]


def align(src_layers: Sequence, dst_layers: Sequence, layer_map: Mapping[str, str] | None = None,
          hints: Mapping[str, tuple[str, str]] | None = None,
          src_shapes: Mapping[str, tuple] | None = None, dst_shapes: Mapping[str, tuple] | None = None,
          dst_names: Callable[[str], str | Sequence[str]] | None = None) -> Alignment:
    """Pair `src_layers` with `dst_layers` (LayerInfo lists in topological order).

    Shapes (with the batch dimension) default to the LayerInfo shapes; pass the
    captured arrays' shapes when known. `dst_names`: the naming rules of the destination's adapter
    and route (xvalidate.naming.pairing_names): a destination name -> the name, or the names in
    order of preference, it pairs by; applied before `normalize`."""
    src_shapes = dict(src_shapes or {})
    dst_shapes = dict(dst_shapes or {})
    for info in src_layers:
        src_shapes.setdefault(info.name, info.shape)
    for info in dst_layers:
        dst_shapes.setdefault(info.name, info.shape)
    src_by_name = {info.name: info for info in src_layers}
    dst_by_name = {info.name: info for info in dst_layers}
    consumers = _consumers(dst_layers)

    found: dict[str, Pair] = {}
    taken: set[str] = set()

    def claim(src: str, dst: str, how: str) -> None:
        if src not in found and dst not in taken:
            found[src] = Pair(src, dst, how)
            taken.add(dst)

    for src, dst in (layer_map or {}).items():
        if src not in src_by_name:
            raise UnknownLayerError(f"layer_map: source layer {src!r} is not in the source model")
        if dst not in dst_by_name:
            raise UnknownLayerError(f"layer_map: destination layer {dst!r} (for {src!r}) is not in the destination model")
        claim(src, dst, "layer_map")
    for dst, (src, how) in (hints or {}).items():
        if src in src_by_name and dst in dst_by_name:
            claim(src, dst, how)

    by_norm = _normalized_index(dst_layers, set(src_by_name), dst_names)
    for info in src_layers:
        if info.name in found:
            continue
        if info.name in dst_by_name and info.name not in taken:
            dst, how = info.name, "name"
        elif info.name in by_norm:
            dst, how = by_norm[info.name], "normalized"
        else:
            continue
        dst = _follow_activation(info, dst, dst_by_name, consumers, taken)
        claim(info.name, dst, how)

    _align_structure(src_layers, dst_layers, found, taken, src_shapes, dst_shapes)
    if not any("bn" in info.kinds for info in dst_layers):
        _move_to_folded_bn(src_layers, found)
    before = {name: pair.dst for name, pair in found.items()}
    reasons = drop_impossible(src_layers, dst_layers, found, src_shapes, dst_shapes, TRUSTED_MATCHES)
    rejected = {name: before[name] for name in reasons}
    _propagate(src_layers, dst_layers, found, {pair.dst for pair in found.values()}, src_shapes, dst_shapes)
    for name in found:  # paired along the graph after all
        reasons.pop(name, None)
        rejected.pop(name, None)
    order_calls(src_layers, dst_layers, found)
    for name in unread_outputs(src_layers) - set(found):
        reasons.setdefault(name, "an output of a multi-output layer that nothing reads: the destination need "
                                 "not compute it, and no name or hint pairs it")
    explain_unmatched(src_layers, found, reasons, _skipped)
    taken = {pair.dst for pair in found.values()}
    pairs = [found.get(info.name, Pair(info.name, None, "none")) for info in src_layers]
    unmatched = [info.name for info in dst_layers if info.name not in taken and not _skipped(info)]
    return Alignment(pairs, unmatched, reasons, rejected)


# ---------------------------------------------------------------- names
def normalize(name: str) -> str:
    """A destination name, as its adapter and route spell it for pairing, reduced to what a source
    layer name would look like: lower case, without leading or trailing "_" and "/"."""
    return name.lower().strip("_/")


def _normalized_index(dst_layers: Sequence, src_names: set[str],
                      dst_names: Callable[[str], str | Sequence[str]] | None = None) -> dict[str, str]:
    """{src layer name: the last dst tensor (topological order) whose normalized name carries it}."""
    lowered = {name.lower(): name for name in src_names}
    index: dict[str, str] = {}
    for info in dst_layers:
        if _skipped(info):
            continue
        spelled = dst_names(info.name) if dst_names else info.name
        for name in [spelled] if isinstance(spelled, str) else spelled:
            src = _carried_name(normalize(name), lowered)
            if src is not None:
                index[src] = info.name
                break
    return index


def _carried_name(norm: str, lowered: Mapping[str, str]) -> str | None:
    # a component of a scope path (scope/<layer>/Op), the name itself, or the name after a "_"-joined prefix
    parts = norm.split("/")
    for part in reversed(parts[:-1] if len(parts) > 1 else parts):
        if part in lowered:
            return lowered[part]
    best = None
    for low, original in lowered.items():
        if norm == low or (norm.endswith("_" + low) and (best is None or len(low) > len(best))):
            best = low
    return lowered[best] if best is not None else None


def _consumers(dst_layers: Sequence) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {info.name: [] for info in dst_layers}
    for info in dst_layers:
        for producer in info.inputs:
            out.setdefault(producer, []).append(info.name)
    return out


def _follow_activation(src_info, dst: str, dst_by_name: Mapping, consumers: Mapping, taken: set[str]) -> str:
    """Move from `dst` to its single consumer while that consumer applies the activation that
    ends the source layer and `dst` itself does not."""
    want = src_info.kinds[-1]
    if want not in ACTIVATIONS:
        return dst
    current = dst
    for _ in range(2):
        if dst_by_name[current].kinds[-1] == want:
            return current
        nxt = consumers.get(current, [])
        if len(nxt) != 1 or nxt[0] in taken or nxt[0] not in dst_by_name:
            return dst
        current = nxt[0]
    return current if dst_by_name[current].kinds[-1] == want else dst


def _skipped(info) -> bool:
    return all(kind in SKIPPED_KINDS for kind in info.kinds)


# ---------------------------------------------------------------- structure
_PART = re.compile(r":\d+$")


def unread_outputs(src_layers: Sequence) -> set[str]:
    """Outputs of multi-output layers ("lstm:2") that no layer reads: a destination need not compute
    them (an RNN's unused final state), so only names or hints may pair them, never structure."""
    read = {name for info in src_layers for name in info.inputs}
    return {info.name for info in src_layers if _PART.search(info.name) and info.name not in read}


def canonical_order(layers: Sequence) -> list:
    """The layers in an order both sides of a conversion share whatever order each framework lists
    them in: depth first from the outputs, each layer after its inputs, the inputs in their listed
    order (a Concatenate's branches in the order it joins them). Layers no output depends on come last."""
    by_name = {info.name: info for info in layers}
    used = {name for info in layers for name in info.inputs}
    out, seen = [], set()
    for root in [info for info in layers if info.name not in used] + list(layers):
        stack = [(root.name, False)]
        while stack:
            name, expanded = stack.pop()
            if name in seen or name not in by_name:
                continue
            if expanded:
                seen.add(name)
                out.append(by_name[name])
                continue
            stack.append((name, True))
            stack.extend((producer, False) for producer in reversed(by_name[name].inputs) if producer not in seen)
    return out


def _align_structure(src_layers, dst_layers, found, taken, src_shapes, dst_shapes) -> None:
    """Fill in pairs by aligning op-kind sequences between anchor pairs, both graphs in canonical order."""
    unread = unread_outputs(src_layers)
    src_layers = [info for info in canonical_order(src_layers) if info.name not in unread]
    dst_layers = canonical_order(dst_layers)
    dst_index = {info.name: i for i, info in enumerate(dst_layers)}
    anchors = _monotone_anchors([(i, dst_index[found[info.name].dst]) for i, info in enumerate(src_layers)
                                 if info.name in found])
    bounds = [(-1, -1)] + anchors + [(len(src_layers), len(dst_layers))]
    for (s0, d0), (s1, d1) in zip(bounds, bounds[1:]):
        src_seg = [info for info in src_layers[s0 + 1:s1] if info.name not in found and not _skipped(info)]
        dst_seg = [info for info in dst_layers[d0 + 1:d1] if info.name not in taken and not _skipped(info)]
        if src_seg and dst_seg:
            for src, dst, how in _align_segment(src_seg, dst_seg, src_shapes, dst_shapes):
                found[src] = Pair(src, dst, how)
                taken.add(dst)


def _propagate(src_layers, dst_layers, found, taken, src_shapes, dst_shapes) -> None:
    """Pair, along the graph edges, source layers the sequence alignment left out (branches listed in
    another order): an unpaired source layer whose inputs are all paired takes the one unclaimed
    destination tensor that reads exactly their partners, with the same last kind and a compatible
    shape. Ambiguity (several such tensors) leaves it unpaired."""
    readers: dict[tuple, list] = {}
    for info in dst_layers:
        readers.setdefault(tuple(sorted(info.inputs)), []).append(info)
    unread = unread_outputs(src_layers)
    for info in src_layers:
        if info.name in found or info.name in unread or _skipped(info) or not info.inputs or \
                any(i not in found for i in info.inputs):
            continue
        key = tuple(sorted(found[i].dst for i in info.inputs))
        options = [d for d in readers.get(key, []) if d.name not in taken and d.kinds[-1:] == info.kinds[-1:]
                   and shapes_compatible(src_shapes.get(info.name), dst_shapes.get(d.name))]
        if len(options) == 1:
            found[info.name] = Pair(info.name, options[0].name, "structural")
            taken.add(options[0].name)


def _monotone_anchors(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest chain of (src index, dst index) pairs increasing in both."""
    if not points:
        return []
    best_len = [1] * len(points)
    prev = [-1] * len(points)
    for j in range(len(points)):
        for i in range(j):
            if points[i][1] < points[j][1] and best_len[i] + 1 > best_len[j]:
                best_len[j], prev[j] = best_len[i] + 1, i
    j = max(range(len(points)), key=best_len.__getitem__)
    chain = []
    while j >= 0:
        chain.append(points[j])
        j = prev[j]
    return chain[::-1]


def _tokens(layers: Sequence) -> list[tuple[int, str, bool]]:
    """(layer position, kind, is the layer's output) for every kind of every layer."""
    out = []
    for pos, info in enumerate(layers):
        kinds = [k for k in info.kinds if k not in SKIPPED_KINDS] or ["other"]
        out += [(pos, kind, i == len(kinds) - 1) for i, kind in enumerate(kinds)]
    return out


def _kind_score(a: str, b: str) -> float:
    if a == b:
        return 0.5 if a == "other" else 3.0
    if any(a in group and b in group for group in _SIMILAR):
        return 1.0
    return float("-inf")


def _align_segment(src_seg, dst_seg, src_shapes, dst_shapes):
    """Needleman-Wunsch over kind tokens; returns (src, dst, how) for layers whose outputs meet."""
    s_tok, d_tok = _tokens(src_seg), _tokens(dst_seg)
    n, m = len(s_tok), len(d_tok)
    gap = -0.1
    score = [[0.0] * (m + 1) for _ in range(n + 1)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 1 diagonal, 2 skip src, 3 skip dst
    for i in range(1, n + 1):
        score[i][0], move[i][0] = score[i - 1][0] + gap, 2
    for j in range(1, m + 1):
        score[0][j], move[0][j] = score[0][j - 1] + gap, 3
    for i in range(1, n + 1):
        si, skind, slast = s_tok[i - 1]
        for j in range(1, m + 1):
            dj, dkind, dlast = d_tok[j - 1]
            diag = _kind_score(skind, dkind)
            if diag > float("-inf") and slast and dlast:
                a, b = src_shapes.get(src_seg[si].name), dst_shapes.get(dst_seg[dj].name)
                if _shapes_agree(a, b):
                    diag += 1.0
                elif not shapes_compatible(a, b):
                    diag = float("-inf")
            best, how = score[i - 1][j - 1] + diag, 1
            if score[i - 1][j] + gap > best:
                best, how = score[i - 1][j] + gap, 2
            if score[i][j - 1] + gap > best:
                best, how = score[i][j - 1] + gap, 3
            score[i][j], move[i][j] = best, how
    matched: dict[int, int] = {}  # src token -> dst token
    i, j = n, m
    while i > 0 and j > 0:
        if move[i][j] == 1:
            matched[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif move[i][j] == 2:
            i -= 1
        else:
            j -= 1

    out: dict[int, tuple[int, str]] = {}
    used: set[int] = set()
    for pos in range(len(src_seg)):
        own = [t for t, tok in enumerate(s_tok) if tok[0] == pos]
        aligned = [t for t in own if t in matched]
        if not aligned:
            continue
        d = d_tok[matched[aligned[-1]]]
        if d[2] and d[0] not in used:  # the aligned dst token ends a dst layer: its output is comparable
            out[pos] = (d[0], "structural")
            used.add(d[0])
    return [(src_seg[pos].name, dst_seg[d].name, how) for pos, (d, how) in sorted(out.items())]


def _move_to_folded_bn(src_layers: Sequence, found: dict[str, Pair]) -> None:
    """A destination without BatchNorm ops folded them into the conv before: that conv's output
    equals the source BatchNorm layer's output, not the source conv's. Move such pairs."""
    for i, info in enumerate(src_layers):
        if info.kinds != ["bn"] or info.name in found:
            continue
        producer = info.inputs[0] if len(info.inputs) == 1 else (src_layers[i - 1].name if i else None)
        pair = found.get(producer)
        if pair is not None and pair.match not in ("layer_map", "fused") and \
                pair.src in {x.name for x in src_layers[max(0, i - 1):i]}:
            del found[producer]
            found[info.name] = Pair(info.name, pair.dst, "fused")


def _shapes_agree(a, b) -> bool:
    if a is None or b is None:
        return False
    a, b = tuple(a)[1:], tuple(b)[1:]
    if a == b:
        return True
    if len(a) == len(b) == 3:
        return a == (b[1], b[2], b[0]) or a == (b[2], b[0], b[1])
    return False
