"""Tolerances: which error passes.

A pair passes when no element is mismatched, an element being mismatched when

    |src - dst| > atol + rtol * max(|src|, 0.1 * rms)      (src = reference)

rms being the root mean square of the finite source values of the element's sample (its row
of axis 0; see core/metrics.py for why), or when it is finite on one side only. Defaults: atol = 1e-4, rtol = 1e-3. Correct float32
conversions stay far inside them (ResNet50 through MMdnn differs by ~1e-10 at the
output and ~1e-6 inside; InceptionV3 by 3.4e-7), while the broken hand ports of a
CNN differ by 1e-2 to 1 (a missing softmax, padding, unpermuted Dense weights).

Per-layer overrides: {name or fnmatch pattern: atol | {"atol": a, "rtol": r}}, with an
optional "default" entry replacing the global values. An exact name beats a pattern;
among patterns the longest wins. Arguments atol/rtol given directly win over "default".
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Mapping

from xvalidate.errors import OptionError

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


def passes(metrics: Mapping[str, Any], atol: float, rtol: float) -> bool:
    """The one place that decides whether a pair's metrics are within tolerance."""
    return metrics.get("size", 0) > 0 and metrics.get("mismatched", 1) == 0


def _entry(key: str, value: Any) -> dict[str, float]:
    if isinstance(value, bool) or not isinstance(value, (int, float, Mapping)):
        raise OptionError(f"tolerances[{key!r}]: expected a number (atol) or {{'atol': .., 'rtol': ..}}, "
                          f"got {value!r}")
    entry = {"atol": value} if not isinstance(value, Mapping) else dict(value)
    unknown = set(entry) - {"atol", "rtol"}
    if unknown:
        raise OptionError(f"tolerances[{key!r}]: unknown key {sorted(unknown)[0]!r}; expected atol and/or rtol")
    for name, v in entry.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:  # NaN too
            raise OptionError(f"tolerances[{key!r}][{name!r}]: expected a non-negative number, got {v!r}")
    return {k: float(v) for k, v in entry.items()}


class Tolerances:
    """Resolves (atol, rtol) per layer from global values and per-layer overrides."""

    def __init__(self, atol: float | None = None, rtol: float | None = None,
                 per_layer: Mapping[str, Any] | None = None):
        for name, v in (("atol", atol), ("rtol", rtol)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise OptionError(f"{name}: expected a non-negative number, got {v!r}")
        if per_layer is not None and not isinstance(per_layer, Mapping):
            raise OptionError(f"tolerances: expected a dict of layer name or pattern -> tolerance, got {type(per_layer).__name__}")
        entries = {str(k): _entry(str(k), v) for k, v in (per_layer or {}).items()}
        default = entries.pop("default", {})
        self.atol = float(atol) if atol is not None else default.get("atol", DEFAULT_ATOL)
        self.rtol = float(rtol) if rtol is not None else default.get("rtol", DEFAULT_RTOL)
        self.exact = {k: v for k, v in entries.items() if not any(c in k for c in "*?[")}
        self.patterns = sorted(((k, v) for k, v in entries.items() if k not in self.exact),
                               key=lambda kv: -len(kv[0]))

    def for_layer(self, name: str) -> tuple[float, float]:
        """(atol, rtol) for the source layer `name`."""
        entry = self.exact.get(name)
        if entry is None:
            entry = next((v for k, v in self.patterns if fnmatchcase(name, k)), {})
        return entry.get("atol", self.atol), entry.get("rtol", self.rtol)

    def describe(self) -> dict[str, Any]:
        """The settings, as stored in a report."""
        return {"atol": self.atol, "rtol": self.rtol, "per_layer": {**self.exact, **dict(self.patterns)}}
