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


def tolerance(name):
    return {"a": (0.5, 0.0), "b": (1e-4, 1e-3)}.get(name, (1e-6, 1e-6))


def test_a_row_carries_the_pair_its_shapes_transform_and_tolerances():
    x = rng.standard_normal((2, 3, 3, 2))
    src_layers = [L("a", ["conv"], shape=(None, 3, 3, 2), layout="NHWC", op="Conv2D"),
                  L("b", ["relu"], ["a"], shape=(None, 3, 3, 2), layout="NHWC", op="ReLU")]
    dst_layers = [L("a", ["conv"], shape=(None, 2, 3, 3), op="Conv"), L("b", ["relu"], ["a"], op="Relu")]
    d = Differ(src_layers, dst_layers, align(src_layers, dst_layers), tolerance)
    d.add({"a": x, "b": x}, {"a": x.transpose(0, 3, 1, 2) + 0.4, "b": x.transpose(0, 3, 1, 2)})
    rows, roots = d.finish()
    got = [(r.index, r.src, r.dst, r.match, r.src_op, r.dst_op, r.src_shape, r.dst_shape, r.transform, r.atol, r.rtol,
            r.passed) for r in rows]
    assert got == [(0, "a", "a", "name", "Conv2D", "Conv", (2, 3, 3, 2), (2, 2, 3, 3), "NCHW->NHWC", 0.5, 0.0, True),
                   (1, "b", "b", "name", "ReLU", "Relu", (2, 3, 3, 2), (2, 2, 3, 3), "NCHW->NHWC", 1e-4, 1e-3, True)]
    assert roots == []
    # a partner the destination's LayerInfo list lacks has no op; a pair with a shape error no transform
    d = Differ(src_layers, dst_layers[:1], Alignment([Pair("a", "a", "name"), Pair("b", "ghost", "layer_map")]),
               tolerance)
    d.add({"a": x, "b": x}, {"a": x.transpose(0, 3, 1, 2), "ghost": x[..., :1]})
    rows, _ = d.finish()
    assert [(r.dst_op, r.transform, r.passed) for r in rows] == [("Conv", "NCHW->NHWC", True), (None, None, False)]


def test_two_layouts_of_a_sequence_pick_the_closest():
    x = rng.standard_normal((2, 3, 3))  # NWC vs NCW with C == W: two candidates
    layers = [L("s", ["conv1d"], shape=(None, 3, 3), layout="NWC")]
    d = differ(layers, layers)
    d.add({"s": x}, {"s": x.transpose(0, 2, 1)})
    [row], _ = d.finish()
    assert (row.transform, row.passed) == ("NCW->NWC", True)


def test_later_chunks_keep_the_transform_and_the_metrics_of_the_first():
    x = rng.standard_normal((2, 4, 4, 4))
    layers = [L("a", ["conv"], shape=(None, 4, 4, 4), layout="NHWC")]
    d = differ(layers, layers)
    d.add({"a": x}, {"a": x.transpose(0, 3, 1, 2) + 1})  # the first chunk differs
    d.add({"a": x}, {"a": x.transpose(0, 3, 1, 2)})      # the second agrees
    [row], roots = d.finish()
    assert (row.transform, row.passed, row.metrics["size"], row.metrics["mismatched"]) == ("NCHW->NHWC", False, 256, 128)
    assert [r.src for r in roots] == ["a"]


def test_passing_layers_do_not_use_up_the_roots_kept_for_diagnosis():
    a, w = rng.standard_normal((3, 6)), rng.standard_normal((6, 6))
    layers = [L("a", ["dense"]), L("b", ["dense"], ["a"])]
    d = differ(layers, layers, max_roots=1)
    d.add({"a": a, "b": a @ w}, {"a": a, "b": rng.standard_normal((3, 6))})
    _, roots = d.finish()
    assert [r.src for r in roots] == ["b"] and roots[0].cause.startswith("weights")


def test_isolation_skips_what_the_isolated_run_lacks_and_keeps_only_failures():
    a, w = rng.standard_normal((3, 6)), rng.standard_normal((6, 6))
    layers = [L("a", ["dense"]), L("b", ["dense"], ["a"]), L("c", ["dense"], ["b"])]
    src = {"a": a, "b": a @ w, "c": a @ w @ w}
    d = Differ(layers, layers, align(layers, layers), tolerance, max_roots=1)
    d.add(src, src)
    d.add_isolated(src, {"b": src["b"], "c": rng.standard_normal((3, 6))})  # no "a" in the isolated run
    rows, roots = d.finish()
    assert [(r.src, r.isolated_passed) for r in rows] == [("a", None), ("b", True), ("c", False)]
    assert rows[0].isolated is None and rows[2].isolated["mismatched"] == 18
    assert [r.src for r in roots] == ["c"] and roots[0].cause.startswith("weights")
    # the isolated pass rule is each layer's own tolerance
    d = Differ(layers, layers, align(layers, layers), tolerance)
    d.add(src, src)
    d.add_isolated(src, {"a": a + 0.4, "b": src["b"] + 0.4, "c": src["c"]})
    rows, _ = d.finish()
    assert [r.isolated_passed for r in rows] == [True, False, True]


def test_feeds_leave_out_pairs_whose_shapes_cannot_agree_and_undo_a_flatten_order():
    nchw = rng.standard_normal((2, 4, 2, 3))
    src_layers = [L("f", ["flatten"], shape=(None, 24)), L("bad", ["dense"], shape=(None, 5))]
    dst_layers = [L("p", ["conv"], shape=(None, 4, 2, 3)), L("f", ["flatten"], ["p"], shape=(None, 24)),
                  L("bad", ["dense"], shape=(None, 7))]
    src = {"f": nchw.transpose(0, 2, 3, 1).reshape(2, 24), "bad": rng.standard_normal((2, 5))}
    d = differ(src_layers, dst_layers)
    d.add(src, {"p": nchw, "f": nchw.reshape(2, 24), "bad": rng.standard_normal((2, 7))})
    feeds = d.feeds(src)
    assert list(feeds) == ["f"] and np.array_equal(feeds["f"], nchw.reshape(2, 24))


def test_the_producer_shape_comes_from_the_tensor_before_the_layer_info():
    nchw = rng.standard_normal((2, 4, 2, 3))
    src_layers = [L("f", ["flatten"], shape=(None, 24))]
    for dst_layers in ([L("p", ["conv"], shape=(None, None, 2, 3)), L("f", ["flatten"], ["p"], shape=(None, 24))],
                       [L("f", ["flatten"], ["p"], shape=(None, 24))]):  # a producer the list lacks
        d = differ(src_layers, dst_layers)
        d.add({"f": nchw.transpose(0, 2, 3, 1).reshape(2, 24)}, {"f": nchw.reshape(2, 24), "p": nchw})
        [row], _ = d.finish()
        assert (row.transform, row.passed) == ("flatten:NCHW->NHWC", True)
    d = differ(src_layers, [L("f", ["flatten"], ["p"], shape=(None, 24))])
    d.add({"f": nchw.transpose(0, 2, 3, 1).reshape(2, 24)}, {"f": nchw.reshape(2, 24)})
    [row], _ = d.finish()
    assert row.transform is None and not row.passed


def test_a_dense_after_a_flatten_read_in_another_order_is_a_flatten_order_cause():
    nchw = rng.standard_normal((2, 4, 2, 3))
    w = rng.standard_normal((24, 5))
    src_flat, dst_flat = nchw.transpose(0, 2, 3, 1).reshape(2, 24), nchw.reshape(2, 24)
    src_layers = [L("f", ["flatten"], shape=(None, 24)), L("d", ["dense"], ["f"], shape=(None, 5), op="Dense")]
    dst_layers = [L("p", ["conv"], shape=(None, 4, 2, 3)), L("f", ["flatten"], ["p"], shape=(None, 24)),
                  L("d", ["dense"], ["f"], shape=(None, 5), op="Gemm")]
    d = differ(src_layers, dst_layers)
    d.add({"f": src_flat, "d": src_flat @ w}, {"p": nchw, "f": dst_flat, "d": dst_flat @ w})  # weights not permuted
    _, roots = d.finish()
    assert [r.src for r in roots] == ["d"] and roots[0].cause.startswith(
        "flatten order: the input of Dense 'd' agrees only after reordering the Flatten (NCHW->NHWC)")


def test_a_shape_error_reads_the_kernel_of_the_destination_layer():
    x = rng.standard_normal((2, 8, 8, 4))
    src_layers = [L("c", ["conv"], shape=(None, 8, 8, 4), layout="NHWC", op="Conv2D")]
    dst_layers = [LayerInfo(name="c", op="Conv", shape=(None, 4, 6, 6), kinds=["conv"], attrs={"kernel": [3, 3]})]
    d = differ(src_layers, dst_layers)
    d.add({"c": x}, {"c": rng.standard_normal((2, 4, 6, 6))})
    _, [root] = d.finish()
    assert "the border of its 3x3 kernel" in root.cause


def test_a_difference_every_reader_contradicts_is_named_with_its_readers():
    a = rng.standard_normal((3, 6))
    layers = [L("a", ["dense"])] + [L(f"r{i}", ["dense"], ["a"]) for i in range(4)] + [L("z", ["dense"])]
    src = {n.name: a for n in layers}
    d = differ(layers, layers)
    d.add(src, dict(src, a=a + 1, z=a + 2))  # a's readers all agree; z, read by nothing, differs
    rows, roots = d.finish()
    assert [r.src for r in rows] == ["r0", "r1", "r2", "r3", "z"] and [r.src for r in roots] == ["z"]
    assert d.alignment.reasons["a"] == (
        "its partner 'a' differs (max_abs 1), but every layer that reads it agrees (r0, r1, r2): the destination "
        "computes this value another way (re-associated or folded into its readers), so it is not compared")
    shapes = [L("a", ["dense"], shape=(None, 6)), L("r", ["dense"], ["a"])]
    d = differ(shapes, shapes)
    d.add({"a": a, "r": a}, {"a": a[:, :5], "r": a})
    rows, _ = d.finish()
    assert [r.src for r in rows] == ["r"] and d.alignment.reasons["a"].startswith(
        "its partner 'a' differs (shapes cannot agree: source (3, 6), destination (3, 5)), but every layer")
