"""core/pairing on its own: which shape differences read as a finding, the reason a pair is refused
with, and the nearest paired readers of a layer (what decides that a difference every reader
contradicts is no verdict)."""
import pytest

from xvalidate.core.align import align
from xvalidate.core.pairing import downstream_readers, finding_shapes, shapes_compatible
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
])
def test_finding_shapes(a, b, finding):
    assert finding_shapes(a, b) is finding
    assert finding_shapes(b, a) is finding


def test_shapes_compatible_takes_unknown_shapes_as_compatible():
    assert shapes_compatible(None, (None, 3)) and shapes_compatible((None, None, 4), (None, 9))
    assert shapes_compatible((None, 8, 8, 4), (None, 4, 8, 8))
    assert not shapes_compatible((None, 8, 8, 4), (None, 6, 6, 4))


def test_a_normalized_pair_of_impossible_shapes_is_refused_naming_both_shapes():
    src = [L("conv1", shape=(None, 8, 8, 4)), L("conv2", inputs=["conv1"], shape=(None, 8, 8, 4))]
    dst = [L("net0_conv1", shape=(None, 3, 7)), L("net0_conv2", inputs=["net0_conv1"], shape=(None, 6, 6, 4))]
    alignment = align(src, dst)
    assert alignment.unmatched_src == ["conv1"] and alignment.rejected == {"conv1": "net0_conv1"}
    assert alignment.reasons["conv1"] == ("its normalized partner 'net0_conv1' has shape (N, 3, 7) where it has "
                                          "(N, 8, 8, 4): no layout makes them comparable")
    # a padding-like difference is a finding: that normalized pair stands
    assert [(p.src, p.dst, p.match) for p in alignment.pairs][1] == ("conv2", "net0_conv2", "normalized")


def test_downstream_readers_look_through_unpaired_layers_once_each():
    layers = [L("a"), L("u1", inputs=["a"]), L("u2", inputs=["a"]), L("j", inputs=["u1", "u2"]),
              L("k", inputs=["u2"]), L("c", inputs=["a"]), L("end", inputs=["j", "k", "c"])]
    by_name = {i.name: i for i in layers}
    paired = {"a", "j", "k", "c", "end"}
    readers = downstream_readers(by_name, paired)
    assert readers == {"a": ["c", "j", "k"], "j": ["end"], "k": ["end"], "c": ["end"], "end": []}
