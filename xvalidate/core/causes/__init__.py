"""Cause checks: one hypothesis about a divergence per module, each tested on the actual tensors.

Every module exposes `check(ev: Evidence) -> str | None`: a sentence naming the cause when the
hypothesis holds, else None. `CHECKS` is the order they are tried in (the first that holds is
the cause); a new check is a new module added to that list.
"""
from xvalidate.core.causes import (activation, channels, flatten, kernel, layout, lstm_gates, padding, pooling, scale,
                                   strided_padding, values)
from xvalidate.core.causes.evidence import Evidence

CHECKS = (
    values.nonfinite,
    values.constant,
    activation.check,
    pooling.check,
    padding.shift,
    padding.border,
    strided_padding.check,
    flatten.check,
    layout.axes,
    channels.check,
    kernel.check,
    lstm_gates.check,
    layout.multiset,
    scale.check,
)

__all__ = ["CHECKS", "Evidence"]
