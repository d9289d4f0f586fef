"""The diff engine (core/diff.Differ) on synthetic tensors: the layout transform it picks when the
shapes allow several, the Flatten order read from the destination producer's shape, a pair whose
shapes cannot agree next to pairs that can, isolation (feeds, isolated metrics, roots by isolated
error), what reaches the diagnosis (kernels, LSTM weights, the folded Conv) and the default limit
on roots kept for diagnosis."""
import numpy as np

from xvalidate.core.align import Alignment, Pair, align
from xvalidate.core.causes.lstm_gates import lstm_forward
from xvalidate.core.diff import Differ
from xvalidate_adapters.base import LayerInfo

rng = np.random.default_rng(23)
TOL = (1e-4, 1e-3)


def L(name, kinds, inputs=(), shape=(None, 6), layout="NC", op="Op"):
    return LayerInfo(name=name, op=op, shape=shape, layout=layout, kinds=list(kinds), inputs=list(inputs))


def differ(src_layers, dst_layers, alignment=None, **kwargs):
    return Differ(src_layers, dst_layers, alignment or align(src_layers, dst_layers), lambda name: TOL, **kwargs)


def test_of_several_transforms_the_closest_is_kept():
    x = rng.standard_normal((2, 4, 4, 4))  # C == H == W: identity and both transposes fit the shapes
    layers = [L("a", ["conv"], shape=(None, 4, 4, 4), layout="NHWC")]
    for dst, transform in ((x.transpose(0, 3, 1, 2), "NCHW->NHWC"), (x.transpose(0, 2, 3, 1), "NHWC->NCHW"),
                           (x, None)):
        d = differ(layers, layers)
        d.add({"a": x}, {"a": dst})
        [row], roots = d.finish()
        assert (row.transform, row.passed, roots) == (transform, True, [])


def test_a_flatten_order_is_read_from_the_destination_producer_shape():
    nchw = rng.standard_normal((2, 4, 2, 3))
    src_flat, dst_flat = nchw.transpose(0, 2, 3, 1).reshape(2, 24), nchw.reshape(2, 24)
    src_layers = [L("f", ["flatten"], shape=(None, 24))]
    dst_layers = [L("p", ["conv"], shape=(None, 4, 2, 3)), L("f", ["flatten"], ["p"], shape=(None, 24))]
    for dst_out in ({"f": dst_flat, "p": nchw}, {"f": dst_flat}):  # the producer's tensor, else its LayerInfo shape
        d = differ(src_layers, dst_layers)
        d.add({"f": src_flat}, dst_out)
        [row], _ = d.finish()
        assert (row.transform, row.passed) == ("flatten:NCHW->NHWC", True)
    unknown = [dst_layers[0].__class__("p", "Op", (None, None, 2, 3)), dst_layers[1]]
    d = differ(src_layers, unknown)
    d.add({"f": src_flat}, {"f": dst_flat})
    [row], _ = d.finish()
    assert (row.transform, row.passed) == (None, False)


def test_a_pair_whose_shapes_cannot_agree_fails_alone():
    a, b = rng.standard_normal((2, 5)), rng.standard_normal((2, 6))
    layers = [L("a", ["dense"], shape=(None, 5)), L("b", ["dense"], shape=(None, 6))]
    d = differ(layers, layers)
    d.add({"a": a, "b": b}, {"a": rng.standard_normal((2, 7)), "b": b})
    rows, roots = d.finish()
    assert [(r.src, r.passed, r.note) for r in rows] == [
        ("a", False, "shapes cannot agree: source (2, 5), destination (2, 7)"), ("b", True, None)]
    assert all(v is None for v in rows[0].metrics.values()) and rows[1].metrics["max_abs"] == 0.0
    assert [r.src for r in roots] == ["a"] and roots[0].cause.startswith("shape")


def test_isolation_feeds_the_source_values_and_finds_roots_by_isolated_error():
    shape = (None, 3, 3, 2)
    src_layers = [L("a", ["conv"], shape=shape, layout="NHWC"), L("b", ["conv"], ["a"], shape=shape, layout="NHWC"),
                  L("c", ["conv"], ["b"], shape=shape, layout="NHWC")]
    src = {n: rng.standard_normal((2, 3, 3, 2)) for n in "abc"}
    nchw = {n: v.transpose(0, 3, 1, 2) for n, v in src.items()}
    dst = {"a": nchw["a"] + 1, "b": nchw["b"] + 1, "c": nchw["c"] + 1}  # a spoils everything after it
    iso = {"a": nchw["a"] + 1, "b": rng.standard_normal((2, 2, 3, 3)), "c": nchw["c"]}  # c agrees on source inputs
    dst_layers = [L(n, ["conv"], [p] if p else [], shape=(None, 2, 3, 3)) for n, p in (("a", None), ("b", "a"),
                                                                                     ("c", "b"))]
    d = differ(src_layers, dst_layers)
    d.add(src, dst)
    feeds = d.feeds(src)
    assert sorted(feeds) == ["a", "b", "c"] and all(np.array_equal(feeds[n], nchw[n]) for n in "abc")
    d.add_isolated(src, iso)
    rows, roots = d.finish()
    assert [(r.src, r.passed, r.isolated_passed) for r in rows] == [
        ("a", False, False), ("b", False, False), ("c", False, True)]
    assert rows[2].isolated["max_abs"] == 0.0 and rows[1].isolated["mismatched"] > 0
    assert [r.src for r in roots] == ["a", "b"]
    # b's inputs come from the source in the isolated run: they agree, so its weights are to blame
    assert roots[1].cause.startswith("weights: the inputs of Op 'b' agree")


def test_the_diagnosis_gets_the_kernels_of_the_pair():
    x = rng.standard_normal((2, 5, 5, 4))
    kernel = rng.standard_normal((4, 3, 3, 3))
    layers = [L("a", ["conv"], shape=(None, 5, 5, 4), layout="NHWC"),
              L("b", ["conv"], ["a"], shape=(None, 5, 5, 4), layout="NHWC", op="Conv2D")]
    asked = []

    def parameters(src, dst):
        asked.append((src, dst))
        return {"kernels": (kernel, kernel.transpose(0, 1, 3, 2))}

    d = differ(layers, layers, parameters=parameters)
    d.add({"a": x, "b": x}, {"a": x, "b": x + rng.standard_normal(x.shape)})
    _, roots = d.finish()
    assert asked == [("b", "b")] and roots[0].cause.startswith("kernel transposed")


def test_the_diagnosis_gets_the_lstm_input_and_weights():
    x, h = rng.standard_normal((2, 5, 3)), 4
    w, r, b = rng.standard_normal((4 * h, 3)), rng.standard_normal((4 * h, h)), rng.standard_normal(8 * h)
    src_layers = [L("x", ["input"], shape=(None, 5, 3), layout="NTC"),
                  L("lstm", ["lstm"], ["x"], shape=(None, 5, h), layout="NTC", op="LSTM")]
    src = {"x": x, "lstm": lstm_forward(x, w, r, b, "ifco")[0]}
    dst = {"x": x, "lstm": lstm_forward(x, w, r, b, "iofc")[0]}
    d = differ(src_layers, src_layers, parameters=lambda s, t: {"recurrent": (w, r, b)})
    d.add(src, dst)
    _, roots = d.finish()
    assert [r.src for r in roots] == ["lstm"] and roots[0].cause.startswith("LSTM gate order")
    d = differ(src_layers, src_layers, parameters=lambda s, t: {})  # no weights: no gate order
    d.add(src, dst)
    _, roots = d.finish()
    assert not roots[0].cause.startswith("LSTM gate order")


def test_the_diagnosis_of_a_fused_pair_names_the_folded_conv():
    x = rng.standard_normal((2, 4, 4, 3))
    src_layers = [L("conv", ["conv"], shape=(None, 4, 4, 3), layout="NHWC", op="Conv2D"),
                  L("bn", ["bn"], ["conv"], shape=(None, 4, 4, 3), layout="NHWC", op="BatchNormalization")]
    dst_layers = [L("convbn", ["conv"], shape=(None, 4, 4, 3))]
    alignment = Alignment([Pair("conv", None, "none"), Pair("bn", "convbn", "fused")])
    d = differ(src_layers, dst_layers, alignment)
    d.add({"conv": x, "bn": x}, {"convbn": x * np.array([1.0, 2.0, 0.5]) + 0.3})
    _, roots = d.finish()
    assert [r.src for r in roots] == ["bn"] and "Conv2D 'conv' (folded with BatchNormalization 'bn')" in roots[0].cause


def test_up_to_32_roots_are_diagnosed_by_default():
    names = [f"l{i}" for i in range(33)]
    layers = [L(n, ["dense"], shape=(None, 2)) for n in names]
    src = {n: rng.standard_normal((1, 2)) for n in names}
    d = differ(layers, layers)
    d.add(src, {n: v + 1 for n, v in src.items()})
    _, roots = d.finish()
    undiagnosed = [r.src for r in roots if r.cause == "not diagnosed: more roots than the diagnosis keeps tensors for"]
    assert len(roots) == 33 and undiagnosed == ["l32"]
