"""Where a root's blame goes (core/roots.upstream_blame), on synthetic graphs through the Differ: a
refused candidate above with a padding-like shape, an activation the destination lacks above the
root or in the root itself, an extra activation or transpose the destination puts on the root's
input; each with a near miss where the blame stays on the root. Also the graph walks the blame
relies on (tensors_above, is_root) and the limit on roots kept for diagnosis."""
import numpy as np

from xvalidate.core.align import Alignment, Pair, align
from xvalidate.core.diff import Differ
from xvalidate.core.pairing import Upstream
from xvalidate.core.report import METRIC_NAMES
from xvalidate.core.roots import is_root, tensors_above
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(11)
TOL = (1e-4, 1e-3)


def L(name, kinds, inputs=(), shape=(None, 6), layout="NC", op="Op", attrs=None):
    return LayerInfo(name=name, op=op, shape=shape, layout=layout, kinds=list(kinds), inputs=list(inputs),
                     attrs=attrs or {})


def run(src_layers, dst_layers, src, dst, alignment=None, **kwargs):
    differ = Differ(src_layers, dst_layers, alignment or align(src_layers, dst_layers), lambda name: TOL, **kwargs)
    differ.add(src, dst)
    rows, roots = differ.finish()
    return rows, roots


def assert_unpaired_root(root, name, index, op, cause_start, note, dst=None, shapes=(None, None)):
    assert (root.src, root.index, root.src_op, root.dst) == (name, index, op, dst)
    assert root.match == ("structural" if dst else "none")
    assert (root.src_shape, root.dst_shape) == shapes
    assert root.passed is False and root.note == note
    assert root.metrics == {m: None for m in METRIC_NAMES}
    assert root.cause.startswith(cause_start), root.cause


def test_an_activation_the_destination_lacks_above_a_root_is_the_root():
    a, w = rng.standard_normal((4, 6)), rng.standard_normal((6, 6))
    src_layers = [L("a", ["dense"]), L("act", ["relu"], ["a"], op="ReLU"), L("b", ["dense"], ["act"])]
    dst_layers = [L("a", ["dense"]), L("b", ["dense"], ["a"])]
    src = {"a": a, "act": np.maximum(a, 0), "b": np.maximum(a, 0) @ w}
    rows, roots = run(src_layers, dst_layers, src, {"a": a, "b": a @ w})
    assert [r.src for r in rows if not r.passed] == ["b"]
    [root] = roots
    assert_unpaired_root(root, "act", 1, "ReLU", "activation: the destination lacks ReLU 'act': 'b' receives the "
                         "value before its relu; add the relu", "no destination partner; 'b' receives its input "
                         "without it")
    # near miss: the destination has the activation, and b is wrong itself: the blame stays on b
    dst_layers = [L("a", ["dense"]), L("act", ["relu"], ["a"]), L("b", ["dense"], ["act"])]
    dst = {"a": a, "act": np.maximum(a, 0), "b": np.maximum(a, 0) @ (w * 1.5)}
    _, roots = run(src_layers, dst_layers, src, dst)
    assert [r.src for r in roots] == ["b"] and not roots[0].cause.startswith("activation")


def test_a_root_whose_partner_is_the_value_before_its_activation_lacks_that_activation():
    a, w = rng.standard_normal((4, 6)), rng.standard_normal((6, 6))
    pre = a @ w
    src_layers = [L("a", ["dense"]), L("r", ["dense", "relu"], ["a"], op="Dense"), L("o", ["dense"], ["r"])]
    dst_layers = [L("a", ["dense"]), L("mm", ["dense"], ["a"]), L("r", ["identity"], ["mm"]),
                  L("o", ["dense"], ["r"])]
    src = {"a": a, "r": np.maximum(pre, 0), "o": np.maximum(pre, 0) @ w}
    rows, roots = run(src_layers, dst_layers, src, {"a": a, "mm": pre, "r": pre, "o": pre @ w})
    [root] = roots
    assert (root.src, root.dst, root.match, root.index) == ("r", "r", "name", 1)
    assert root.cause == ("activation: the destination lacks the relu of Dense 'r': tensor 'mm', above its partner "
                          "'r', holds the value before it; add the relu")
    # near miss: the tensor above holds something else: not an activation lacking
    _, roots = run(src_layers, dst_layers, src, {"a": a, "mm": -pre, "r": -pre, "o": -pre @ w})
    assert [r.src for r in roots] == ["r"] and "tensor 'mm'" not in roots[0].cause
    # near miss: the partner is the relu of the tensor above (the destination applies it); both differ from
    # the source by rounding-sized noise beyond the tolerance: nothing lacks
    off = pre + 1e-3 * np.random.default_rng(5).standard_normal(pre.shape)
    _, roots = run(src_layers, dst_layers, src, {"a": a, "mm": off, "r": np.maximum(off, 0),
                                                 "o": np.maximum(off, 0) @ w})
    assert [r.src for r in roots] == ["r"] and "lacks" not in roots[0].cause, roots[0].cause


def test_an_extra_activation_between_a_producer_and_the_root_is_named_on_the_root():
    a, w = rng.standard_normal((4, 6)), rng.standard_normal((6, 6))
    src_layers = [L("a", ["dense"], op="Dense"), L("b", ["dense"], ["a"], op="Dense")]
    dst_layers = [L("a", ["dense"]), L("extra", ["relu"], ["a"]), L("b", ["dense"], ["extra"])]
    rows, roots = run(src_layers, dst_layers, {"a": a, "b": a @ w},
                      {"a": a, "extra": np.maximum(a, 0), "b": np.maximum(a, 0) @ w})
    [root] = roots
    assert (root.src, root.dst, root.match) == ("b", "b", "name")
    assert root.cause == ("activation: the destination applies an extra relu to the output of Dense 'a' before "
                          "Dense 'b' (tensor 'extra' equals relu of the source value): remove it")
    # near miss: the tensor between is the producer's value unchanged: b's own computation is to blame
    _, roots = run(src_layers, dst_layers, {"a": a, "b": a @ w}, {"a": a, "extra": a, "b": a @ (w + 1)})
    assert [r.src for r in roots] == ["b"] and "extra" not in roots[0].cause


def test_a_transpose_between_a_producer_and_the_root_is_named_on_the_root():
    a = rng.standard_normal((2, 4, 5, 3))
    shape = (None, 4, 5, 3)
    src_layers = [L("a", ["conv"], shape=shape, layout="NHWC", op="Conv2D"),
                  L("b", ["mul"], ["a"], shape=shape, layout="NHWC", op="Multiply")]
    dst_layers = [L("a", ["conv"], shape=shape), L("t", ["identity"], ["a"], shape=shape),
                  L("b", ["mul"], ["t"], shape=shape)]
    moved = a.transpose(0, 3, 1, 2).reshape(a.shape)
    _, roots = run(src_layers, dst_layers, {"a": a, "b": a * 2}, {"a": a, "t": moved, "b": moved * 2})
    [root] = roots
    assert root.src == "b" and root.cause == (
        "layout: the destination feeds Multiply 'b' with the output of Conv2D 'a' in another axis order (tensor "
        "'t'): remove or fix that transpose")
    # an activation between the producers (unpaired on the source side) keeps the edge checks out
    src_layers = [src_layers[0], L("act", ["relu"], ["a"], shape=shape, layout="NHWC"),
                  L("b", ["mul"], ["act"], shape=shape, layout="NHWC", op="Multiply")]
    _, roots = run(src_layers, dst_layers, {"a": a, "act": a, "b": a * 2}, {"a": a, "t": moved, "b": moved * 2})
    assert [r.src for r in roots] == ["b"] and "tensor 't'" not in roots[0].cause


def test_a_refused_candidate_above_with_a_padding_shape_is_the_root():
    a = rng.standard_normal((2, 8, 8, 4))
    src_layers = [L("a", ["conv"], shape=(None, 8, 8, 4), layout="NHWC"),
                  L("p", ["conv"], ["a"], shape=(None, 8, 8, 4), layout="NHWC", op="Conv2D", attrs={"kernel": (3, 3)}),
                  L("b", ["conv"], ["p"], shape=(None, 8, 8, 4), layout="NHWC")]
    dst_layers = [L("a", ["conv"], shape=(None, 8, 8, 4)), L("q", ["conv"], ["a"], shape=(None, 6, 6, 4)),
                  L("b", ["conv"], ["q"], shape=(None, 6, 6, 4))]
    alignment = Alignment([Pair("a", "a", "name"), Pair("p", None, "none"), Pair("b", "b", "name")], [],
                          {"p": "its partner was refused"}, {"p": "q"})
    src = {"a": a, "p": a * 2, "b": a * 3}
    dst = {"a": a, "q": (a * 2)[:, 1:-1, 1:-1], "b": (a * 3)[:, 1:-1, 1:-1]}
    rows, roots = run(src_layers, dst_layers, src, dst, alignment)
    assert [(r.src, r.passed, r.note) for r in rows if r.src == "b"] == [
        ("b", False, "shapes cannot agree: source (2, 8, 8, 4), destination (2, 6, 6, 4)")]
    [root] = roots
    assert_unpaired_root(root, "p", 1, "Conv2D", "padding: the destination output of Conv2D 'p' (kernel 3x3) is 6x6 "
                         "where the source's is 8x8, 2x2 smaller, the border of its 3x3 kernel", "its partner was "
                         "refused", dst="q", shapes=((2, 8, 8, 4), (2, 6, 6, 4)))
    # near miss: the refused candidate's shape is no finding (another channel count): the root stays b
    dst_q = dict(dst, q=rng.standard_normal((2, 6, 6, 5)))
    _, roots = run(src_layers, dst_layers, src, dst_q, alignment)
    assert [r.src for r in roots] == ["b"]


def test_tensors_above_walks_nearest_first_up_to_the_partners_and_the_depth():
    chain = [L("x", ["input"])] + [L(f"t{i}", ["op"], [f"t{i - 1}" if i else "x"]) for i in range(6)]
    info = {i.name: i for i in chain}
    assert tensors_above("t5", info, set()) == ["t4", "t3", "t2", "t1"]
    assert tensors_above("t5", info, set(), depth=2) == ["t4", "t3"]
    assert tensors_above("t5", info, {"t3"}) == ["t4", "t3"]
    join = {**info, "j": L("j", ["add"], ["t1", "t0"]), "k": L("k", ["add"], ["j", "j"])}
    assert tensors_above("k", join, set()) == ["j", "t1", "t0", "x"]
    assert tensors_above("unknown", join, set()) == []


def test_is_root_needs_a_failing_layer_whose_paired_producers_pass():
    ups = {"b": Upstream(producers=["a"], path=["p"]), "a": Upstream()}
    assert is_root("b", {"b"}, ups) and is_root("b", {"b", "p"}, ups)
    assert not is_root("b", {"a", "b"}, ups) and not is_root("b", set(), ups) and is_root("a", {"a", "b"}, ups)


def test_roots_past_the_limit_are_named_not_diagnosed():
    names = [f"l{i}" for i in range(4)]
    layers = [L(n, ["dense"]) for n in names]  # four independent layers: four roots
    src = {n: rng.standard_normal((3, 6)) for n in names}
    rows, roots = run(layers, layers, src, {n: v + 1 for n, v in src.items()}, max_roots=2)
    assert [r.src for r in roots] == names
    assert [r.cause == "not diagnosed: more roots than the diagnosis keeps tensors for" for r in roots] == [
        False, False, True, True]


def test_the_tensors_above_are_read_in_the_source_layout_whichever_transforms_fit():
    # C == H == W: identity and both transposes fit; only NCHW->NHWC gives the value before the relu
    a, pre = rng.standard_normal((2, 4, 4, 4)), rng.standard_normal((2, 4, 4, 4))
    shape = (None, 4, 4, 4)
    src_layers = [L("a", ["conv"], shape=shape, layout="NHWC"),
                  L("r", ["conv", "relu"], ["a"], shape=shape, layout="NHWC", op="Conv2D")]
    dst_layers = [L("a", ["conv"], shape=shape), L("z", ["other"], shape=(None, 5)), L("mm", ["conv"], ["a"], shape=shape),
                  L("r", ["identity"], ["z", "mm"], shape=shape)]
    nchw = lambda x: x.transpose(0, 3, 1, 2)  # noqa: E731
    src = {"a": a, "r": np.maximum(pre, 0)}
    dst = {"a": nchw(a), "z": rng.standard_normal((2, 5)), "mm": nchw(pre), "r": nchw(pre)}
    _, roots = run(src_layers, dst_layers, src, dst)
    assert [r.src for r in roots] == ["r"]
    assert roots[0].cause.startswith("activation: the destination lacks the relu of Conv2D 'r': tensor 'mm'")


def test_a_root_without_an_activation_of_its_own_is_not_blamed_for_lacking_one():
    a, m = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    src_layers = [L("a", ["dense"]), L("b", ["dense"], ["a"], op="Dense")]
    dst_layers = [L("a", ["dense"]), L("m", ["dense"], ["a"]), L("b", ["identity"], ["m"])]
    _, roots = run(src_layers, dst_layers, {"a": a, "b": np.maximum(m, 0)}, {"a": a, "m": m, "b": m})
    assert [r.src for r in roots] == ["b"] and "tensor 'm'" not in roots[0].cause
    assert roots[0].cause.startswith("activation: the destination lacks the relu that Dense 'b' applies")


def test_unpaired_layers_that_are_no_activation_are_looked_past():
    a, w = rng.standard_normal((4, 6)), rng.standard_normal((6, 6))
    src_layers = [L("a", ["dense"]), L("act", ["relu"], ["a"], op="ReLU"), L("shift", ["add"], ["act"]),
                  L("b", ["dense"], ["shift"])]
    dst_layers = [L("a", ["dense"]), L("b", ["dense"], ["a"])]
    src = {"a": a, "act": np.maximum(a, 0), "shift": np.maximum(a, 0) + 1, "b": (np.maximum(a, 0) + 1) @ w}
    _, roots = run(src_layers, dst_layers, src, {"a": a, "b": a @ w})
    assert [(r.src, r.dst) for r in roots] == [("act", None)] and "lacks ReLU 'act'" in roots[0].cause


def test_the_edge_checks_look_past_the_partner_of_the_producer():
    a, w = rng.standard_normal((4, 6)), rng.standard_normal((6, 6))
    src_layers = [L("a", ["dense"], op="Dense"), L("b", ["dense"], ["a"], op="Dense")]
    dst_layers = [L("a", ["dense"]), L("extra", ["relu"], ["a"]), L("b", ["add"], ["a", "extra"])]
    _, roots = run(src_layers, dst_layers, {"a": a, "b": a @ w},
                   {"a": a, "extra": np.maximum(a, 0), "b": np.maximum(a, 0) @ w})
    assert [r.src for r in roots] == ["b"] and "an extra relu" in roots[0].cause and "tensor 'extra'" in roots[0].cause
