"""Properties of core.tolerances: which entry a layer gets, the pass rule, and bad settings."""
import os
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvalidate.core.tolerances import DEFAULT_ATOL, DEFAULT_RTOL, Tolerances, passes
from xvalidate.errors import OptionError


def examples(n):
    """n, or fewer under `make mutation` (XVALIDATE_PROPERTY_EXAMPLES)."""
    return min(n, int(os.environ.get("XVALIDATE_PROPERTY_EXAMPLES", n)))


names = st.text("abc_1", min_size=1, max_size=6)
patterns = st.builds(lambda a, b: a + "*" + b, st.text("abc_1", max_size=3), st.text("abc_1", max_size=2))
values = st.floats(0, 10, allow_nan=False)


def expected(layer, exact, pats, atol, rtol):
    """The (atol, rtol) the documented rule gives: exact name, else the longest matching pattern."""
    entry = exact.get(layer)
    if entry is None:
        matching = sorted((p for p in pats if fnmatchcase(layer, p)), key=len, reverse=True)
        entry = pats[matching[0]] if matching else {}
    return entry.get("atol", atol), entry.get("rtol", rtol)


@given(st.dictionaries(names, values, max_size=4),
       st.dictionaries(patterns, st.fixed_dictionaries({"rtol": values}), max_size=4), names,
       st.one_of(st.none(), values), st.one_of(st.none(), values))
@settings(max_examples=examples(200), deadline=None)
def test_a_layer_gets_exact_then_longest_pattern_then_global(exact, pats, layer, atol, rtol):
    lengths = [len(p) for p in pats]
    if len(set(lengths)) != len(lengths):  # two patterns of one length: keep one, the rule leaves their order open
        pats = {p: v for p, v in pats.items() if lengths.count(len(p)) == 1}
    per_layer = {**{k: v for k, v in exact.items()}, **pats}
    tol = Tolerances(atol, rtol, per_layer)
    base = (DEFAULT_ATOL if atol is None else atol, DEFAULT_RTOL if rtol is None else rtol)
    exact_entries = {k: {"atol": v} for k, v in exact.items()}
    assert tol.for_layer(layer) == expected(layer, exact_entries, pats, *base)
    described = tol.describe()
    assert (described["atol"], described["rtol"]) == base
    assert described["per_layer"] == {**exact_entries, **pats}


def test_default_entry_replaces_the_global_values_but_not_the_arguments():
    tol = Tolerances(per_layer={"default": {"atol": 0.5, "rtol": 0.25}})
    assert (tol.atol, tol.rtol) == (0.5, 0.25) and "default" not in tol.describe()["per_layer"]
    assert Tolerances(rtol=0.0, per_layer={"default": {"atol": 0.5, "rtol": 0.25}}).for_layer("x") == (0.5, 0.0)
    assert Tolerances(per_layer={"default": 3}).for_layer("x") == (3.0, DEFAULT_RTOL)
    assert Tolerances(per_layer={"x": 0}).for_layer("x") == (0.0, DEFAULT_RTOL)  # zero is a value, not "unset"


@pytest.mark.parametrize("kwargs, message", [
    ({"atol": -1e-9}, "atol: expected a non-negative number, got -1e-09"),
    ({"rtol": -1}, "rtol: expected a non-negative number"),
    ({"atol": True}, "atol: expected a non-negative number, got True"),
    ({"rtol": "0.1"}, "rtol: expected a non-negative number"),
    ({"per_layer": [("fc", 1)]}, "tolerances: expected a dict of layer name or pattern -> tolerance, got list"),
    ({"per_layer": {"fc": True}}, "tolerances['fc']: expected a number (atol)"),
    ({"per_layer": {"fc": {"rtol": False}}}, "tolerances['fc']['rtol']: expected a non-negative number, got False"),
    ({"per_layer": {"fc": {"atol": "1"}}}, "tolerances['fc']['atol']: expected a non-negative number"),
])
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(OptionError) as info:
        Tolerances(**kwargs)
    assert str(info.value).startswith(message)


def test_zero_tolerances_are_accepted():
    tol = Tolerances(0, 0, {"fc": {"atol": 0, "rtol": 0}})
    assert tol.for_layer("x") == (0.0, 0.0) and tol.for_layer("fc") == (0.0, 0.0)


@given(st.integers(0, 5), st.integers(0, 5))
@settings(max_examples=examples(50), deadline=None)
def test_pass_rule_is_some_elements_and_none_mismatched(size, mismatched):
    assert passes({"size": size, "mismatched": mismatched}, 1.0, 1.0) == (size > 0 and mismatched == 0)


def test_pass_rule_with_missing_counts_fails():
    assert not passes({"mismatched": 0}, 0, 0)   # no size: nothing was compared
    assert not passes({"size": 3}, 0, 0)         # no mismatch count: not known to agree
    assert not passes({}, 0, 0)


@pytest.mark.parametrize("size, mismatched", [(s, m) for s in range(3) for m in range(3)])
def test_pass_rule_on_small_counts(size, mismatched):
    assert passes({"size": size, "mismatched": mismatched}, 0, 0) == (size >= 1 and mismatched == 0)


def test_an_exact_name_beats_a_longer_pattern_that_matches_it():
    tol = Tolerances(per_layer={"fc": 1.0, "f*c*": 2.0, "X1": 3.0, "X1*": 4.0})
    assert tol.for_layer("fc")[0] == 1.0 and tol.for_layer("fcc")[0] == 2.0
    assert tol.for_layer("X1")[0] == 3.0 and tol.for_layer("X12")[0] == 4.0
    assert set(tol.exact) == {"fc", "X1"}
