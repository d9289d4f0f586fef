"""LSTM gate order: weights copied in one framework's gate order into another's.

Keras stores an LSTM's four gate blocks as (i, f, c, o) along the last axis of `kernel`,
`recurrent_kernel` and `bias`; ONNX's LSTM node wants (i, o, f, c) along the first axis of
W, R and B. A hand-written converter that copies the blocks without reordering them gives a
model that runs, with every shape right, and wrong numbers from the first time step.

`gate_order(x, expected, W, R, B)` re-runs the destination's LSTM (ONNX layout, numpy only)
with its gate blocks read in every other order and names the order that reproduces the
source's output. Wiring: it needs the LSTM's input sequence and the destination node's
weights: `check(ev)` uses them when `ev.lstm` holds
(x, W, R, B) and returns None otherwise.
"""
from __future__ import annotations

from itertools import permutations
from typing import Any, Sequence

import numpy as np

from xvalidate.core.causes.evidence import close

ONNX_ORDER = "iofc"
KERAS_ORDER = "ifco"


def lstm_forward(x: np.ndarray, W: np.ndarray, R: np.ndarray, B: np.ndarray | None = None,
                 order: str = ONNX_ORDER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A forward, unidirectional LSTM in ONNX's layout: x (batch, time, input), W (4H, input),
    R (4H, H), B (8H: Wb then Rb) or None, gate blocks in `order`. Returns the hidden
    sequence (batch, time, H), the last h and the last c (batch, H)."""
    x = np.asarray(x, np.float64)
    hidden = R.shape[-1]
    W, R = np.asarray(W, np.float64).reshape(4 * hidden, -1), np.asarray(R, np.float64).reshape(4 * hidden, hidden)
    bias = np.zeros(4 * hidden) if B is None else np.asarray(B, np.float64).reshape(-1)
    bias = bias[:4 * hidden] + bias[4 * hidden:] if bias.size == 8 * hidden else bias
    at = {gate: slice(k * hidden, (k + 1) * hidden) for k, gate in enumerate(order)}
    h = np.zeros((x.shape[0], hidden))
    c = np.zeros_like(h)
    seq = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W.T + h @ R.T + bias
        i, f, o = (1 / (1 + np.exp(-z[:, at[g]])) for g in "ifo")
        c = f * c + i * np.tanh(z[:, at["c"]])
        h = o * np.tanh(c)
        seq.append(h)
    return np.stack(seq, 1), h, c


def gate_order(x: np.ndarray, expected: np.ndarray, W: np.ndarray, R: np.ndarray, B: np.ndarray | None = None,
               order: str = ONNX_ORDER) -> str | None:
    """The gate order (e.g. "ifco") in which the blocks of W, R, B must be read for this LSTM to give
    `expected` (its hidden sequence (batch, time, H) or last h (batch, H)), when it is not `order`,
    the one the destination uses; None when reading them in `order` already fits, or no order does."""
    def fits(candidate: str) -> bool:
        seq, last, _ = lstm_forward(x, W, R, B, candidate)
        out = seq if expected.ndim == 3 else last
        return out.shape == expected.shape and close(np.asarray(expected, np.float64), out)

    if fits(order):
        return None
    others = [KERAS_ORDER] + ["".join(p) for p in permutations(order) if "".join(p) not in (order, KERAS_ORDER)]
    return next((candidate for candidate in others if fits(candidate)), None)


def describe(found: str, order: str = ONNX_ORDER) -> str:
    """The cause sentence for weights whose gate blocks are in order `found` where `order` is expected."""
    named = " (Keras's order)" if found == KERAS_ORDER else ""
    return (f"LSTM gate order: the weights hold their gate blocks as ({', '.join(found)}){named} where the "
            f"destination reads ({', '.join(order)}): reorder the blocks of W, R and B "
            f"(Keras i, f, c, o -> ONNX i, o, f, c)")


def check(ev: Any) -> str | None:
    """The gate-order cause of a diverging LSTM pair, when the evidence carries `lstm` = (x, W, R, B):
    the layer's input sequence and the destination node's weights (ONNX layout, one direction)."""
    data: Sequence | None = getattr(ev, "lstm", None)
    if not data or getattr(ev, "dst", None) is None and getattr(ev, "src", None) is None:
        return None
    x, W, R, B = data
    found = gate_order(x, ev.src, W, R, B)
    return None if found is None else describe(found)
