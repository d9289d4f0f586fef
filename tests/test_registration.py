"""Adapters and routes registered at run time reach the worker processes (run, compare, validate),
and a class in __main__ is refused with a one-line error."""
import os

import numpy as np
import pytest

import xvalidate
from xvalidate import registry
from xvalidate.errors import OptionError
from xvalidate.worker import get_worker

TOY = '''
"""A numpy "framework": a .npz holding w (features x units); dense = x @ w, out = relu(dense)."""
from pathlib import Path

import numpy as np

from xvalidate.routes.base import Conversion, Route
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo


class ToyAdapter(Adapter):
    name, layout, extensions = "regtoy", "NC", (".npz",)

    def load(self, source):
        return dict(np.load(source))

    def layers(self, model):
        units = model["w"].shape[1]
        return [LayerInfo("dense", "Dense", (None, units), "NC", ["dense"], ["x"]),
                LayerInfo("out", "Relu", (None, units), "NC", ["relu"], ["dense"])]

    def input_info(self, model):
        return InputInfo("x", (None, model["w"].shape[0]), "float32", "NC")

    def run(self, model, x, layers=None):
        dense = np.asarray(x, np.float32) @ model["w"]
        out = {"dense": dense, "out": np.maximum(dense, 0) * model.get("scale", 1.0)}
        return {k: v for k, v in out.items() if layers is None or k in layers}


class ToyTwo(ToyAdapter):
    name = "regtoy2"


class ToyPrefixed(ToyAdapter):
    """Names every tensor "net.<layer>", and says so through its naming rule."""
    name = "regtoyp"

    def layers(self, model):
        infos = super().layers(model)
        for info in infos:
            info.name, info.inputs = "net." + info.name, ["net." + i for i in info.inputs]
        return infos

    def run(self, model, x, layers=None):
        out = {"net." + k: v for k, v in super().run(model, x).items()}
        return {k: v for k, v in out.items() if layers is None or k in layers}

    def pairing_name(self, name):
        return name[len("net."):] if name.startswith("net.") else name


class CopyRoute(Route):
    """toy -> toy2: copies the weights, scaled by the option `scale` (1: exact)."""
    name, pairs, packages = "toycopy", (("regtoy", "regtoy2"),), ("numpy",)

    def convert(self, source, src, dst, out_dir, **options):
        target = Path(out_dir) / "converted.npz"
        np.savez(target, w=np.load(source)["w"], scale=np.float32(options.get("scale", 1.0)))
        return Conversion(str(target), hints={"dense": ("dense", "name"), "out": ("out", "name")},
                          artifacts={"model": str(target)})
'''


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch):
    """What a test registers goes away after it (the worker processes may keep it: they are reused)."""
    saved = {kind: dict(targets) for kind, targets in registry._registered.items()}
    monkeypatch.setenv(registry.ENV_VAR, os.environ.get(registry.ENV_VAR, "{}"))
    yield
    for kind, targets in registry._registered.items():
        targets.clear()
        targets.update(saved[kind])
    registry._instances.clear()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "xv_regtoy_plugin.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(site))
    model = tmp_path / "model.npz"
    np.savez(model, w=np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32))
    return model


def test_a_registered_adapter_runs_and_compares_in_its_worker(toy):
    xvalidate.register_adapter("regtoy", "xv_regtoy_plugin:ToyAdapter")
    x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    out = xvalidate.run("regtoy", str(toy), x)
    assert np.allclose(out["out"], np.maximum(x @ np.load(toy)["w"], 0))
    xvalidate.register_adapter("regtoy2", "xv_regtoy_plugin:ToyTwo")  # after the toy worker started: it learns it too
    assert "regtoy2" in get_worker("regtoy").call("xvalidate.registry:adapter_names")
    report = xvalidate.compare(str(toy), str(toy), src="regtoy", dst="regtoy2")
    assert report.passed and {row.dst for row in report.layers} == {"dense", "out"}


def test_a_registered_route_validates_and_catches_a_fault(toy):
    from xvalidate.routes.base import Route

    xvalidate.register_adapter("regtoy", "xv_regtoy_plugin:ToyAdapter")
    xvalidate.register_adapter("regtoy2", "xv_regtoy_plugin:ToyTwo")
    xvalidate.register_route("toycopy", "xv_regtoy_plugin:CopyRoute")
    assert isinstance(registry.get_route("toycopy"), Route)
    assert xvalidate.validate(str(toy), src="regtoy", dst="regtoy2", via="toycopy", cache=False, batch=4).passed
    bad = xvalidate.validate(str(toy), src="regtoy", dst="regtoy2", via="toycopy", cache=False, batch=4,
                             route_options={"scale": 2.0})
    assert not bad.passed and bad.first_divergence.src == "out"


def test_a_class_in_main_is_refused_in_one_line():
    cls = type("MainAdapter", (), {"__module__": "__main__"})
    with pytest.raises(OptionError, match=r'defined in __main__.*register it by "module:Class"') as err:
        xvalidate.register_adapter("main_toy", cls)
    assert "\n" not in str(err.value)
    assert "main_toy" not in xvalidate.adapters()


def test_a_target_that_cannot_be_imported_is_a_clear_error():
    from xvalidate.errors import UnknownAdapterError

    with pytest.raises(OptionError, match="expected \"module:Class\""):
        xvalidate.register_adapter("nocolon", "just_a_module")
    xvalidate.register_adapter("ghost", "no_such_module_xv:Ghost")
    with pytest.raises(UnknownAdapterError, match="adapter 'ghost': cannot import 'no_such_module_xv:Ghost'"):
        registry.get_adapter("ghost")


def test_a_destination_naming_rule_pairs_by_name(toy):
    xvalidate.register_adapter("regtoy", "xv_regtoy_plugin:ToyAdapter")
    xvalidate.register_adapter("regtoyp", "xv_regtoy_plugin:ToyPrefixed")
    report = xvalidate.compare(str(toy), str(toy), src="regtoy", dst="regtoyp", batch=4)
    assert report.passed
    assert {(row.src, row.dst, row.match) for row in report.layers} == {
        ("dense", "net.dense", "normalized"), ("out", "net.out", "normalized")}
