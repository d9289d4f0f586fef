import pytest

from xvalidate.core.tolerances import DEFAULT_ATOL, DEFAULT_RTOL, Tolerances, passes
from xvalidate.errors import OptionError


def test_defaults_and_globals():
    assert Tolerances().for_layer("x") == (DEFAULT_ATOL, DEFAULT_RTOL)
    assert Tolerances(atol=1e-2).for_layer("x") == (1e-2, DEFAULT_RTOL)


def test_per_layer_exact_beats_pattern_and_longest_pattern_wins():
    tol = Tolerances(per_layer={"default": {"atol": 1e-3, "rtol": 0.0}, "conv*": 0.1, "conv5_*": {"rtol": 0.5},
                                "conv5_block1": 7.0})
    assert tol.for_layer("fc") == (1e-3, 0.0)
    assert tol.for_layer("conv1") == (0.1, 0.0)
    assert tol.for_layer("conv5_block2") == (1e-3, 0.5)
    assert tol.for_layer("conv5_block1") == (7.0, 0.0)


def test_global_arguments_beat_default_entry():
    assert Tolerances(atol=1.0, per_layer={"default": 2.0}).for_layer("x")[0] == 1.0


@pytest.mark.parametrize("bad, message", [
    ({"fc": "x"}, "tolerances\\['fc'\\]: expected a number"),
    ({"fc": {"atl": 1}}, "unknown key 'atl'"),
    ({"fc": {"atol": -1}}, "non-negative"),
])
def test_bad_entries_name_the_key(bad, message):
    with pytest.raises(OptionError, match=message):
        Tolerances(per_layer=bad)


def test_pass_rule():
    assert passes({"size": 10, "mismatched": 0}, 0, 0)
    assert not passes({"size": 10, "mismatched": 1}, 0, 0)
    assert not passes({"size": 0, "mismatched": 0}, 0, 0)
