"""What a cause check looks at, and the small helpers the checks share."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

CLOSE_RTOL = 1e-3  # how near a transformed tensor must come to count as "equal" in a check


@dataclass
class Evidence:
    """One diverging pair on one chunk of the batch.

    src:      the source tensor (float64); dst: the destination tensor in the source's layout
              (float64, None when no layout makes the shapes agree); dst_raw: as captured.
    src_info, dst_info: the LayerInfo of each side (may be None); rows: {source layer: LayerResult};
    kernels: (source, destination) convolution kernels behind the pair when the source has one (the
             destination's None when it has none);
    folded: the source Conv the destination folded into this BatchNorm (a "fused" pair), if any;
    x: the source's value of the layer's single input, when known."""

    src: np.ndarray
    dst: np.ndarray | None
    dst_raw: np.ndarray
    src_info: Any = None
    dst_info: Any = None
    rows: Mapping[str, Any] = field(default_factory=dict)
    kernels: tuple[np.ndarray, np.ndarray | None] | None = None  # the (source, destination) convolution kernels
    folded: Any = None  # the source Conv's LayerInfo when the destination folded it into this BatchNorm
    lstm: tuple | None = None  # (input sequence, W, R, B) of the destination's LSTM, ONNX layout
    x: np.ndarray | None = None  # the source's value of the layer's input (a layer of one input)

    @property
    def subject(self) -> str:
        """The layer(s) that compute this tensor, for the cause sentence."""
        if self.folded is not None:
            return f"{describe(self.folded)} (folded with {describe(self.src_info)})"
        return describe(self.src_info)

    @property
    def kinds(self) -> list[str]:
        return list(getattr(self.src_info, "kinds", None) or [])

    @property
    def channel_axis(self) -> int | None:
        """The channel axis of the source tensor, from its layout (None when unknown)."""
        layout = getattr(self.src_info, "layout", "none") or "none"
        if "C" in layout and len(layout) == self.src.ndim:
            return layout.index("C")
        return None

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        layout = getattr(self.src_info, "layout", "none") or "none"
        if len(layout) == self.src.ndim and "C" in layout and layout[0] == "N":
            return tuple(i for i, a in enumerate(layout) if a in "DHW")
        return ()


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """a and b equal up to CLOSE_RTOL of a's largest magnitude."""
    if a.shape != b.shape:
        return False
    if not a.size:
        return True
    scale = max(float(np.max(np.abs(a))), 1e-12)
    with np.errstate(invalid="ignore"):
        return bool(np.max(np.abs(a - b)) <= CLOSE_RTOL * scale + 1e-6)


def describe(info: Any) -> str:
    """"Conv2D 'block1_conv1' (kernel 3x3, strides 2x2, padding 'same')": a layer with the attributes
    a fix would touch."""
    if info is None:
        return "this layer"
    attrs = info.attrs or {}
    parts = []
    for key, label in (("kernel", "kernel"), ("strides", "strides"), ("padding", "padding"),
                       ("dilation_rate", "dilation"), ("pool_size", "pool"), ("epsilon", "epsilon"),
                       ("activation", "activation")):
        value = attrs.get(key)
        if value is None or (key == "activation" and value == "linear"):
            continue
        if isinstance(value, (list, tuple)):
            value = "x".join(str(v) for v in value)
        elif isinstance(value, str):
            value = repr(value)
        parts.append(f"{label} {value}")
    return f"{info.op} {info.name!r}" + (f" ({', '.join(parts)})" if parts else "")
