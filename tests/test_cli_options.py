"""Route options as the CLI reads them (`_route_options`, in the test process): declared flags and
--route-option KEY=VALUE, each in its declared type; malformed pairs and values are one-line errors."""
import pytest

from xvalidate.cli import _route_options
from xvalidate.errors import OptionError


def test_declared_flags_and_key_value_pairs_in_their_types():
    got = _route_options({"opset": "13", "input_shape": None}, ("input-shape = 1x3x8x8", "extra=text ", " k =v"))
    assert got == {"opset": 13, "input_shape": [1, 3, 8, 8], "extra": "text", "k": "v"}
    assert _route_options({"opset": None}, ()) == {}
    assert _route_options({}, ("opset=12", "opset=14")) == {"opset": 14}  # the last one given wins


@pytest.mark.parametrize("pair", ["opset", "=13", " =13"])
def test_a_pair_without_key_or_equals_is_an_error(pair):
    with pytest.raises(OptionError, match=f"--route-option: expected KEY=VALUE, got {pair!r}"):
        _route_options({}, (pair,))


def test_a_value_of_the_wrong_type_is_an_error():
    with pytest.raises(OptionError, match="route option opset: expected a value of type int, got 'x'"):
        _route_options({"opset": "x"}, ())
    with pytest.raises(OptionError, match="route option input_shape: expected integers like 1,3,224,224"):
        _route_options({}, ("input_shape=1,a",))
