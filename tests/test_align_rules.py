"""Single alignment rules on small hand-made graphs: a name match followed to the activation the
source layer ends with (and no further than two steps, never onto a claimed tensor), scope paths
and prefixes that carry a source name, skipped destination layers, and shapes deciding a
structural pair between layers of the same kind."""
from xvalidate.core.align import align
from xvalidate_adapters.base import LayerInfo


def L(name, kinds, shape=None, inputs=(), op="op"):
    return LayerInfo(name=name, op=op, shape=shape, kinds=list(kinds), inputs=list(inputs))


def pairs(alignment):
    return {p.src: (p.dst, p.match) for p in alignment.pairs}


def chain(*layers):
    """Destination layers, each reading the one before: (name, kinds) pairs."""
    out, before = [], None
    for name, kinds in layers:
        out.append(L(name, kinds, inputs=[before] if before else []))
        before = name
    return out


def test_a_name_match_follows_its_activation_up_to_two_steps():
    src = [L("conv1", ["conv", "relu"])]
    assert pairs(align(src, chain(("conv1", ["conv"]), ("act", ["relu"]))))["conv1"] == ("act", "name")
    two = chain(("conv1", ["conv"]), ("bn", ["bn"]), ("act", ["add", "mul", "relu"]))
    assert pairs(align(src, two))["conv1"] == ("act", "name")
    three = chain(("conv1", ["conv"]), ("bn", ["bn"]), ("scale", ["mul"]), ("act", ["relu"]))
    assert pairs(align(src, three))["conv1"] == ("conv1", "name")
    other = chain(("conv1", ["conv"]), ("bn", ["bn"]), ("act", ["sigmoid"]))  # another activation: stay
    assert pairs(align(src, other))["conv1"] == ("conv1", "name")
    own = chain(("conv1", ["conv", "relu"]), ("act", ["relu"]))  # the named tensor applies it already
    assert pairs(align(src, own))["conv1"] == ("conv1", "name")


def test_a_name_match_is_not_followed_onto_a_claimed_tensor():
    src = [L("conv1", ["conv", "relu"]), L("other", ["relu"])]
    dst = chain(("conv1", ["conv"]), ("act", ["relu"]))
    assert pairs(align(src, dst, layer_map={"other": "act"}))["conv1"] == ("conv1", "name")


def test_a_scope_path_carries_the_layer_name_not_the_op_name():
    src = [L("conv1", ["conv"]), L("relu", ["relu"], inputs=["conv1"])]
    dst = [L("model/conv1/relu", ["conv"])]
    assert pairs(align(src, dst))["conv1"] == ("model/conv1/relu", "normalized")
    assert pairs(align(src, [L("conv1/relu", ["conv"])]))["conv1"] == ("conv1/relu", "normalized")


def test_skipped_destination_layers_do_not_stop_the_name_index():
    src = [L("conv1", ["conv"]), L("fc", ["dense"], inputs=["conv1"])]
    dst = [L("net_dropout0", ["dropout"]), L("net_conv1", ["conv"], inputs=["net_dropout0"]),
           L("net_fc", ["dense"], inputs=["net_conv1"])]
    assert pairs(align(src, dst)) == {"conv1": ("net_conv1", "normalized"), "fc": ("net_fc", "normalized")}


def test_shapes_decide_between_layers_of_one_kind():
    src = [L("a", ["conv"], (None, 8, 8, 4)), L("b", ["conv"], (None, 4, 4, 8), ["a"])]
    dst = [L("x", ["conv"], (None, 8, 4, 4))]  # NCHW: b's shape
    assert pairs(align(src, dst)) == {"a": (None, "none"), "b": ("x", "structural")}
    dst = [L("x", ["conv"], (None, 4, 8, 8))]  # a's
    assert pairs(align(src, dst)) == {"a": ("x", "structural"), "b": (None, "none")}
    assert pairs(align(src[:1], [L("x", ["conv"], (None, 3, 5))]))["a"] == (None, "none")  # no layout fits


def test_a_layer_map_naming_a_missing_layer_is_an_error():
    import pytest

    from xvalidate.errors import UnknownLayerError

    src, dst = [L("a", ["conv"])], [L("b", ["conv"])]
    with pytest.raises(UnknownLayerError, match=r"^layer_map: source layer 'nope' is not in the source model$"):
        align(src, dst, layer_map={"nope": "b"})
    with pytest.raises(UnknownLayerError, match=r"^layer_map: destination layer 'nope' \(for 'a'\) is not in the "
                                                r"destination model$"):
        align(src, dst, layer_map={"a": "nope"})


def test_a_hint_naming_a_missing_layer_is_ignored():
    src, dst = [L("a", ["conv"])], [L("b", ["conv"])]
    assert pairs(align(src, dst, hints={"gone": ("a", "hint")}))["a"] == ("b", "structural")
    assert pairs(align(src, dst, hints={"b": ("gone", "hint")}))["a"] == ("b", "structural")
    assert pairs(align(src, dst, hints={"b": ("a", "hint")}))["a"] == ("b", "hint")


def test_unmatched_lists_unpaired_destination_layers_that_compute_something():
    src = [L("conv", ["conv"])]
    dst = chain(("conv", ["conv"]), ("drop", ["identity"]), ("extra", ["relu"]))
    alignment = align(src, dst)
    assert pairs(alignment)["conv"] == ("conv", "name") and alignment.unmatched_dst == ["extra"]


def test_a_folded_batchnorm_takes_its_producers_pair_only_when_it_reads_the_layer_before():
    src = [L("c1", ["conv"]), L("b1", ["bn"], inputs=["c1"])]
    folded = pairs(align(src, [L("c1", ["conv"])]))  # no BatchNorm in the destination: folded into c1
    assert folded["b1"] == ("c1", "fused") and folded["c1"] == (None, "none")
    mapped = pairs(align(src, [L("c1", ["conv"])], layer_map={"c1": "c1"}))  # the user's pair stays
    assert mapped["c1"] == ("c1", "layer_map") and mapped["b1"][0] is None
    kept = pairs(align(src, [L("c1", ["conv"]), L("b9", ["bn"], inputs=["c1"])]))  # BatchNorms there: none folded
    assert kept["c1"] == ("c1", "name")
    # a BatchNorm reading a layer other than the one listed before it: that layer's pair stays
    src2 = [L("c1", ["conv"]), L("r", ["relu"], inputs=["c1"]), L("b1", ["bn"], inputs=["c1"])]
    got = pairs(align(src2, [L("c1", ["conv"]), L("r", ["relu"], inputs=["c1"])]))
    assert got["r"] == ("r", "name") and got["b1"] == (None, "none")


def test_name_matches_split_the_structural_alignment():
    """Layers before a name-matched layer pair only with layers before its partner, even when a better
    kind match lies across it."""
    src = chain(("r1", ["relu"]), ("A", ["conv"]), ("s1", ["sigmoid"]))
    dst = chain(("s0", ["sigmoid"]), ("A", ["conv"]), ("r0", ["relu"]))
    got = pairs(align(src, dst))
    assert got["A"] == ("A", "name") and got["r1"] == ("s0", "structural") and got["s1"] == ("r0", "structural")


def test_pairing_along_the_graph_refuses_an_incompatible_shape():
    src = [L("a", ["conv"], (None, 8)), L("b", ["relu"], (None, 8), ["a"])]
    dst = [L("a", ["conv"], (None, 8)), L("x", ["relu"], (None, 5), ["a"])]
    assert pairs(align(src, dst))["b"] == (None, "none")
    dst[1] = L("x", ["relu"], (None, 8), ["a"])
    assert pairs(align(src, dst))["b"] == ("x", "structural")
