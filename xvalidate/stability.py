"""Is a divergence the source model's own float32 sensitivity? When a comparison fails, the source
runs again on its first sample, once as is and DRAWS times with every float input moved by float32
rounding (relative noise of NOISE); the largest movement counts. A root whose source layer moves by itself about as much as the
destination differs from it shows no conversion fault: an ill-conditioned model (random weights
giving huge logits, near ties under a softmax) turns any re-ordering of float32 arithmetic into
differences of that size. The cause of such a root says so first, before what the checks of the
conversion read there (on such a model they fit the noise as well as anything). When the model's outputs agree and
every failing layer is explained that way, nothing is left that points at the conversion: those
layers pass with a note and so does the comparison (as a difference its readers contradict does in
core/diff). When an output differs, the verdict stays a failure: the outputs do differ on this input."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from xvalidate.errors import XValidateError
from xvalidate.inputs import one_or_dict

NOISE = 1e-7      # relative input noise: float32 rounding of the input values
COMPARABLE = 0.1  # the source moving by this fraction of the observed difference counts as "as much"
DRAWS = 3         # noisy runs; a near tie (a softmax over huge logits) flips on some draws only


def probe(report: Any, worker: Any, path: str, x: Mapping[str, np.ndarray], seed: int = 0) -> dict | None:
    """Annotate the roots of a failing `report` that the source's own sensitivity explains; return
    {"noise", "layers": {layer: {"moved", "differs"}}} (None when not run: a passing report, no float
    input, or a source that cannot run again)."""
    if report.passed or not report.roots or not hasattr(worker, "run"):
        return None
    first = {name: np.asarray(a[:1]) for name, a in x.items()}
    if not any(a.dtype.kind == "f" for a in first.values()):
        return None
    rng = np.random.default_rng(seed)
    failing = [row for row in report.layers if not row.passed]
    names = [root.src for root in report.roots] + [row.src for row in failing] + [report.layers[-1].src]
    try:
        plain = worker.run(path, one_or_dict(first), names)
        runs = [worker.run(path, one_or_dict(_moved(first, rng)), names) for _ in range(DRAWS)]
    except XValidateError:  # a nicety of the diagnosis: never a reason to fail the comparison
        return None
    rows = {row.src: row for row in [*report.layers, *report.roots]}  # a root may be blamed on an unpaired layer
    layers = {}
    for name in dict.fromkeys(names):
        metrics = rows[name].metrics or {}
        differs = metrics.get("max_abs")  # over the finite values
        if _nonfinite_differ(metrics):  # NaN or Inf on one side only: no rounding explains that
            continue
        if name in plain and differs and all(name in run for run in runs):
            layers[name] = {"moved": max(_max_abs(plain[name], run[name]) for run in runs), "differs": float(differs)}
    explained = {name for name, seen in layers.items() if seen["moved"] >= COMPARABLE * seen["differs"]}
    for root in report.roots:
        if root.src in explained:
            root.cause = f"{_sentence(layers[root.src])}; the conversion checks read: {root.cause}"
    found = {"noise": NOISE, "layers": layers}
    if _outputs_agree(report) and {root.src for root in report.roots} | {row.src for row in failing} <= explained:
        _pass_within_sensitivity(report, failing, layers)
        found["verdict"] = "every difference within the source's own float32 sensitivity; the outputs agree"
    return found


def _nonfinite_differ(metrics: Mapping[str, Any]) -> bool:
    """Whether one side holds NaN or Inf values the other does not (counted apart from max|diff|)."""
    return any((metrics.get(f"{kind}_src") or 0) != (metrics.get(f"{kind}_dst") or 0) for kind in ("nan", "inf"))


def _outputs_agree(report: Any) -> bool:
    """Every output of the source model is paired and passes (the last row when outputs are not known)."""
    outputs = report.meta.get("outputs") or []
    if outputs:
        return all(out.get("passed") for out in outputs)
    return bool(report.layers) and report.layers[-1].passed


def _pass_within_sensitivity(report: Any, failing: list, layers: dict) -> None:
    for row in failing:
        seen = layers[row.src]
        row.passed = True
        row.note = (f"within the source's own float32 sensitivity: moving the input by {NOISE:g} of its values "
                    f"moves the source's value here by {seen['moved']:.3g}, the destination differs by "
                    f"{seen['differs']:.3g}; the outputs agree")
    report.passed, report.roots, report.first_divergence = True, [], None


def _moved(inputs: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The float inputs with every value moved by NOISE of itself (random sign and size); the others as they are."""
    return {name: (a * (1 + NOISE * rng.standard_normal(a.shape))).astype(a.dtype) if a.dtype.kind == "f" else a
            for name, a in inputs.items()}


def _sentence(at_root: dict) -> str:
    return (f"unstable model: moving the input by {NOISE:g} of its values (float32 rounding) moves the source's "
            f"own value here by {at_root['moved']:.3g} (the destination differs by {at_root['differs']:.3g}); "
            "differences of this size come from the model's sensitivity on this input, not from the conversion: "
            "validate with other inputs or trained weights")


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
