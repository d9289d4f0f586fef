"""Copy the weights of a Keras model into a hand-written PyTorch port of it, as
xvalidate.transfer does for Gluon: weight-bearing Keras layers (Conv, DepthwiseConv2D, Dense,
BatchNormalization) in model order against the port's nn.Conv*/nn.Linear/nn.BatchNorm* modules in
registration order, layouts converted on the way:

- convolution kernels (*spatial, in, out) -> (out, in, *spatial); depthwise (kh, kw, in, mult) ->
  (in * mult, 1, kh, kw);
- Dense (in, out) -> Linear (out, in); the first after a Flatten of an image tensor gets its rows
  permuted from Keras's (H, W, C) flatten order to torch's (C, H, W) (unless permute_flatten=False),
  the shape entering the Flatten read by one forward pass of the port on zeros;
- BatchNorm gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xvalidate.errors import ConversionError
from xvalidate.transfer import KerasLayerWeights, read_keras_weights

_KINDS = {"Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv", "Linear": "dense",
          "BatchNorm1d": "bn", "BatchNorm2d": "bn", "BatchNorm3d": "bn"}


def transfer_weights(src: Any, dst: Any, input_shape: Sequence[int] | None = None,
                     permute_flatten: bool = True) -> list[tuple[str, str]]:
    """Copy Keras model `src` (a .h5 path, an in-memory model or KerasWeights) into torch module `dst`.
    input_shape: NCHW shape of one input (default: the Keras input, batch 1, moved to NCHW).
    Returns the (keras layer, torch module path) pairs copied; ConversionError names both sides when
    counts, kinds or shapes disagree."""
    import torch

    weights = read_keras_weights(src)
    modules = [(path, m) for path, m in dst.named_modules() if type(m).__name__ in _KINDS]
    if len(modules) != len(weights.layers):
        raise ConversionError(f"keras model has {len(weights.layers)} weight-bearing layers but torch module "
                              f"{type(dst).__name__} has {len(modules)} ({', '.join(p for p, _ in modules)})")
    shape = tuple(input_shape) if input_shape is not None else weights.nchw_input_shape
    flattened = _flatten_inputs(dst, shape) if permute_flatten and shape else {}
    pairs = []
    with torch.no_grad():
        for layer, (path, module) in zip(weights.layers, modules):
            kind = "conv" if layer.kind == "dwconv" else layer.kind
            if _KINDS[type(module).__name__] != kind:
                raise ConversionError(f"keras layer {layer.name!r} ({layer.class_name}) pairs with torch module "
                                      f"{path!r} ({type(module).__name__}): kinds differ")
            for attr, array in _converted(layer, flattened.get(path) if permute_flatten else None):
                target = getattr(module, attr)
                if tuple(target.shape) != array.shape:
                    raise ConversionError(f"keras layer {layer.name!r} {attr} {array.shape} does not fit torch module "
                                          f"{path!r} {attr} {tuple(target.shape)}")
                target.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
            pairs.append((layer.name, path))
    return pairs


def _converted(layer: KerasLayerWeights, flatten_chw: tuple | None) -> list[tuple[str, np.ndarray]]:
    a = layer.arrays
    if layer.kind == "bn":
        channels = a["moving_mean"].shape[0]
        return [("weight", a.get("gamma", np.ones(channels))), ("bias", a.get("beta", np.zeros(channels))),
                ("running_mean", a["moving_mean"]), ("running_var", a["moving_variance"])]
    if layer.kind == "dwconv":
        kh, kw, cin, mult = a["depthwise_kernel"].shape
        out = [("weight", np.transpose(a["depthwise_kernel"], (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw))]
    elif layer.kind == "conv":
        k = a["kernel"]
        out = [("weight", np.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2))))]
    else:
        k = a["kernel"]
        if flatten_chw is not None and len(flatten_chw) >= 2 and int(np.prod(flatten_chw)) == k.shape[0]:
            channels, *spatial = flatten_chw
            k = np.moveaxis(k.reshape(*spatial, channels, k.shape[1]), -2, 0).reshape(k.shape)
        out = [("weight", k.T)]
    return out + ([("bias", a["bias"])] if "bias" in a else [])


def _flatten_inputs(module: Any, shape: tuple) -> dict[str, tuple]:
    """{Linear module path: the (C, H, W) shape its input was flattened from}, by one pass on zeros."""
    import torch

    from xvalidate_torch.capture import capture

    records, _ = capture(module, [torch.zeros(shape)])
    by_name = {r.name: r for r in records}
    found = {}
    for record in records:
        if type(record.module).__name__ != "Linear" or not record.inputs:
            continue
        before = by_name.get(record.inputs[0])
        if before is not None and before.op.lower().startswith("flatten") and before.inputs[0] in by_name:
            found[record.name.split("@")[0]] = tuple(by_name[before.inputs[0]].output.shape[1:])
    return found
