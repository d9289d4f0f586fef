"""Fault-injection benchmark: plant known faults into correct conversions and score the diagnosis.

    make faults                      # every model (about 15 minutes on 2 cores)
    python benchmarks/faults.py --models seed2_cnn resnet_block --out /tmp/faults.json

Each model (built in code, random weights with randomized BatchNorm statistics) is converted
keras -> onnx once; the unmodified conversion is the control, which must PASS. Then every fault
kind of `plant_onnx` is planted at a few layers of it (chosen by a seeded generator, spread over
the depth), and the edited model is compared with the Keras model using the conversion's own name
hints, as `validate` would. Three scores:
  right layer: the first root named is the planted layer (a Conv folded with its BatchNorm may be
               named at either);
  right cause: the first root's cause names the planted kind;
  false alarm: a control that does not PASS.
Faults are also planted into MMdnn conversions (keras -> mxnet), by editing their params and
symbol in an MXNet worker (`plant_mxnet`), and the seed-2 hand ports to Gluon (padding 0, no
softmax, Dense rows not permuted, each also as the answer's YourNet) are scored the same way. Results go to docs/faults.md and benchmarks/faults.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import plant_onnx as plant  # noqa: E402

import xvalidate  # noqa: E402
from xvalidate.cache import convert_cached  # noqa: E402
from xvalidate.core.align import ACTIVATIONS  # noqa: E402
from xvalidate.worker import get_worker, shutdown_workers  # noqa: E402

MODELS = ("seed2_cnn", "resnet_block", "ResNet50V2", "ResNet50", "MobileNetV2", "DenseNet121", "EfficientNetB0",
          "InceptionV3", "Xception")
# kind -> (what the cause must start with, any of)
CAUSES = {
    "weights": ("weights",),
    "kernel transposed": ("kernel",),
    "channel order": ("channel order",),
    "batchnorm": ("batchnorm", "per-channel scale"),
    "activation dropped": ("activation",),
    "activation added": ("activation",),
    "padding placement": ("padding placement",),
    "padding amount": ("padding",),
    "average pooling": ("average pooling",),
    "layout": ("layout",),
    "constant input": ("constant input",),
    "nan/inf": ("nan/inf",),
    "flatten order": ("flatten order",),
}


@dataclass
class Case:
    model: str
    kind: str
    target: str
    what: str
    expected: list[str]
    verdict: str = ""
    root: str | None = None
    cause: str = ""
    roots: list[str] = field(default_factory=list)
    right_layer: bool = False
    right_cause: bool = False
    seconds: float = 0.0


# ---------------------------------------------------------------- choosing targets
class Targets:
    """Where faults can go in one clean conversion, and which source layers each would blame."""

    def __init__(self, model: onnx.ModelProto, report, src_layers):
        self.model = model
        self.rows = report.layers
        self.src = {info.name: info for info in src_layers}
        self.by_dst = {row.dst: row for row in self.rows}

    def blamed(self, tensors) -> list[str]:
        names = []
        for tensor in tensors:
            row = self.by_dst.get(tensor)
            if row is None:
                continue
            names.append(row.src)
            if row.match == "fused":  # a Conv folded with its BatchNorm: either may be named
                names += [i for i in self.src[row.src].inputs if "conv" in self.src[i].kinds]
        return names

    def convs(self, square: bool = False, padded: bool = False,
              strided: bool = False) -> list[tuple[onnx.NodeProto, list[str]]]:
        out = []
        for node in self.model.graph.node:
            if node.op_type != "Conv" or (int(plant._attr(node, "group", 1)) != 1 and not strided):
                continue
            kernel = list(plant._attr(node, "kernel_shape", []))
            if square and (len(kernel) != 2 or kernel[0] != kernel[1] or kernel[0] < 2):
                continue
            if padded and (list(plant._attr(node, "pads", [])) != [1, 1, 1, 1]
                           or list(plant._attr(node, "strides", [1, 1])) != [1, 1]):
                continue
            tensors = [node.output[0]] + [c.output[0] for c in plant.consumers(self.model, node.output[0])
                                          if c.op_type in plant.ACTIVATION_OPS]
            blamed = self.blamed(tensors)
            if blamed:
                out.append((node, blamed))
        return out

    def strided(self) -> list[tuple[onnx.NodeProto, list[str]]]:
        """Convolutions and max poolings of stride 2 padded TensorFlow's 'same' way on even sizes
        (the extra row/column at the bottom/right)."""
        return [(node, blamed) for node, blamed in self.convs(strided=True) + self.nodes(("MaxPool",))
                if list(plant._attr(node, "pads", [])) == [0, 0, 1, 1]
                and list(plant._attr(node, "strides", [1, 1])) == [2, 2]]

    def nodes(self, ops) -> list[tuple[onnx.NodeProto, list[str]]]:
        out = []
        for node in self.model.graph.node:
            if node.op_type in ops and node.output[0] in self.by_dst:
                out.append((node, self.blamed([node.output[0]])))
        return out

    def swishes(self) -> list[tuple[onnx.NodeProto, list[str]]]:
        out = []
        for node in self.model.graph.node:
            if node.op_type == "Mul" and node.output[0] in self.by_dst and any(
                    (plant.producer(self.model, i) or node).op_type == "Sigmoid" for i in node.input) and \
                    "swish" in self.src[self.by_dst[node.output[0]].src].kinds:
                out.append((node, self.blamed([node.output[0]])))
        return out

    def plain_outputs(self, square: bool = False) -> list[tuple[str, list[str]]]:
        """Tensors of paired rows that end in no activation and feed no activation (a Relu inserted
        after them changes what their consumers compute). Blamed: the row, or a consumer of it (an
        inserted node sits between the two)."""
        consumers: dict[str, list[str]] = {}
        for info in self.src.values():
            for name in info.inputs:
                consumers.setdefault(name, []).append(info.name)
        out = []
        for row in self.rows:
            info = self.src[row.src]
            if row.dst is None or info.kinds[-1] not in ("conv", "bn", "add") or row.dst_shape is None:
                continue
            if len(row.dst_shape) != 4 or (square and row.dst_shape[2] != row.dst_shape[3]):
                continue
            after = consumers.get(row.src, [])
            if not after or any(self.src[c].kinds[0] in ACTIVATIONS for c in after):
                continue
            if any(o.name == row.dst for o in self.model.graph.output):
                continue
            folded = [r.src for r in self.rows if r.match == "fused" and set(self.src[r.src].inputs) & set(after)]
            out.append((row.dst, [row.src, *after, *folded]))
        return out


def _spread(items: list, count: int, rng: np.random.Generator) -> list:
    """`count` items spread over the list (its depth), with a little seeded jitter."""
    if len(items) <= count:
        return list(items)
    edges = np.linspace(0, len(items), count + 1).astype(int)
    return [items[int(rng.integers(lo, max(hi, lo + 1)))] for lo, hi in zip(edges[:-1], edges[1:])]


def plan(targets: Targets, rng: np.random.Generator, per_kind: int) -> list[tuple[str, object, list[str], object]]:
    """(kind, planter, expected layers, node or tensor) for every fault to plant in one model."""
    out = []
    convs = targets.convs()
    for kind, planter, pool in (
            ("weights", plant.weights_noise, convs),
            ("kernel transposed", plant.kernel_transposed, targets.convs(square=True)),
            ("channel order", plant.channels_swapped, convs),
            ("batchnorm", plant.folded_bn_scaled, [c for c in convs if any("bn" in targets.src[n].kinds for n in c[1])]),
            ("batchnorm", plant.bn_variance, targets.nodes(("BatchNormalization",))),
            ("batchnorm", plant.bn_epsilon, targets.nodes(("BatchNormalization",))),
            ("activation dropped", plant.activation_dropped, targets.nodes(plant.ACTIVATION_OPS)),
            ("activation dropped", plant.swish_dropped, targets.swishes()),
            ("activation added", plant.relu_added, targets.plain_outputs()),
            ("padding placement", plant.padding_moved, targets.convs(padded=True)),
            ("padding placement", plant.strided_padding_moved, targets.strided()),
            ("average pooling", plant.avgpool_counts_padding,
             [(n, b) for n, b in targets.nodes(("AveragePool",)) if any(plant._attr(n, "pads", [0]))]),
            ("layout", plant.axes_swapped, targets.plain_outputs(square=True)),
            ("constant input", plant.zero_input, convs),
            ("nan/inf", plant.nan_bias, [c for c in convs if len(c[0].input) > 2]),
    ):
        for target, expected in _spread(pool, per_kind, rng):
            out.append((kind, planter, expected, target))
    return out


# ---------------------------------------------------------------- running
def score(case: Case, report) -> Case:
    """Right layer and right cause of the first root; a planting that changed nothing the comparison
    can see (the report PASSes: e.g. a clip dropped after a relu that never reaches 6) is marked
    "no effect" and left out of the scores."""
    case.verdict = "no effect" if report.passed else "FAIL"
    root = report.first_divergence
    case.root = None if root is None else root.src
    case.cause = "" if root is None else (root.cause or "")
    case.roots = [r.src for r in report.roots]
    case.right_layer = case.root in case.expected
    case.right_cause = case.cause.startswith(CAUSES[case.kind])
    return case


def run_model(name: str, work: Path, per_kind: int, seed: int, log) -> tuple[dict, list[Case]]:
    h5 = str(work / f"{name}.h5")
    t0 = time.perf_counter()
    get_worker("keras").call("xvalidate.models.keras_zoo:save", name, h5)
    conversion = convert_cached("onnx", h5, "keras", "onnx", {})
    control = xvalidate.compare(h5, conversion.dst_source, src="keras", dst="onnx", hints=conversion.hints)
    info = {"model": name, "control": "PASS" if control.passed else "FAIL", "paired": len(control.layers),
            "control_cause": None if control.passed else control.first_divergence.cause,
            "seconds": round(time.perf_counter() - t0, 1)}
    log(f"{name}: control {info['control']} ({info['paired']} pairs, {info['seconds']} s)")
    clean = onnx.load(conversion.dst_source)
    targets = Targets(clean, control, get_worker("keras").layers(h5))
    rng = np.random.default_rng(seed)
    cases = []
    for kind, planter, expected, target in plan(targets, rng, per_kind):
        model = onnx.ModelProto()
        model.CopyFrom(clean)
        node_or_tensor = target if isinstance(target, str) else plant.node_by_name(model, target.name)
        try:
            what = planter(model, node_or_tensor, rng)
        except ValueError:
            continue
        path = work / f"{name}-faulty.onnx"
        onnx.save(model, str(path))
        t1 = time.perf_counter()
        report = xvalidate.compare(h5, str(path), src="keras", dst="onnx", hints=conversion.hints)
        case = score(Case(name, kind, getattr(target, "name", target), what, expected), report)
        case.seconds = round(time.perf_counter() - t1, 2)
        cases.append(case)
        log(f"  {kind:18s} {'ok ' if case.right_layer else 'LAYER'} {'ok ' if case.right_cause else 'CAUSE'} "
            f"{case.root} <- {what} :: {case.cause[:110]}")
    return info, cases


def run_ports(work: Path, log) -> tuple[list[dict], list[Case]]:
    """The seed-2 Gluon ports, right and wrong, as Gluon's default names and as the answer's YourNet."""
    h5 = str(work / "seed2_ports.h5")
    get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", h5)
    expected = {"pad0": ("padding amount", ["block1_conv1"]),
                "nosoftmax": ("activation dropped", ["final_fully_connected"]),
                "noperm": ("flatten order", ["final_fully_connected"])}
    controls, cases = [], []
    for family, build in (("gluon", "xvalidate.models.gluon_ports:save_port"), ("yournet", "seed2_yournet:export")):
        for variant in ("right", "pad0", "nosoftmax", "noperm"):
            prefix = str(work / f"{family}-{variant}")
            args = (variant, h5, prefix)
            symbol = get_worker("mxnet").call(build, *args)
            report = xvalidate.compare(h5, symbol, src="keras", dst="mxnet")
            if variant == "right":
                controls.append({"model": f"seed2 {family} port", "control": "PASS" if report.passed else "FAIL",
                                 "paired": len(report.layers), "control_cause": None if report.passed else
                                 report.first_divergence.cause})
                log(f"seed2 {family} port: control {controls[-1]['control']}")
                continue
            kind, layers = expected[variant]
            case = score(Case(f"seed2 {family} port", kind, variant, f"the seed's {variant} port", layers), report)
            cases.append(case)
            log(f"  {kind:18s} {'ok ' if case.right_layer else 'LAYER'} {'ok ' if case.right_cause else 'CAUSE'} "
                f"{case.root} :: {case.cause[:110]}")
    return controls, cases


MXNET_MODELS = ("seed2_cnn", "resnet_block", "ResNet50", "MobileNetV2")
_MXNET_KINDS = {  # planted kind -> (benchmark kind, MXNet ops it applies to)
    "weights": ("weights", ("Convolution",)),
    "kernel transposed": ("kernel transposed", ("Convolution",)),
    "channel order": ("channel order", ("Convolution",)),
    "batchnorm": ("batchnorm", ("BatchNorm",)),
    "batchnorm-eps": ("batchnorm", ("BatchNorm",)),
    "activation dropped": ("activation dropped", ("Activation", "relu", "clip")),
}


def run_mmdnn_model(name: str, work: Path, per_kind: int, seed: int, log) -> tuple[dict, list[Case]]:
    """Faults planted into the MMdnn conversion's params and symbol, edited in an MXNet worker."""
    h5 = str(work / f"{name}.h5")
    get_worker("keras").call("xvalidate.models.keras_zoo:save", name, h5)
    conversion = convert_cached("mmdnn", h5, "keras", "mxnet", {})
    control = xvalidate.compare(h5, conversion.dst_source, src="keras", dst="mxnet", hints=conversion.hints)
    label = f"{name} (mmdnn)"
    info = {"model": label, "control": "PASS" if control.passed else "FAIL", "paired": len(control.layers),
            "control_cause": None if control.passed else control.first_divergence.cause}
    log(f"{label}: control {info['control']} ({info['paired']} pairs)")
    rng = np.random.default_rng(seed)
    cases = []
    for planted, (kind, ops) in _MXNET_KINDS.items():
        pool = [row for row in control.layers if row.dst_op in ops and row.match in ("name", "normalized")]
        for row in _spread(pool, per_kind, rng):
            node = row.dst.split("@")[0].rsplit(":", 1)[0]
            try:
                symbol = get_worker("mxnet").call("plant_mxnet:plant", planted, conversion.dst_source, node,
                                                  str(work / "planted"), int(rng.integers(1 << 30)))
            except Exception:  # noqa: BLE001 - a target the kind does not fit (a 1x1 kernel transposed)
                continue
            report = xvalidate.compare(h5, symbol, src="keras", dst="mxnet", hints=conversion.hints)
            case = score(Case(label, kind, node, f"{planted} at MXNet node {node}", [row.src]), report)
            cases.append(case)
            log(f"  {kind:18s} {'ok ' if case.right_layer else 'LAYER'} {'ok ' if case.right_cause else 'CAUSE'} "
                f"{case.root} <- {case.what} :: {case.cause[:110]}")
    return info, cases


def table(controls: list[dict], all_cases: list[Case]) -> str:
    """docs/faults.md's tables."""
    cases = [c for c in all_cases if c.verdict != "no effect"]
    idle = [c for c in all_cases if c.verdict == "no effect"]
    kinds = sorted({c.kind for c in cases}, key=list(CAUSES).index)
    lines = ["| fault kind | planted | right layer | right cause |", "|---|---|---|---|"]
    for kind in kinds:
        of = [c for c in cases if c.kind == kind]
        lines.append(f"| {kind} | {len(of)} | {sum(c.right_layer for c in of)} | {sum(c.right_cause for c in of)} |")
    n = len(cases)
    layer, cause = sum(c.right_layer for c in cases), sum(c.right_cause for c in cases)
    lines.append(f"| **all** | **{n}** | **{layer} ({layer / max(n, 1):.0%})** | **{cause} ({cause / max(n, 1):.0%})** |")
    alarms = sum(c["control"] != "PASS" for c in controls)
    lines += ["", f"False alarms: {alarms} of {len(controls)} unmodified controls.", ""]
    if idle:
        lines += [f"Planted without effect (the comparison PASSes; not scored): {len(idle)}: " +
                  "; ".join(f"{c.model}: {c.what}" for c in idle), ""]
    lines += ["| model | control | layers paired | faults planted | right layer | right cause |", "|---|---|---|---|---|---|"]
    for control in controls:
        of = [c for c in cases if c.model == control["model"]]
        lines.append(f"| {control['model']} | {control['control']} | {control['paired']} | {len(of)} | "
                     f"{sum(c.right_layer for c in of)} | {sum(c.right_cause for c in of)} |")
    misses = [c for c in cases if not (c.right_layer and c.right_cause)]
    if misses:
        lines += ["", "Misses:", "", "| model | kind | planted | named | cause given |", "|---|---|---|---|---|"]
        lines += [f"| {c.model} | {c.kind} | {c.what} | {c.root} | {c.cause[:140].replace('|', '/')} |" for c in misses]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--mmdnn-models", nargs="*", default=list(MXNET_MODELS),
                        help="models whose MMdnn conversion gets faults in its MXNet params and symbol")
    parser.add_argument("--per-kind", type=int, default=2, help="faults of each kind planted per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ports", action="store_true", help="skip the seed-2 Gluon ports")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "faults.json"))
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "faults.md"))
    args = parser.parse_args(argv)
    controls, cases = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xvalidate-faults-") as tmp:
        try:
            for name in args.models:
                work = Path(tmp) / name
                work.mkdir()
                info, found = run_model(name, work, args.per_kind, args.seed, lambda m: print(m, flush=True))
                controls.append(info)
                cases += found
            for name in args.mmdnn_models:
                work = Path(tmp) / f"{name}-mmdnn"
                work.mkdir()
                info, found = run_mmdnn_model(name, work, args.per_kind, args.seed, lambda m: print(m, flush=True))
                controls.append(info)
                cases += found
            if not args.no_ports:
                port_controls, port_cases = run_ports(Path(tmp), lambda m: print(m, flush=True))
                controls += port_controls
                cases += port_cases
        finally:
            shutdown_workers()
    Path(args.out).write_text(json.dumps({"controls": controls, "cases": [asdict(c) for c in cases],
                                          "seconds": round(time.perf_counter() - started)}, indent=1) + "\n")
    text = table(controls, cases)
    print(text)
    if args.markdown:
        _write_markdown(Path(args.markdown), text, args, time.perf_counter() - started)
    return 0


def _write_markdown(path: Path, text: str, args, seconds: float) -> None:
    head = (Path(__file__).read_text().split('"""')[1].strip())
    path.write_text("# Fault-injection benchmark\n\n```\n" + head + "\n```\n\n"
                    f"One run (`make faults`; keras -> onnx: {', '.join(args.models)}; MMdnn conversions: "
                    f"{', '.join(args.mmdnn_models)}; {'' if args.no_ports else 'the seed-2 Gluon ports; '}"
                    f"{args.per_kind} faults of each kind per model where the model has a place for it; "
                    f"{seconds / 60:.0f} minutes on 2 cores):\n\n"
                    + text + "\n")


if __name__ == "__main__":
    sys.exit(main())
