"""Replacements for op translations of MXNet 1.9.1's ONNX importer that mistranslate what tf2onnx
writes for keras.applications (used by onnx_steps while importing; run in the MXNet worker).

  Pad    MXNet's `pad` pads only the last two (three) axes of 4-D (5-D) data; tf2onnx pads a
         channels-last tensor on axes 1 and 2 (MobileNetV3's ZeroPadding2D: "Current implementation
         expects padding on the first two axes to be zero") -> the padded axes are moved last,
         padded, and moved back.
  Slice  the importer compares `ends` with the GRAPH INPUT's shape instead of the sliced tensor's,
         ignores `steps`, and passes an end of INT32_MAX/INT64_MAX ("to the end") on as 2**31 or NaN
         (NASNet's Cropping2D: "end expect int or None but value='nan'") -> such ends are open,
         steps are used.
  Erf    missing from the importer (ConvNeXt's exact GELU: "Operator Erf not implemented") ->
         MXNet's own `erf`.
Each takes (attrs, inputs, importer) and returns (symbol, attrs, inputs) like the importer's own.
"""
from __future__ import annotations

# An end this large (INT32_MAX or INT64_MAX, as TF writes "to the end"; the importer holds the
# operands as float32, so INT32_MAX arrives as 2**31) means "to the end".
OPEN_END = 2**31 - 256


def _constant(importer, sym) -> list:
    return [v.item() for v in importer._params[sym.name].asnumpy().reshape(-1)]


def pad(attrs, inputs, importer):
    """ONNX Pad (any opset) on any axes of 4-D or 5-D data."""
    from mxnet import symbol

    if importer.opset_version >= 11:
        pads = [int(v) for v in _constant(importer, inputs[1])]
        value = float(_constant(importer, inputs[2])[0]) if len(inputs) > 2 else 0.0
    else:
        pads, value = [int(v) for v in attrs["pads"]], float(attrs.get("value", 0.0))
    rank = len(pads) // 2
    begin, end = pads[:rank], pads[rank:]
    padded = [axis for axis in range(rank) if begin[axis] or end[axis]]
    if rank not in (4, 5) or len(padded) > rank - 2:
        raise NotImplementedError(f"Pad of {rank}-D data on axes {padded}: MXNet pads 4-D and 5-D data on "
                                  f"at most {max(rank - 2, 0)} axes")
    order = [axis for axis in range(rank) if axis not in padded] + padded
    data = inputs[0] if order == list(range(rank)) else symbol.transpose(inputs[0], axes=tuple(order))
    width = tuple(w for axis in order for w in (begin[axis], end[axis]))
    out = symbol.pad(data, mode=attrs.get("mode", "constant"), pad_width=width, constant_value=value)
    if order != list(range(rank)):
        back = tuple(sorted(range(rank), key=lambda i: order[i]))
        out = symbol.transpose(out, axes=back)
    return out, {}, inputs


def slice_(attrs, inputs, importer):
    """ONNX Slice (opset >= 10 operands, or opset < 10 attributes) with steps and open ends."""
    from mxnet import symbol

    if importer.opset_version >= 10:
        begin, end = _constant(importer, inputs[1]), _constant(importer, inputs[2])
        axes = _constant(importer, inputs[3]) if len(inputs) > 3 else list(range(len(begin)))
        steps = _constant(importer, inputs[4]) if len(inputs) > 4 else [1] * len(begin)
    else:
        begin, end = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(begin)))), [1] * len(begin)
    begin, end, axes, steps = ([int(v) for v in seq] for seq in (begin, end, axes, steps))
    out = inputs[0]
    if all(step == 1 for step in steps):
        for b, e, axis in zip(begin, end, axes):
            out = symbol.slice_axis(out, axis=axis, begin=b, end=None if e >= OPEN_END else e)
        return out, {}, inputs
    if any(axis < 0 for axis in axes):
        raise NotImplementedError(f"Slice with steps {steps} on negative axes {axes}")
    span = max(axes) + 1
    starts, stops, strides = [None] * span, [None] * span, [None] * span
    for b, e, axis, step in zip(begin, end, axes, steps):
        starts[axis], strides[axis] = b, step
        stops[axis] = None if abs(e) >= OPEN_END else e
    return symbol.slice(out, begin=tuple(starts), end=tuple(stops), step=tuple(strides)), {}, inputs


def erf(attrs, inputs, importer):
    """ONNX Erf, element-wise."""
    from mxnet import symbol

    return symbol.erf(inputs[0]), {}, inputs


TRANSLATIONS = {"Pad": pad, "Slice": slice_, "Erf": erf}
