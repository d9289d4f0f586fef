"""The stability probe: a failing root that the source's own float32 sensitivity explains says so; a real
difference does not get the note; nothing runs for a passing report or integer-only inputs."""
import numpy as np

from xvalidate.core.report import LayerResult, Report
from xvalidate.stability import DRAWS, NOISE, probe

X = np.random.default_rng(0).uniform(0.5, 1.5, (3, 8)).astype(np.float32)


class Source:
    """A worker stand-in: `layer` = f(x), `out` = its sum; records the inputs it ran."""

    def __init__(self, f):
        self.f, self.ran = f, []

    def run(self, path, x, layers=None):
        self.ran.append(np.array(x))
        value = self.f(np.asarray(x, np.float64))
        return {"layer": value, "out": value.sum(axis=1, keepdims=True)}


def failing_report(differs: float) -> Report:
    root = LayerResult(index=0, src="layer", dst="d0", match="name", passed=False, cause="numerical: small",
                       metrics={"max_abs": differs})
    out = LayerResult(index=1, src="out", dst="d1", match="name", passed=False, metrics={"max_abs": differs})
    return Report(src="toy", dst="toy", src_model="m", dst_model="m", layers=[root, out], passed=False,
                  first_divergence=root, roots=[root])


def test_a_root_the_sources_own_sensitivity_explains_says_so():
    chaotic = Source(lambda x: np.sin(1e9 * x))         # float32 rounding of x moves it by O(1)
    report = failing_report(0.5)
    found = probe(report, chaotic, "m", {"x": X})
    assert found["noise"] == NOISE and found["layers"]["layer"]["moved"] > 0.05
    cause = report.roots[0].cause
    assert cause.startswith("unstable model: moving the input by 1e-07 of its values")
    assert cause.index("; the conversion checks read: numerical: small") > 0  # what the checks said, after
    assert len(chaotic.ran) == 1 + DRAWS and chaotic.ran[0].shape == (1, 8)  # the first sample, plain and moved
    assert not np.array_equal(chaotic.ran[0], chaotic.ran[1])
    assert not report.passed


def test_a_real_difference_gets_no_note():
    stable = Source(lambda x: 2.0 * x)
    report = failing_report(0.5)
    found = probe(report, stable, "m", {"x": X})
    assert found["layers"]["layer"]["moved"] < 1e-5
    assert report.roots[0].cause == "numerical: small"


def test_nothing_runs_for_a_pass_or_integer_inputs():
    source = Source(lambda x: x)
    passing = failing_report(0.5)
    passing.passed = True
    assert probe(passing, source, "m", {"x": X}) is None
    assert probe(failing_report(0.5), source, "m", {"ids": np.arange(8)[None].repeat(3, 0)}) is None
    assert source.ran == []


def agreeing_outputs_report(differs: float) -> Report:
    """The inner layer fails, the model's output agrees."""
    report = failing_report(differs)
    report.layers[1].passed = True
    report.meta["outputs"] = [{"src": "out", "dst": "d1", "passed": True, "max_abs": 0.0}]
    return report


def test_outputs_agreeing_and_every_difference_explained_pass_with_a_note():
    report = agreeing_outputs_report(0.5)
    found = probe(report, Source(lambda x: np.sin(1e9 * x)), "m", {"x": X})
    assert report.passed and report.roots == [] and report.first_divergence is None
    assert report.layers[0].passed and report.layers[0].note.startswith("within the source's own float32 sensitivity")
    assert found["verdict"].startswith("every difference within")


def test_a_difference_the_source_does_not_show_keeps_the_failure_even_when_outputs_agree():
    report = agreeing_outputs_report(0.5)
    found = probe(report, Source(lambda x: 2.0 * x), "m", {"x": X})
    assert not report.passed and [r.src for r in report.roots] == ["layer"] and "verdict" not in found
    assert not report.layers[0].passed and report.layers[0].note is None


def test_nan_or_inf_on_one_side_is_never_explained_by_sensitivity():
    """max|diff| counts finite values only: a destination that turns values into NaN can show a tiny
    max|diff| that the source's own movement matches; the NaN counts decide."""
    chaotic = Source(lambda x: np.sin(1e9 * x))
    for extra in ({"nan_src": 0, "nan_dst": 12}, {"inf_src": 1, "inf_dst": 0}):
        report = failing_report(1e-9)
        report.roots[0].metrics.update(extra)
        found = probe(report, chaotic, "m", {"x": X})
        assert report.roots[0].cause == "numerical: small" and "layer" not in found["layers"]
        assert not report.passed and report.roots
    report = failing_report(1e-9)
    report.roots[0].metrics.update(nan_src=3, nan_dst=3)  # the same NaNs on both sides: judged as usual
    probe(report, chaotic, "m", {"x": X})
    assert report.roots[0].cause.startswith("unstable model")
