"""The structural aligner's parts on hand-made segments: the Needleman-Wunsch over kind tokens
(`_align_segment`: leading gaps on either side, kind scores, the shape bonus, which layer of a
multi-kind source layer pairs), the anchors between name matches (`_monotone_anchors`) and the
shape agreement that earns the bonus (`_shapes_agree`)."""
import pytest

from xvalidate.core.align import _align_segment, _kind_score, _monotone_anchors, _shapes_agree
from xvalidate_adapters.base import LayerInfo


def L(name, *kinds):
    return LayerInfo(name=name, op="op", shape=None, kinds=list(kinds), inputs=[])


def segment(src, dst, src_shapes=None, dst_shapes=None):
    return {(s, d) for s, d, how in _align_segment(src, dst, src_shapes or {}, dst_shapes or {})}


def test_layers_before_the_first_match_on_either_side_are_left_out():
    body = [L("c", "conv"), L("r", "relu"), L("p", "maxpool")]
    assert segment([L("x", "add"), L("y", "mul")] + body, body) == {("c", "c"), ("r", "r"), ("p", "p")}
    assert segment(body, [L("x", "add"), L("y", "mul")] + body) == {("c", "c"), ("r", "r"), ("p", "p")}
    assert segment(body + [L("x", "add")], body + [L("y", "concat")]) == {("c", "c"), ("r", "r"), ("p", "p")}


def test_kinds_pair_only_with_their_own_or_a_similar_kind():
    assert segment([L("a", "conv")], [L("b", "maxpool")]) == set()
    assert segment([L("a", "relu")], [L("b", "sigmoid")]) == {("a", "b")}  # activations stand for each other
    assert segment([L("a", "avgpool")], [L("b", "gpool")]) == {("a", "b")}
    assert segment([L("a")], [L("b", "identity")]) == {("a", "b")}  # no kind left: both "other"
    assert segment([L("a", "conv")], [L("b")]) == set()
    assert (_kind_score("conv", "conv"), _kind_score("relu", "tanh"), _kind_score("other", "other")) == (3.0, 1.0, 0.5)
    assert _kind_score("conv", "maxpool") == float("-inf")


def test_a_same_kind_beats_a_similar_kind_and_two_matches_beat_one():
    src = [L("a", "relu")]
    assert segment(src, [L("s", "sigmoid"), L("r", "relu")]) == {("a", "r")}
    assert segment(src, [L("r", "relu"), L("s", "sigmoid")]) == {("a", "r")}
    src2 = [L("c", "conv"), L("r", "relu")]
    assert segment(src2, [L("d", "dense"), L("c", "conv"), L("r", "relu")]) == {("c", "c"), ("r", "r")}


@pytest.mark.parametrize("order", [("agree", "unknown"), ("unknown", "agree")])
def test_an_agreeing_shape_decides_between_layers_of_one_kind(order):
    src = [L("a", "conv")]
    dst = [L(name, "conv") for name in order]
    shapes = {"agree": (None, 16, 8, 8), "unknown": None}  # the source's NHWC as NCHW; unknown: compatible
    assert segment(src, dst, {"a": (None, 8, 8, 16)}, shapes) == {("a", "agree")}


def test_an_incompatible_shape_forbids_a_pair():
    assert segment([L("a", "conv")], [L("b", "conv")], {"a": (None, 8)}, {"b": (None, 9)}) == set()
    assert segment([L("a", "conv")], [L("b", "conv")], {"a": (None, 8)}, {"b": (None, 8)}) == {("a", "b")}


def test_a_multi_kind_layer_pairs_where_its_last_kind_ends_a_layer():
    # a Keras Conv2D(activation="relu") against a conv and a relu: the relu's output is the layer's
    assert segment([L("k", "conv", "relu")], [L("c", "conv"), L("r", "relu")]) == {("k", "r")}
    # a conv and a relu against one fused layer: only the relu's output exists on the other side
    assert segment([L("c", "conv"), L("r", "relu")], [L("k", "conv", "relu")]) == {("r", "k")}
    # skipped kinds (identity) are no tokens: the layer counts as "other"
    assert segment([L("i", "identity")], [L("j", "dropout")]) == {("i", "j")}


def test_anchors_are_the_longest_chain_increasing_on_both_sides():
    assert _monotone_anchors([]) == []
    assert _monotone_anchors([(0, 5)]) == [(0, 5)]
    assert _monotone_anchors([(0, 0), (1, 3), (2, 1), (3, 2), (4, 4)]) == [(0, 0), (2, 1), (3, 2), (4, 4)]
    assert _monotone_anchors([(0, 3), (1, 2), (2, 1)]) == [(0, 3)]  # all decreasing: the first alone
    assert _monotone_anchors([(0, 1), (1, 1), (2, 2)]) == [(0, 1), (2, 2)]  # equal dst indices do not chain


def test_shapes_agree_as_they_are_or_as_nhwc_and_nchw():
    assert _shapes_agree((None, 8, 8, 16), (None, 8, 8, 16))
    assert _shapes_agree((None, 8, 6, 16), (None, 16, 8, 6))  # NHWC against NCHW
    assert _shapes_agree((None, 16, 8, 6), (None, 8, 6, 16))  # NCHW against NHWC
    assert not _shapes_agree((None, 6, 8, 16), (None, 16, 8, 6))  # H and W swapped
    assert not _shapes_agree((None, 8, 16), (None, 16, 8))  # rank 2 is not a layout
    assert not _shapes_agree(None, (None, 8)) and not _shapes_agree((None, 8), None)
    assert _shapes_agree((1, 8), (7, 8))  # the batch dimension is not compared
