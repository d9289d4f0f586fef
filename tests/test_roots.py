"""Roots of divergence on synthetic graphs, through the Differ: one root per spoiled path, one per
independent branch, and no verdict from a difference every reader contradicts."""
import numpy as np

from xvalidate.core.align import align
from xvalidate.core.diff import Differ
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(5)


def L(name, kinds, inputs=()):
    return LayerInfo(name=name, op="Op", shape=(None, 6), layout="NC", kinds=list(kinds), inputs=list(inputs))


GRAPH = [L("a", ["dense"]), L("b", ["dense"], ["a"]), L("c", ["dense"], ["b"]),
         L("d", ["dense"], ["a"]), L("join", ["add"], ["c", "d"]), L("out", ["dense"], ["join"])]


def run(values, dst_values):
    differ = Differ(GRAPH, GRAPH, align(GRAPH, GRAPH), lambda name: (1e-4, 1e-3))
    differ.add(values, dst_values)
    return differ.finish(), differ


def values():
    return {info.name: rng.standard_normal((3, 6)) for info in GRAPH}


def test_one_fault_is_one_root_however_far_it_spoils():
    src = values()
    dst = dict(src, b=src["b"] * 2, c=src["c"] + 1, join=src["join"] + 1, out=src["out"] + 1)
    (rows, roots), _ = run(src, dst)
    assert [r.src for r in roots] == ["b"] and sum(not r.passed for r in rows) == 4
    assert roots[0].cause.startswith("per-channel scale") or roots[0].cause.startswith("weights")


def test_faults_on_two_branches_are_two_roots():
    src = values()
    dst = dict(src, c=src["c"] + 3, d=-src["d"], join=src["join"] + 5, out=src["out"] + 5)
    (_, roots), _ = run(src, dst)
    assert [r.src for r in roots] == ["c", "d"]


def test_a_difference_every_reader_contradicts_is_not_a_verdict():
    src = values()
    dst = dict(src, b=src["b"] + 1)  # b's partner differs, yet c (which reads b) agrees
    (rows, roots), differ = run(src, dst)
    assert roots == [] and "b" not in {r.src for r in rows}
    assert "every layer that reads it agrees" in differ.alignment.reasons["b"]


def test_a_final_output_that_differs_is_always_a_root():
    src = values()
    (rows, roots), _ = run(src, dict(src, out=src["out"] * 3))
    assert [r.src for r in roots] == ["out"]
