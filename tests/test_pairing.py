"""core/pairing on its own: which shape differences read as a finding, the reason a pair is refused
with, and the nearest paired readers of a layer (what decides that a difference every reader
contradicts is no verdict)."""
import pytest

from xvalidate.core.align import align
from xvalidate.core.pairing import downstream_readers, finding_shapes, shapes_compatible, upstream
from xvalidate_adapters.base import LayerInfo


def L(name, kinds=("conv",), inputs=(), shape=None):
    return LayerInfo(name=name, op="Op", shape=shape, kinds=list(kinds), inputs=list(inputs))


@pytest.mark.parametrize("a, b, finding", [
    ((None, 4, 8, 8), (None, 8, 8, 4), True),      # the same dimensions in another order
    ((2, 8, 8, 4), (7, 8, 8, 4), True),            # the batch does not count
    ((None, 8, 8, 4), (None, 6, 6, 4), True),      # channels last on both, 2 pixels smaller
    ((None, 8, 8, 4), (None, 4, 6, 6), True),      # channels last, then first
    ((None, 4, 8, 8), (None, 4, 6, 6), True),      # channels first on both
    ((None, 4, 8, 8), (None, 6, 6, 4), True),      # channels first, then last
    ((None, 8, 8, 4), (None, 9, 10, 4), True),     # larger too
    ((None, 20, 20, 4), (None, 10, 10, 4), True),  # 10 pixels is the limit
    ((None, 21, 21, 4), (None, 10, 10, 4), False),
    ((None, 8, 8, 4), (None, 8, 6, 4), False),     # one side the same: not a padding border
    ((None, 8, 8, 4), (None, 6, 6, 5), False),     # another channel count
    ((None, 8, 8, 4), (None, 6, 4), False),        # another rank
    ((None, 6), (None, 7), False),                 # one dimension: nothing to read
    ((None, 6, 4), (None, 5, 4), True),            # a sequence one step shorter
    ((None, 20, 30, 4), (None, 4, 18, 28), True),  # channels first in the destination: its last two are spatial
    ((None, 20, 50, 4), (None, 18, 28, 4), False), # the second spatial side too far off
    ((None, 4, 8, 8), (None, 4, 7, 7), True),      # channels first on both: one pixel
    ((None, 4, 20, 20), (None, 4, 10, 10), True),
    ((None, 4, 21, 21), (None, 4, 10, 10), False),
])
def test_finding_shapes(a, b, finding):
    assert finding_shapes(a, b) is finding
    assert finding_shapes(b, a) is finding


def test_shapes_compatible_takes_unknown_shapes_as_compatible():
    assert shapes_compatible(None, (None, 3)) and shapes_compatible((None, None, 4), (None, 9))
    assert shapes_compatible((None, 9), (None, None, 4)) and shapes_compatible((None, 8, 4), (None, 3, None))
    assert shapes_compatible((None, 8, 8, 4), (None, 4, 8, 8))
    assert not shapes_compatible((None, 8, 8, 4), (None, 6, 6, 4))


def test_a_normalized_pair_of_impossible_shapes_is_refused_naming_both_shapes():
    src = [L("lone", kinds=["other"]), L("conv1", shape=(None, 8, 8, 4)),
           L("conv2", inputs=["conv1"], shape=(None, 8, 8, 4))]
    dst = [L("net0_conv1", shape=(None, 3, 7)), L("net0_conv2", inputs=["net0_conv1"], shape=(None, 6, 6, 4))]
    alignment = align(src, dst)
    assert alignment.unmatched_src == ["lone", "conv1"] and alignment.rejected == {"conv1": "net0_conv1"}
    assert alignment.reasons["conv1"] == ("its normalized partner 'net0_conv1' has shape (N, 3, 7) where it has "
                                          "(N, 8, 8, 4): no layout makes them comparable")
    # a padding-like difference is a finding: that normalized pair stands
    assert [(p.src, p.dst, p.match) for p in alignment.pairs][2] == ("conv2", "net0_conv2", "normalized")


def test_downstream_readers_look_through_unpaired_layers_once_each():
    layers = [L("a"), L("u1", inputs=["a"]), L("u2", inputs=["a"]), L("j", inputs=["u1", "u2"]),
              L("k", inputs=["u2"]), L("c", inputs=["a"]), L("end", inputs=["j", "k", "c"])]
    by_name = {i.name: i for i in layers}
    paired = {"a", "j", "k", "c", "end"}
    readers = downstream_readers(by_name, paired)
    assert readers == {"a": ["c", "j", "k"], "j": ["end"], "k": ["end"], "c": ["end"], "end": []}


def test_upstream_walks_through_unpaired_layers_to_the_nearest_paired_ones():
    layers = [L("a"), L("u1", inputs=["a"]), L("u2", inputs=["a", "model_input"]), L("b", inputs=["u1", "u2"])]
    by_name = {i.name: i for i in layers}
    ups = upstream("b", by_name, {"a", "b"})
    assert (ups.producers, ups.path) == (["a"], ["u1", "u2"])
    assert upstream("b", by_name, {"a", "u1", "b"}).producers == ["u1", "a"]
    ghost = upstream("ghost", by_name, {"a"})
    assert (ghost.producers, ghost.path) == ([], [])


def test_calls_of_a_shared_layer_take_the_partners_their_inputs_call_for():
    src = [L("a"), L("b"), L("dense", ["dense"], ["a"]), L("dense@1", ["dense"], ["b"])]
    dst = [L("a"), L("b"), L("d0", ["dense"], ["b"]), L("d1", ["dense"], ["a"])]
    crossed = {"d0": ("dense", "name"), "d1": ("dense@1", "name")}
    got = {p.src: (p.dst, p.match) for p in align(src, dst, hints=crossed).pairs}
    assert got["dense"] == ("d1", "name") and got["dense@1"] == ("d0", "name")
    # nested calls ("outer@1/inner") are calls too
    nested = [L("a"), L("b"), L("outer/inner", ["dense"], ["a"]), L("outer@1/inner", ["dense"], ["b"])]
    crossed = {"d0": ("outer/inner", "name"), "d1": ("outer@1/inner", "name")}
    got = {p.src: p.dst for p in align(nested, dst, hints=crossed).pairs}
    assert got["outer/inner"] == "d1" and got["outer@1/inner"] == "d0"
    # when no order fits (both partners read the same input), the pairs stay as they are
    same = [L("a"), L("b"), L("d0", ["dense"], ["a"]), L("d1", ["dense"], ["a"])]
    got = {p.src: p.dst for p in align(src, same, hints={"d0": ("dense", "name"), "d1": ("dense@1", "name")}).pairs}
    assert got["dense"] == "d0" and got["dense@1"] == "d1"
    # a single call, or more than six, is left alone
    many = [L("a"), L("b")] + [L("dense" + (f"@{i}" if i else ""), ["dense"], ["b" if i == 0 else "a"])
                                 for i in range(7)]
    dst_many = [L("a"), L("b")] + [L(f"d{i}", ["dense"], ["a" if i == 0 else "b"]) for i in range(7)]
    hints = {f"d{i}": ("dense" + (f"@{i}" if i else ""), "name") for i in range(7)}
    got = {p.src: p.dst for p in align(many, dst_many, hints=hints).pairs}
    assert got["dense"] == "d0" and got["dense@1"] == "d1"


def test_every_reason_for_an_unmatched_layer_is_a_whole_sentence():
    src = [L("in", ["input"]), L("drop", ["dropout"], ["in"]), L("pad", ["pad"], ["drop"]),
           L("conv", ["conv"], ["pad"]), L("bn", ["bn"], ["conv"]), L("twin", ["relu"], ["bn"]),
           L("twin2", ["relu"], ["bn"]), L("odd", ["other"], ["twin"])]
    dst = [L("c", ["conv"]), L("t", ["relu"], ["c"])]
    alignment = align(src, dst, hints={"c": ("bn", "fused"), "t": ("twin", "name")})
    assert alignment.reasons == {
        "in": "does nothing at inference (identity, dropout): nothing to compare",
        "drop": "does nothing at inference (identity, dropout): nothing to compare",
        "pad": "a padding the destination merged into the op after it (its pads): the padded tensor does not exist "
               "there; the op after it is compared",
        "conv": "folded into the layer after it: 'bn' is compared with the destination tensor that computes both",
        "twin2": "the destination computes it once: 'twin', the same op on the same inputs, is paired with 't'",
        "odd": "no destination tensor carries its name, and none of a compatible shape and kind stands in its place "
               "in the graph"}
