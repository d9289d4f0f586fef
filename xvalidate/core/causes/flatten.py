"""A Dense after a Flatten whose weights were not permuted to the destination's Flatten order."""
from __future__ import annotations

from xvalidate.core.causes.evidence import Evidence


def check(ev: Evidence) -> str | None:
    if not ev.kinds or ev.kinds[0] != "dense":
        return None
    for name in getattr(ev.src_info, "inputs", []):
        row = ev.rows.get(name)
        if row is not None and row.passed and (row.transform or "").startswith("flatten:"):
            order = row.transform.split(":", 1)[1]
            return (f"flatten order: the input of Dense {ev.src_info.name!r} agrees only after reordering the Flatten "
                    f"({order}), so its weights were copied without permuting their input rows to the "
                    "destination's Flatten order (transfer_weights(..., permute_flatten=True) does this)")
    return None
