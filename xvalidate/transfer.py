"""Copy the weights of a Keras model into a hand-written Gluon port of it.

Keras layers and Gluon blocks are paired by order: the weight-bearing Keras
layers (Conv1D/2D/3D, DepthwiseConv2D, Dense, BatchNormalization) in model
order against the weight-bearing Gluon blocks (nn.Conv*, nn.Dense,
nn.BatchNorm) in registration order. Layouts are converted on the way:

- convolution kernels: Keras (*spatial, in, out) -> Gluon (out, in, *spatial);
  depthwise kernels: (kh, kw, in, mult) -> (in * mult, 1, kh, kw);
- Dense kernels: (in, out) -> (out, in);
- BatchNorm: gamma/beta/moving_mean/moving_variance -> gamma/beta/running_mean/
  running_var; a Keras BatchNorm with scale=False or center=False gets
  gamma = 1 or beta = 0 (what it computes);
- the first Dense after a Flatten of an image tensor: Keras flattens (H, W, C),
  Gluon flattens (C, H, W), so the Dense's input rows are permuted to NCHW
  order (unless permute_flatten=False).

The shape entering that Flatten is read on the Gluon side, by one forward pass
of the port on zeros (in eager mode, with forward hooks): it is the shape the
Gluon Dense really receives, it needs no TensorFlow, and the same pass
finishes Gluon's deferred initialization. When the source is an in-memory Keras
model its own Flatten input shape is known too, and the two must agree.

The Keras side is read from a whole-model .h5 file with h5py (no TensorFlow,
so this runs in an MXNet process) or from an in-memory Keras model; use
`read_keras_weights` in the Keras process to turn a model into a picklable
`KerasWeights` that `transfer_weights` accepts in the MXNet process.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from xvalidate.errors import ConversionError, InputFileError, OptionError, UnsupportedLayerError

KERAS_KINDS = {
    "Conv1D": "conv", "Conv2D": "conv", "Conv3D": "conv", "Convolution1D": "conv", "Convolution2D": "conv",
    "Convolution3D": "conv", "DepthwiseConv2D": "dwconv", "Dense": "dense", "BatchNormalization": "bn",
}
_NESTED_MODELS = ("Sequential", "Functional", "Model")


@dataclass
class KerasLayerWeights:
    """One weight-bearing Keras layer: its arrays by role ("kernel", "bias", "gamma", "moving_mean", ...).

    flatten:       name of the Flatten layer between the previous weight-bearing layer and this Dense, if any.
    flatten_input: the per-sample shape entering that Flatten, when known (in-memory models only).
    """

    name: str
    class_name: str
    arrays: dict[str, np.ndarray]
    flatten: str | None = None
    flatten_input: tuple | None = None

    @property
    def kind(self) -> str:
        return KERAS_KINDS[self.class_name]


@dataclass
class KerasWeights:
    """The weight-bearing layers of a Keras model in model order, and its input shape (batch as None)."""

    layers: list[KerasLayerWeights] = field(default_factory=list)
    input_shape: tuple | None = None

    @property
    def nchw_input_shape(self) -> tuple | None:
        """The input shape for one sample in Gluon's layout: (None, *spatial, C) -> (1, C, *spatial);
        None when a dimension is not fixed."""
        shape = self.input_shape
        if shape is None or any(d is None for d in shape[1:]):
            return None
        dims = tuple(int(d) for d in shape[1:])
        return (1, dims[-1], *dims[:-1]) if len(dims) >= 2 else (1, *dims)


# ---------------------------------------------------------------- Keras side
def read_keras_weights(src: Any) -> KerasWeights:
    """Read the weight-bearing layers of a Keras model: a whole-model .h5 path or an in-memory model."""
    if isinstance(src, KerasWeights):
        return src
    if isinstance(src, (str, os.PathLike)):
        return _read_h5(os.fspath(src))
    if hasattr(src, "layers") and hasattr(src, "input_shape"):
        return _read_model(src)
    raise OptionError(f"keras source: expected a .h5 path or a Keras model, got {type(src).__name__}")


def _role(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[-1].split(":")[0]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _collect(entries: Sequence[tuple[str, str, dict, tuple | None]], input_shape: tuple | None) -> KerasWeights:
    """entries: (layer name, class name, arrays by role, flatten input shape or None) in model order."""
    out, pending = KerasWeights(input_shape=input_shape), None
    for name, class_name, arrays, flatten_input in entries:
        if class_name == "Flatten":
            pending = (name, flatten_input)
            continue
        if not arrays:
            continue
        if class_name in _NESTED_MODELS:
            raise UnsupportedLayerError(f"keras layer {name!r}: nested {class_name} models are not supported; "
                                        "expected a flat model")
        if class_name not in KERAS_KINDS:
            raise UnsupportedLayerError(f"keras layer {name!r}: cannot transfer weights of a {class_name}; "
                                        f"expected one of {', '.join(sorted(KERAS_KINDS))}")
        flatten = pending if class_name == "Dense" else None
        out.layers.append(KerasLayerWeights(name, class_name, arrays, *(flatten or (None, None))))
        pending = None
    return out


def _read_h5(path: str) -> KerasWeights:
    import h5py

    if not os.path.isfile(path):
        raise InputFileError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputFileError(f"{path}: not an HDF5 file; expected a Keras model saved as .h5")
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise InputFileError(f"{path}: no model_config/model_weights; expected a whole model saved with "
                                 "model.save('x.h5'), not save_weights")
        config = json.loads(_text(f.attrs["model_config"]))
        layer_configs = config["config"]["layers"]
        classes = {layer["config"]["name"]: layer["class_name"] for layer in layer_configs}
        group = f["model_weights"]
        entries = []
        for name in map(_text, group.attrs["layer_names"]):
            weight_names = [_text(w) for w in group[name].attrs["weight_names"]]
            arrays = {_role(w): np.asarray(group[name][w]) for w in weight_names}
            if len(arrays) != len(weight_names) and classes.get(name) in KERAS_KINDS:
                raise UnsupportedLayerError(f"{path}: keras layer {name!r} has repeated weight names "
                                            f"{weight_names}; expected one weight per role")
            entries.append((name, classes.get(name, "?"), arrays, None))
    batch_shapes = [layer["config"]["batch_input_shape"] for layer in layer_configs
                    if "batch_input_shape" in layer["config"]]
    return _collect(entries, tuple(batch_shapes[0]) if batch_shapes else None)


def _read_model(model: Any) -> KerasWeights:
    entries = []
    for layer in model.layers:
        class_name = type(layer).__name__
        arrays = {_role(w.name): np.asarray(a) for w, a in zip(layer.weights, layer.get_weights())}
        flatten_input = tuple(layer.input_shape[1:]) if class_name == "Flatten" else None
        entries.append((layer.name, class_name, arrays, flatten_input))
    shape = model.input_shape
    return _collect(entries, tuple(shape) if isinstance(shape, tuple) else None)


# ---------------------------------------------------------------- Gluon side
def _gluon_kind(block: Any) -> str | None:
    from mxnet.gluon import nn

    if isinstance(block, nn.BatchNorm):
        return "bn"
    if isinstance(block, nn.Dense):
        return "dense"
    if isinstance(block, (nn.Conv1D, nn.Conv2D, nn.Conv3D)):
        return "conv"
    return None


def _weight_blocks(block: Any) -> list:
    """Weight-bearing blocks of `block` (itself included) in registration order."""
    kind = _gluon_kind(block)
    if kind is not None:
        return [block]
    if block._reg_params:
        raise UnsupportedLayerError(f"gluon block {block.name!r} ({type(block).__name__}) has parameters "
                                    f"{sorted(block._reg_params)}; expected only nn.Conv*, nn.Dense, nn.BatchNorm")
    return [b for child in block._children.values() for b in _weight_blocks(child)]


def _all_blocks(block: Any) -> Iterator:
    yield block
    for child in block._children.values():
        yield from _all_blocks(child)


@contextmanager
def _eager(block: Any) -> Iterator[None]:
    """Run `block` imperatively (so that children's forward hooks fire), restoring hybridization after."""
    active = [b for b in _all_blocks(block) if getattr(b, "_active", False)]
    for b in active:
        b._active = False
    try:
        yield
    finally:
        for b in active:
            b._active = True


def _initialize(block: Any) -> Any:
    """Initialize the parameters never initialized (deferred when shapes are unknown); return their context."""
    import mxnet as mx

    contexts, missing = [], []
    for param in block.collect_params().values():
        try:
            contexts.append(param.list_ctx()[0])
        except RuntimeError:
            missing.append(param)
    ctx = contexts[0] if contexts else mx.cpu()
    for param in missing:
        param.initialize(ctx=ctx)
    return ctx


def _trace_flatten_inputs(block: Any, dense_blocks: list, x_shape: tuple, ctx: Any) -> dict[int, tuple | None]:
    """Forward zeros of `x_shape` through `block`; for each Dense, the per-sample shape of the last tensor of
    rank >= 3 before it (its own input, or the output of the last block that still had spatial axes)."""
    import mxnet as mx

    last_spatial: list[tuple | None] = [None]
    found: dict[int, tuple | None] = {}
    targets = {id(b) for b in dense_blocks}

    def hook(blk: Any, inputs: tuple, output: Any) -> None:
        out = output[0] if isinstance(output, (list, tuple)) else output
        if not isinstance(out, mx.nd.NDArray):  # a symbolic pass of deferred shape inference
            return
        if id(blk) in targets and id(blk) not in found:
            shape = tuple(inputs[0].shape)
            found[id(blk)] = shape[1:] if len(shape) >= 3 else last_spatial[0]
        if len(out.shape) >= 3:
            last_spatial[0] = tuple(out.shape[1:])

    handles = [b.register_forward_hook(hook) for b in _all_blocks(block)
               if not b._children or _gluon_kind(b) is not None]
    try:
        with _eager(block):
            block(mx.nd.zeros(x_shape, ctx=ctx))
    except (mx.base.MXNetError, ValueError) as exc:  # deferred shape inference re-raises as ValueError
        last = str(exc).strip().splitlines()[-1]  # MXNet puts the failed check last
        raise ConversionError(f"gluon block {block.name!r}: forward on zeros of shape {x_shape} failed "
                              f"(expected NCHW input): {last}") from None
    finally:
        for h in handles:
            h.detach()
    return found


# ---------------------------------------------------------------- conversions
def _conv_kernel(kernel: np.ndarray) -> np.ndarray:
    n = kernel.ndim
    return np.transpose(kernel, (n - 1, n - 2, *range(n - 2)))


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    kh, kw, cin, mult = kernel.shape
    return np.transpose(kernel, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)


def _dense_kernel(kernel: np.ndarray, channels_last: tuple | None) -> np.ndarray:
    """(in, out) -> (out, in); with `channels_last` = (*spatial, C) the rows go from NHWC to NCHW order."""
    if channels_last is None:
        return kernel.T
    *spatial, channels = channels_last
    k = kernel.reshape(*spatial, channels, kernel.shape[1])
    n = k.ndim
    return np.transpose(k, (n - 1, n - 2, *range(n - 2))).reshape(kernel.shape[1], -1)


def _flatten_order(layer: KerasLayerWeights, gluon_shape: tuple | None, block: Any) -> tuple | None:
    """The Keras channels-last shape entering the Flatten before `layer`, or None when no permutation applies."""
    rows = layer.arrays["kernel"].shape[0]
    keras_shape = layer.flatten_input
    if gluon_shape is not None and int(np.prod(gluon_shape)) != rows:
        gluon_shape = None  # that tensor is not what this Dense flattens
    if keras_shape is not None:
        if len(keras_shape) < 2:
            return None
        expected = (keras_shape[-1], *keras_shape[:-1])
        if gluon_shape is not None and tuple(gluon_shape) != expected:
            raise ConversionError(f"keras layer {layer.flatten!r} flattens {keras_shape} (NHWC) but gluon block "
                                  f"{block.name!r} receives {tuple(gluon_shape)} (NCHW); expected {expected}")
        return tuple(keras_shape)
    if gluon_shape is not None and len(gluon_shape) >= 2:
        channels, *spatial = gluon_shape
        return (*spatial, channels)
    return None


def _converted(layer: KerasLayerWeights, block: Any, flatten_shape: tuple | None) -> list[tuple[str, np.ndarray, str]]:
    """(gluon parameter attribute, array, keras role) for one pair."""
    a = layer.arrays
    if layer.kind == "bn":
        size = a["moving_mean"].shape
        return [("gamma", a.get("gamma", np.ones(size, np.float32)), "gamma"),
                ("beta", a.get("beta", np.zeros(size, np.float32)), "beta"),
                ("running_mean", a["moving_mean"], "moving_mean"),
                ("running_var", a["moving_variance"], "moving_variance")]
    if layer.kind == "dwconv":
        weight = ("weight", _depthwise_kernel(a["depthwise_kernel"]), "depthwise_kernel")
    elif layer.kind == "conv":
        weight = ("weight", _conv_kernel(a["kernel"]), "kernel")
    else:
        weight = ("weight", _dense_kernel(a["kernel"], flatten_shape), "kernel")
    out_size = weight[1].shape[0]
    if "bias" in a:
        if block.bias is None:
            raise ConversionError(f"keras layer {layer.name!r} has a bias {a['bias'].shape} but gluon block "
                                  f"{block.name!r} has none (use_bias=False); expected use_bias=True")
        return [weight, ("bias", a["bias"], "bias")]
    if block.bias is not None:
        return [weight, ("bias", np.zeros(out_size, np.float32), "bias (absent: zeros)")]
    return [weight]


def _check_shape(layer: KerasLayerWeights, block: Any, attr: str, array: np.ndarray, role: str) -> None:
    param_shape = tuple(getattr(block, attr).shape)
    if param_shape != array.shape:
        source = layer.arrays.get(role.split()[0])
        keras_shape = tuple(source.shape) if source is not None else array.shape
        raise ConversionError(f"keras layer {layer.name!r} {role} {keras_shape} (as {array.shape}) does not fit "
                              f"gluon block {block.name!r} {attr} {param_shape}")


# ---------------------------------------------------------------- the transfer
def transfer_weights(src: Any, dst: Any, input_shape: Sequence[int] | None = None, permute_flatten: bool = True,
                     layers: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Copy the weights of Keras model `src` into Gluon block `dst`, pairing layers by order.

    src:             a whole-model Keras .h5 path, an in-memory Keras model, or a `KerasWeights`.
    dst:             a Gluon Block, initialized or not, hybridized or not.
    input_shape:     NCHW shape of one input for the forward on zeros that infers deferred shapes and the
                     shape entering Flatten (default: the Keras input shape, batch 1, moved to NCHW).
    permute_flatten: reorder the rows of the first Dense after a Flatten from NHWC to NCHW flatten order.
    layers:          names of the Keras layers to copy (default: every weight-bearing layer).
    Returns the (keras layer, gluon block) pairs copied. Raises ConversionError (one line, naming both
    sides and their shapes) when counts, kinds or shapes cannot agree.
    """
    import mxnet as mx

    weights = read_keras_weights(src)
    keras_layers = weights.layers
    if layers is not None:
        known = {layer.name for layer in keras_layers}
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise OptionError(f"layers: no weight-bearing keras layer {unknown[0]!r}; expected some of "
                              f"{', '.join(sorted(known))}")
        keras_layers = [layer for layer in keras_layers if layer.name in set(layers)]
    blocks = _weight_blocks(dst)
    if len(blocks) != len(keras_layers):
        raise ConversionError(
            f"keras model has {len(keras_layers)} weight-bearing layers ({', '.join(l.name for l in keras_layers)}) "
            f"but gluon block {dst.name!r} has {len(blocks)} ({', '.join(b.name for b in blocks)})")
    for layer, block in zip(keras_layers, blocks):
        expected_kind = "conv" if layer.kind == "dwconv" else layer.kind
        if _gluon_kind(block) != expected_kind:
            raise ConversionError(f"keras layer {layer.name!r} ({layer.class_name}) pairs with gluon block "
                                  f"{block.name!r} ({type(block).__name__}); expected the same kind of layer")

    ctx = _initialize(dst)
    needs_flatten = permute_flatten and any(layer.flatten for layer in keras_layers)
    unknown_shapes = any(p.shape is None or 0 in p.shape for p in dst.collect_params().values())
    flatten_shapes: dict[int, tuple | None] = {}
    if needs_flatten or unknown_shapes:
        x_shape = tuple(input_shape) if input_shape is not None else weights.nchw_input_shape
        if x_shape is None:
            raise OptionError(f"input_shape: gluon block {dst.name!r} needs a forward pass to infer shapes and the "
                              f"keras input shape {weights.input_shape} is not fixed; pass input_shape (NCHW)")
        dense = [b for layer, b in zip(keras_layers, blocks) if layer.flatten]
        flatten_shapes = _trace_flatten_inputs(dst, dense, x_shape, ctx)

    converted = []  # everything is checked before anything is copied
    for layer, block in zip(keras_layers, blocks):
        order = None
        if layer.flatten and permute_flatten:
            order = _flatten_order(layer, flatten_shapes.get(id(block)), block)
        for attr, array, role in _converted(layer, block, order):
            _check_shape(layer, block, attr, array, role)
            converted.append((getattr(block, attr), array))
    for param, array in converted:
        param.set_data(mx.nd.array(array, ctx=ctx, dtype=param.dtype))
    return [(layer.name, block.name) for layer, block in zip(keras_layers, blocks)]

