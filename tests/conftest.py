"""Shared fixtures. The pytest process itself never imports a framework: models are built
and run in worker processes (xvalidate.worker)."""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest


def _shared_env_dir() -> str:
    """Worker environments (xvalidate.environments) are venvs made by pip: the tests share one
    directory of them across tests and sessions, beside the Python that runs the tests (inside
    .venv, so `make clean` removes them), so the suite creates each environment once per machine."""
    for root in (Path(sys.prefix), Path(tempfile.gettempdir())):
        path = root / ("xvalidate-envs" if root == Path(sys.prefix) else f"xvalidate-test-envs-{os.getuid()}")
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return str(path)
        except OSError:
            continue
    return str(Path(tempfile.mkdtemp(prefix="xvalidate-test-envs-")))


os.environ.setdefault("XVALIDATE_ENV_DIR", _shared_env_dir())

TOY_ADAPTER = '''
import numpy as np
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate.errors import UnknownLayerError


class ToyAdapter(Adapter):
    """A two-layer numpy model stored as an .npz of weight matrices w0, w1."""
    name, layout, extensions = "toy", "NC", (".npz",)

    def load(self, source):
        return dict(np.load(source))

    def input_info(self, model):
        return InputInfo("x", (None, model["w0"].shape[0]), "float32", "NC")

    def layers(self, model):
        return [LayerInfo("dense0", "matmul", (None, model["w0"].shape[1]), "NC", ["dense"]),
                LayerInfo("relu0", "relu", (None, model["w0"].shape[1]), "NC", ["relu"], ["dense0"]),
                LayerInfo("dense1", "matmul", (None, model["w1"].shape[1]), "NC", ["dense"], ["relu0"])]

    def run(self, model, x, layers=None):
        out = {}
        out["dense0"] = x @ model["w0"]
        out["relu0"] = np.maximum(out["dense0"], 0)
        out["dense1"] = out["relu0"] @ model["w1"]
        for name in layers or ():
            if name not in out:
                raise UnknownLayerError(f"toy model: no layer {name!r}")
        return {k: v for k, v in out.items() if layers is None or k in layers}
'''


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Every test converts into a conversion cache of its own: nothing leaks between tests or
    into the user's ~/.cache/xvalidate."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XVALIDATE_CACHE_DIR", str(path))
    return path


def add_plugin(site: Path, module: str, source: str, group: str, entries: dict[str, str]) -> None:
    """Install into `site` a third-party package of one module, `module`.py holding `source`, that
    registers `entries` ({name: "module:Class"}) in entry-point group `group`."""
    (site / f"{module}.py").write_text(source)
    dist = site / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{n} = {t}\n" for n, t in entries.items()))


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """A third-party package that registers adapter 'toy' through the entry-point group."""
    site = tmp_path / "site"
    site.mkdir()
    add_plugin(site, "toy_adapter", TOY_ADAPTER, "xvalidate.adapters", {"toy": "toy_adapter:ToyAdapter"})
    monkeypatch.syspath_prepend(str(site))
    rng = np.random.default_rng(0)
    model = tmp_path / "toy.npz"
    np.savez(model, w0=rng.standard_normal((4, 6)).astype("float32"), w1=rng.standard_normal((6, 3)).astype("float32"))
    yield model


@pytest.fixture(autouse=True)
def no_framework_in_the_test_process(request):
    """TensorFlow and MXNet crash in one process: they run in workers only. A test that imports one
    here (directly or through a module that does) fails, naming it."""
    yield
    loaded = [name for name in ("tensorflow", "mxnet") if name in sys.modules]
    if loaded:
        pytest.fail(f"{request.node.nodeid} imported {', '.join(loaded)} into the test process; run it in a worker")
