"""An activation the destination lacks, or applies in excess."""
from __future__ import annotations

from math import sqrt
from typing import Callable

import numpy as np

from xvalidate.core.causes.evidence import Evidence, close


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.5e-7 (Abramowitz and Stegun 7.1.26): far inside the checks' tolerance."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / sqrt(2.0)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": _softmax,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": _sigmoid,
    "hard-sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "tanh": np.tanh,
    "swish": lambda x: x * _sigmoid(x),
    "hard-swish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "gelu": _gelu,
    "gelu (tanh approximation)": _gelu_tanh,
}


def missing(before: np.ndarray, after: np.ndarray) -> str | None:
    """The activation f with f(before) == after (and f(before) != before), or None."""
    for name, fn in ACTIVATIONS.items():
        with np.errstate(over="ignore", invalid="ignore"):
            applied = fn(before)
        if not close(applied, before) and close(applied, after):
            return name
    return None


def check(ev: Evidence) -> str | None:
    if ev.dst is None:
        return None
    where = ev.subject
    name = missing(ev.dst, ev.src)
    if name:
        return (f"activation: the destination lacks the {name} that {where} applies ({name} of the destination "
                f"output equals the source output): add the {name} after this layer in the destination")
    name = missing(ev.src, ev.dst)
    if name:
        return (f"activation: the destination applies an extra {name} after {where} (the destination output "
                f"equals {name} of the source output): remove it")
    return None
