"""Where a conversion through an intermediate model diverges: in the half that made the intermediate
model ("export": source vs intermediate) or in the half that read it ("import": intermediate vs
destination). Works on finished reports; computes no metric."""
from __future__ import annotations

from typing import Any, Sequence

from xvalidate.core.report import Report

__all__ = ["locate"]


def locate(report: Report, hops: Sequence[Report] | None = None) -> dict[str, Any]:
    """{"hop": "export" | "import" | "both" | None, "text": one sentence, "first": {hop: [src, dst]}} for
    `report` (source vs destination) and its hops (default `report.hops`). "hop" is the half whose own
    comparison fails; None when both halves pass (then any failure of the whole adds up across them)."""
    hops = list(report.hops if hops is None else hops)
    if not hops:
        return {}
    failing = [hop for hop in hops if not hop.passed]
    first = {hop.hop: [hop.first_divergence.src, hop.first_divergence.dst]
             for hop in failing if hop.first_divergence is not None}
    where = None if not failing else failing[0].hop if len(failing) == 1 else "both"
    labels = {hop.hop: f"{hop.src} -> {hop.dst}" for hop in hops}
    if where is None:
        text = ("every half passes on its own" + ("" if report.passed else
                "; the whole fails: the differences of the halves add up beyond the tolerance"))
    elif where == "both":
        text = "diverges in both halves: " + "; ".join(_at(hop, labels) for hop in failing)
    else:
        other = next((hop for hop in hops if hop.passed), None)
        text = f"diverges in the {_at(failing[0], labels)}" + (
            f"; the {other.hop} half ({labels[other.hop]}) passes" if other is not None else "")
    return {"hop": where, "text": text, "first": first}


def _at(hop: Report, labels: dict) -> str:
    root = hop.first_divergence
    where = f"{hop.hop} half ({labels[hop.hop]})"
    if root is None:
        return where
    return f"{where}, first at {root.src} -> {root.dst or '-'}" + (f" ({root.cause})" if root.cause else "")
