"""The interface of conversion routes.

A route converts a model from one framework to another with a converter
(MMdnn, tf2onnx, MXNet's ONNX import/export), running each step in a worker of
the framework it needs, and says what it knows of the name correspondence. It
never computes metrics.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xvalidate.errors import OptionError

# what conversion.json holds; part of the conversion cache key, so entries of an older layout are rebuilt
# (2: the intermediate model of a composed conversion)
CONVERSION_FORMAT = 2


@dataclass
class Intermediate:
    """The model a conversion went through (a hub: src -> ONNX -> dst), kept so that each half is
    compared too.

    adapter:    the adapter that runs it.
    source:     its file.
    src_hints:  {intermediate tensor: (source layer, how)}, for source vs intermediate.
    dst_hints:  {destination tensor: (intermediate tensor, how)}, for intermediate vs destination.
    """

    adapter: str
    source: str
    src_hints: dict[str, tuple[str, str]] = field(default_factory=dict)
    dst_hints: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class Conversion:
    """What a route produced.

    dst_source: the converted model's file, loadable by the destination adapter.
    hints:      {destination tensor: (source layer, "name" | "fused")} for the aligner.
    artifacts:  {label: path} of every file the route wrote (IR, generated code, weights...).
    seconds:    {step: seconds} for the conversion steps.
    intermediate: the model between the two halves of a composed conversion, or None.
    """

    dst_source: str
    hints: dict[str, tuple[str, str]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cache_hit: bool = False
    intermediate: Intermediate | None = None

    def save(self, directory: Path) -> None:
        """Write conversion.json with paths relative to `directory`."""
        data = asdict(self)
        data.pop("cache_hit")
        data["dst_source"] = str(Path(self.dst_source).relative_to(directory))
        data["artifacts"] = {k: str(Path(v).relative_to(directory)) for k, v in self.artifacts.items()}
        if self.intermediate is not None:
            data["intermediate"]["source"] = str(Path(self.intermediate.source).relative_to(directory))
        (directory / "conversion.json").write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, directory: Path) -> "Conversion":
        data = json.loads((directory / "conversion.json").read_text())
        data["dst_source"] = str(directory / data["dst_source"])
        data["artifacts"] = {k: str(directory / v) for k, v in data["artifacts"].items()}
        data["hints"] = {k: tuple(v) for k, v in data["hints"].items()}
        hub = data.pop("intermediate", None)
        if hub is not None:
            hub = Intermediate(hub["adapter"], str(directory / hub["source"]),
                               *({k: tuple(v) for k, v in hub[key].items()} for key in ("src_hints", "dst_hints")))
        return cls(**data, cache_hit=True, intermediate=hub)


class Route:
    """Base class of routes. `pairs` lists the (src, dst) adapter pairs the route converts;
    `packages` the distributions whose versions enter the conversion cache key."""

    name: str = ""
    pairs: tuple[tuple[str, str], ...] = ()
    packages: tuple[str, ...] = ()
    # the route options `convert` takes: {name: (type, help)}, type "int", "float", "str" or "shape"
    # (integers like 1,3,224,224); the CLI offers each as --name plus --route-option name=VALUE
    options: dict[str, tuple[str, str]] = {}

    def check(self, src: str, dst: str) -> None:
        """Raise OptionError when this route cannot convert `src` models to `dst`."""
        if (src, dst) not in self.pairs:
            can = ", ".join(f"{a}->{b}" for a, b in self.pairs)
            raise OptionError(f"via={self.name!r} cannot convert {src} to {dst}; it converts {can}")

    def reachable_pairs(self) -> set[tuple[str, str]]:
        """Every (src, dst) this route converts: its `pairs`, and for a hub route its compositions."""
        return set(self.pairs)

    def convert(self, source: str, src: str, dst: str, out_dir: Path, **options: Any) -> Conversion:
        """Convert the `src` model file `source` to `dst`, writing everything under `out_dir`."""
        raise NotImplementedError

    def pairing_name(self, name: str) -> str:
        """The name a tensor of a model this route wrote pairs by, after the destination adapter's own
        `pairing_name`: strip what the converter adds to layer names. The default keeps the name."""
        return name

    def needs_input_shape(self, src: str, dst: str) -> bool:
        """Whether converting `src` models to `dst` takes the route option `input_shape` (a model
        format that does not record its input shape)."""
        return False


def parse_option(name: str, kind: str, value: str) -> Any:
    """A route option given as text (CLI) in its declared type; a bad value raises OptionError."""
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "shape":
            return [int(v) for v in value.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        want = "integers like 1,3,224,224" if kind == "shape" else f"a value of type {kind}"
        raise OptionError(f"route option {name}: expected {want}, got {value!r}") from None
    return value


def with_input_shape(route: Route, src: str, dst: str, source: str, inputs: Any,
                     options: dict[str, Any]) -> dict[str, Any]:
    """`options` plus `input_shape` (batch 1) taken from the inputs the user gave, when the route needs
    one and none is given. Inputs that cannot be read are left for the comparison to report."""
    if inputs is None or "input_shape" in options or not route.needs_input_shape(src, dst):
        return options
    from xvalidate.errors import XValidateError
    from xvalidate.inputs import load_inputs
    from xvalidate.worker import get_worker

    info = get_worker(src).input_info(source)
    try:
        x, _ = load_inputs(inputs, info.shape, info.layout, dtype=info.dtype)
    except XValidateError:
        return options
    return {**options, "input_shape": [1, *x.shape[1:]]}
