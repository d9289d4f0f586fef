"""Inputs that fit the model: dtypes and value ranges, several inputs, .npz files, input pairing."""
import numpy as np
import pytest

from xvalidate.errors import InputShapeError
from xvalidate.inputs import load_input_batch, load_inputs, pair_inputs
from xvalidate_adapters.base import InputInfo

TOKENS = InputInfo("tokens", (None, 20), "int32", "NC", value_range=(0, 100))
MASK = InputInfo("mask", (None, 20), "int32", "NC", value_range=(0, 2))
FEATURES = InputInfo("features", (None, 16, 32), "float32", "NWC")


def test_random_token_ids_are_integers_in_the_embedding_range():
    x, desc = load_inputs(None, TOKENS.shape, TOKENS.layout, batch=64, dtype="int32", value_range=(0, 100))
    assert x.dtype == np.int32 and x.shape == (64, 20)
    assert x.min() >= 0 and x.max() < 100 and len(np.unique(x)) > 50  # the whole range is used
    assert desc["range"] == [0, 100] and desc["dtype"] == "int32"


def test_random_floats_are_what_a_single_input_always_got():
    x, desc = load_inputs(None, (None, 4, 3), "NWC", batch=2, seed=7)
    expected = np.random.default_rng(7).standard_normal((2, 4, 3)).astype("float32")
    assert np.array_equal(x, expected) and "range" not in desc


def test_integer_input_of_unknown_range_gets_zeros_and_ones():
    x, _ = load_inputs(None, (None, 50), "NC", batch=4, dtype="int64")
    assert x.dtype == np.int64 and set(np.unique(x)) == {0, 1}


def test_several_inputs_random_seeded_and_fitting():
    a, desc = load_input_batch(None, [TOKENS, MASK, FEATURES], batch=3, seed=1)
    b, _ = load_input_batch(None, [TOKENS, MASK, FEATURES], batch=3, seed=1)
    assert list(a) == ["tokens", "mask", "features"]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["mask"].dtype == np.int32 and set(np.unique(a["mask"])) <= {0, 1}
    assert a["features"].dtype == np.float32 and a["features"].shape == (3, 16, 32)
    assert desc["inputs"]["tokens"] == {"shape": [3, 20], "dtype": "int32", "range": [0, 100]}


def test_integer_values_given_as_floats_stay_exact_and_fractions_are_refused():
    x, _ = load_inputs(np.array([[3.0] * 20]), TOKENS.shape, "NC", dtype="int32", value_range=(0, 100))
    assert x.dtype == np.int32 and x[0, 0] == 3
    with pytest.raises(InputShapeError, match=r"takes int32 values .* non-integer"):
        load_inputs(np.full((1, 20), 0.5), TOKENS.shape, "NC", dtype="int32", value_range=(0, 100))


def test_token_ids_outside_the_embedding_are_refused():
    with pytest.raises(InputShapeError, match=r"in \[0, 100\).*got 81\.\.100"):
        load_inputs(np.arange(81, 101).reshape(1, 20), TOKENS.shape, "NC", dtype="int32", value_range=(0, 100))


def test_dict_inputs_pair_by_name_then_position():
    feats = np.zeros((2, 16, 32), np.float32)
    toks = np.ones((2, 20), np.int64)
    arrays, desc = load_input_batch({"features": feats, "whatever": toks}, [TOKENS, FEATURES])
    assert list(arrays) == ["tokens", "features"] and arrays["tokens"].dtype == np.int32
    assert arrays["features"] is not None and desc["source"] == "dict"


def test_npz_inputs(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, tokens=np.full((3, 20), 5), features=np.ones((3, 16, 32), np.float32))
    arrays, desc = load_input_batch(str(path), [TOKENS, FEATURES])
    assert arrays["tokens"].shape == (3, 20) and arrays["tokens"].dtype == np.int32 and desc["source"] == str(path)
    one = tmp_path / "one.npz"
    np.savez(one, anything=np.ones((2, 16, 32), np.float32))
    arrays, _ = load_input_batch(str(one), [FEATURES])
    assert arrays["features"].shape == (2, 16, 32)


def test_bad_multi_input_data_named_in_one_line(tmp_path):
    with pytest.raises(InputShapeError, match=r"2 inputs \(tokens, features\); give a dict"):
        load_input_batch(np.zeros((1, 20)), [TOKENS, FEATURES])
    with pytest.raises(InputShapeError, match="different numbers of samples"):
        load_input_batch({"tokens": np.zeros((1, 20)), "features": np.zeros((2, 16, 32))}, [TOKENS, FEATURES])
    with pytest.raises(InputShapeError, match=r"input 'features'.*does not fit"):
        load_input_batch({"tokens": np.zeros((1, 20)), "features": np.zeros((1, 32, 16))}, [TOKENS, FEATURES])
    with pytest.raises(InputShapeError, match=r"has 2 inputs .*got 1"):
        load_input_batch({"tokens": np.zeros((1, 20))}, [TOKENS, FEATURES])


def test_pair_inputs_by_name_then_position():
    dst = [InputInfo("features:0", (None, 16, 32)), InputInfo("input_ids", (None, 20), "int64")]
    pairs = pair_inputs([TOKENS, FEATURES], dst, "dst.onnx")
    assert [(s.name, d.name) for s, d in pairs] == [("features", "features:0"), ("tokens", "input_ids")]
    with pytest.raises(InputShapeError, match=r"dst.onnx: the destination has 1 inputs \(x\) but the source has 2"):
        pair_inputs([TOKENS, FEATURES], [InputInfo("x", (None, 3))], "dst.onnx")


def test_input_info_round_trips_its_range():
    info = InputInfo.from_dict(TOKENS.to_dict())
    assert info == TOKENS and InputInfo.from_dict(FEATURES.to_dict()).value_range is None
