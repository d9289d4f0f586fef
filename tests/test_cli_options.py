"""Route options as the CLI reads them (`_route_options`, in the test process): declared flags and
--route-option KEY=VALUE, each in its declared type; malformed pairs and values are one-line errors."""
import pytest

from xvalidate.cli import _route_options
from xvalidate.errors import OptionError


def test_declared_flags_and_key_value_pairs_in_their_types():
    got = _route_options({"opset": "13", "input_shape": None}, ("input-shape = 1x3x8x8", "extra=text ", " k =v=w"))
    assert got == {"opset": 13, "input_shape": [1, 3, 8, 8], "extra": "text", "k": "v=w"}  # split at the first =
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


# ------------------------------------------------ the shared option sets, built on a bare function
# (the commands get them at import; building them here lets a test see what each one declares)
import click  # noqa: E402

from xvalidate import cli  # noqa: E402


def _declared(fn) -> list:
    """The options a decorated function offers, in the order `--help` lists them."""
    return list(reversed(fn.__click_params__))


def _parse(fn, *args):
    """What a command made of decorated `fn` passes it for command line `args`."""
    return click.command()(fn).main(list(args), standalone_mode=False)


def test_route_flags_offer_every_declared_route_option_then_key_value_pairs():
    from xvalidate.registry import route_options

    declared = route_options()
    assert {"opset", "input_shape"} <= set(declared)
    options = _declared(cli._route_flags(lambda **kw: kw))
    assert [o.name for o in options] == ["route_option"] + sorted(declared)
    pairs = options[0]
    assert (pairs.opts, pairs.multiple, pairs.metavar) == (["--route-option"], True, "KEY=VALUE")
    assert pairs.help.startswith("A route option (repeatable)") and "--route-option opset=13" in pairs.help
    for option in options[1:]:
        assert option.opts == ["--" + option.name.replace("_", "-")]
        assert not option.multiple and option.help == declared[option.name][1]
    parsed = _parse(cli._route_flags(lambda **kw: kw), "--opset", "13", "--route-option", "a=1", "--route-option", "b=2")
    assert parsed == {**dict.fromkeys(declared), "opset": "13", "route_option": ("a=1", "b=2")}


def test_common_options_and_their_defaults():
    assert [o.name for o in _declared(cli._common(lambda **kw: kw))] == [
        "inputs", "batch", "seed", "preprocess", "atol", "rtol", "tolerance_file", "memory_budget", "html",
        "json_path", "all_rows", "isolate"]
    assert _parse(cli._common(lambda **kw: kw)) == {
        "inputs": None, "batch": 1, "seed": 0, "preprocess": "unit", "atol": None, "rtol": None,
        "tolerance_file": None, "memory_budget": None, "html": None, "json_path": None, "all_rows": False,
        "isolate": False}
    given = _parse(cli._common(lambda **kw: kw), "--input", "x.npz", "--json", "r.json", "--all", "--isolate",
                   "--batch", "3", "--atol", "1e-3", "--memory-budget", "1e6", "--tolerances", "t.json")
    assert (given["inputs"], given["json_path"], given["all_rows"], given["isolate"]) == ("x.npz", "r.json", True, True)
    assert (given["batch"], given["atol"], given["memory_budget"], given["tolerance_file"]) == (3, 1e-3, 1e6, "t.json")


def test_safety_options_and_the_timeout_they_apply(monkeypatch):
    applied = []
    monkeypatch.setattr("xvalidate.worker.set_timeout", applied.append)
    wrapped = cli._safety(lambda *args, **kwargs: (args, kwargs))
    trust, timeout = _declared(wrapped)
    assert (trust.name, trust.opts, trust.is_flag) == ("trust_model", ["--trust-model"], True)
    assert "docs/security.md" in trust.help and "Lambda" in trust.help
    assert (timeout.name, timeout.opts) == ("timeout", ["--timeout"])
    assert "600" in timeout.help and "$XVALIDATE_WORKER_TIMEOUT" in timeout.help
    assert timeout.type.convert("0.5", timeout, None) == 0.5
    for bad in ("0", "-1"):  # a time limit is a positive number of seconds
        with pytest.raises(click.BadParameter):
            timeout.type.convert(bad, timeout, None)
    assert wrapped(1, trust_model=True) == ((1,), {"trust_model": True}) and applied == []
    assert wrapped(timeout=7.5, trust_model=False) == ((), {"trust_model": False}) and applied == [7.5]
    assert _parse(cli._safety(lambda **kw: kw)) == {"trust_model": False} and applied == [7.5]
    assert _parse(cli._safety(lambda **kw: kw), "--trust-model", "--timeout", "2") == {"trust_model": True}
    assert applied == [7.5, 2.0]


def _sentence(text: str) -> bool:
    """A capitalised word or a short acronym (JSON, ONNX) first, a full stop last."""
    first = text.split()[0]
    return first[0].isupper() and (first[1:].islower() or first.isupper() and len(first) <= 4) and text.endswith(".")


def test_every_option_help_is_a_sentence():
    """`--help` reads as prose: the commands' options, and the shared sets as built for a command."""
    shared = [o for build in (cli._common, cli._safety, cli._route_flags) for o in _declared(build(lambda **kw: kw))]
    options = shared + [param for command in cli.main.commands.values() for param in command.params]
    helps = [(o.name, o.help) for o in options if getattr(o, "help", None)]
    assert len(helps) > 40 and {"trust_model", "timeout", "route_option", "batch"} <= {n for n, _ in helps}
    assert [(name, text) for name, text in helps if not _sentence(text)] == []
