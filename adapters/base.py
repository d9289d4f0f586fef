"""The interface every framework adapter implements.

An adapter knows one framework. It loads a model, lists its layers in
topological order and captures the outputs of any set of layers in ONE forward
pass. It knows nothing of alignment, metrics or other frameworks, and imports
its framework lazily (inside methods), so importing an adapter module is cheap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

# Framework-neutral op kinds, used by the core to pair layers structurally.
KINDS = (
    "input", "conv", "dwconv", "dense", "bn", "relu", "relu6", "sigmoid", "tanh",
    "softmax", "swish", "act", "maxpool", "avgpool", "gpool", "flatten", "reshape",
    "add", "mul", "concat", "pad", "dropout", "identity", "other",
)


@dataclass
class LayerInfo:
    """One capturable tensor of a model.

    name:   the key `run` uses for this tensor's output.
    op:     the framework's own op or class name ("Conv2D", "Convolution", "Conv").
    shape:  output shape with the batch dimension as None, or None when unknown.
    layout: "NHWC", "NCHW", "NWC", "NCW", "NC" or "none" (how to read `shape`).
    kinds:  the computation this layer performs as a sequence of KINDS, in order;
            its output is the result of the last one. A Keras Conv2D with
            activation="relu" is ["conv", "relu"]; a Gluon conv0_fwd is ["conv"].
            Ops that only move data around (identity, dropout at inference,
            layout transposes) have kinds ["identity"].
    inputs: names of the layers whose outputs feed this one (may be empty).
    attrs:  small facts the diagnosis may use: kernel, strides, padding, units,
            activation, epsilon, axis, use_bias...
    """

    name: str
    op: str
    shape: tuple | None = None
    layout: str = "none"
    kinds: list[str] = field(default_factory=lambda: ["other"])
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = None if self.shape is None else list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "LayerInfo":
        d = dict(d)
        if d.get("shape") is not None:
            d["shape"] = tuple(d["shape"])
        return cls(**d)


@dataclass
class InputInfo:
    """One input of a model.

    name:   the input's name in the model (what a dict of inputs is keyed by).
    shape:  with the batch dimension as None.
    dtype:  what the model takes ("float32", "int32", "int64", "bool"...).
    layout: "NHWC", "NCHW", "NWC" (also (batch, time, features) sequences), "NCW", "NC" or "none".
    value_range: [low, high) of the values the model accepts, when it knows them: token ids
            feeding an Embedding are [0, input_dim), masks [0, 2); None for real-valued data.
    layout_guessed: the layout was read from the shape alone, not from the graph.
    """

    name: str
    shape: tuple
    dtype: str = "float32"
    layout: str = "none"
    value_range: tuple | None = None
    layout_guessed: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["value_range"] = None if self.value_range is None else list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "InputInfo":
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        if d.get("value_range") is not None:
            d["value_range"] = tuple(d["value_range"])
        return cls(**d)


class Adapter:
    """Base class of framework adapters. Subclasses set the class attributes and
    implement `load`, `layers`, `input_info` and `run`.

    name:        registry name ("keras", "mxnet", "onnx").
    layout:      the data layout the framework's image models use ("NHWC"/"NCHW").
    extensions:  file suffixes `load` accepts, e.g. (".h5", ".keras").
    packages:    the distributions whose versions a report records, e.g. ("mxnet",).
    environment: None (the worker runs in this Python), or an xvalidate.environments.Environment:
                 a venv of its own, created on first use (docs/environments.md).
    worker_variables: environment variables of the adapter's worker; "{private}" in a value
                 becomes a directory of that worker's own.
    """

    name: str = ""
    layout: str = "none"
    extensions: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()  # distributions whose versions the reports record
    environment: Any = None
    worker_variables: dict[str, str] = {}

    def pairing_name(self, name: str) -> str:
        """The name tensor `name` pairs by, before the aligner's own normalization: strip what this
        framework or its converters add to a layer's name. The default keeps the name."""
        return name

    def model_files(self, path: str) -> list[str]:
        """Every file that makes up the model at `path` (the conversion cache digests them all): by
        default `path` itself (a directory: every file under it)."""
        return [path]

    def load(self, source: Any) -> Any:
        """A file path (str or Path) or an in-memory model object -> a loaded model."""
        raise NotImplementedError

    def layers(self, model: Any) -> list[LayerInfo]:
        """Every capturable layer output, in topological order (inputs excluded)."""
        raise NotImplementedError

    def input_info(self, model: Any) -> InputInfo:
        """The model's (first) input."""
        raise NotImplementedError

    def inputs_info(self, model: Any) -> list[InputInfo]:
        """Every input of the model, in the model's order. Adapters of multi-input models override this."""
        return [self.input_info(model)]

    def run(self, model: Any, x: np.ndarray | Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Ordered {layer name: output} for every asked layer (all when None), in ONE forward pass.
        `x` is in this framework's layout: one array, or {input name: array} (see
        common.input_arrays). Unknown names raise UnknownLayerError."""
        raise NotImplementedError

    def owns(self, obj: Any) -> bool:
        """True when `obj` is an in-memory model of this framework (checked without importing it)."""
        return False

    def kernel(self, model: Any, name: str) -> np.ndarray | None:
        """The convolution kernel behind captured tensor `name` as (out channels, in channels per
        group, *spatial), looking through the BatchNorm and activation after it, or None (no
        convolution there, or the adapter cannot tell). The diagnosis compares kernels across
        sides to tell a transposed or flipped kernel from other weight faults."""
        return None

    def recurrent_weights(self, model: Any, name: str) -> tuple | None:
        """(W, R, B) of a one-direction LSTM behind captured tensor `name`, in ONNX's layout (W (4H,
        input), R (4H, H), B (8H); gate blocks i, o, f, c), or None. The diagnosis re-runs the LSTM
        with its gate blocks in other orders to name a gate-order fault."""
        return None

    def supports_isolation(self, model: Any) -> bool:
        """Whether `run_isolated` works for `model` (isolated checks, `compare(..., isolate=True)`)."""
        return False

    def run_isolated(self, model: Any, x: Any, feeds: Mapping[str, np.ndarray],
                     layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Like `run`, but every tensor named in `feeds` is read by the ops that consume it from the
        given value instead of as computed; the asked tensors are still computed, so each one comes
        from the fed values of the tensors above it. One forward pass for all of them."""
        raise NotImplementedError(f"isolate is not supported for destination {self.name}")

    def release(self, model: Any) -> None:
        """Drop whatever the adapter keeps for `model` (capture graphs, sessions): the worker is done with it."""

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        """Write an in-memory model to files under `directory` that `load` reads; return the path.
        Called in the user's process (where the framework is already imported) so that a
        worker process can load the model."""
        raise NotImplementedError
