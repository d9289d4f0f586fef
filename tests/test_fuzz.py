"""Fuzzing (hypothesis). Model loaders fed mutated bytes of real small model files only ever raise
XValidateError and never hang; alignment fed random layer graphs never crashes and pairs one to one.

The suite runs a short round; `make fuzz` a long one (XVALIDATE_FUZZ_EXAMPLES per target, and a
summary of the outcomes in XVALIDATE_FUZZ_REPORT when set)."""
import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvalidate import worker as worker_module
from xvalidate.core.align import align
from xvalidate.errors import UnknownLayerError, WorkerTimeoutError, XValidateError
from xvalidate.worker import get_worker
from xvalidate_adapters.base import KINDS, LayerInfo

EXAMPLES = int(os.environ.get("XVALIDATE_FUZZ_EXAMPLES", "8"))
LOAD_LIMIT = 60.0  # seconds: a load slower than this counts as a hang
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def fuzz_report():
    yield
    path = os.environ.get("XVALIDATE_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps({k: dict(v) for k, v in OUTCOMES.items()}, indent=1))


# ---------------------------------------------------------------- loaders
@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Real small model files, one per format the adapters read."""
    d = tmp_path_factory.mktemp("fuzz_seeds")
    keras, mxnet, onnx = get_worker("keras"), get_worker("mxnet"), get_worker("onnx")
    symbol = mxnet.call("test_reliability_inputs:save_mxnet_small", str(d / "small"))
    return {
        "h5": ("keras", keras.call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(d / "seed2.h5"))),
        "keras": ("keras", keras.call("test_reliability_inputs:save_keras_v3", str(d / "small.keras"))),
        "onnx": ("onnx", onnx.call("test_adapter_onnx:save_hand_built", str(d / "hand.onnx"))),
        "symbol": ("mxnet", symbol),
        "params": ("mxnet", symbol),
    }


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("zero"), st.floats(0, 1), st.integers(1, 4096)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 4096)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, where, arg in ops:
        i = min(int(where * len(buf)), max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[i] ^= arg
        elif op == "truncate":
            del buf[i:]
        elif op == "zero":
            buf[i:i + arg] = bytes(len(buf[i:i + arg]))
        elif op == "insert":
            buf[i:i] = arg
        elif op == "delete":
            del buf[i:i + arg]
    return bytes(buf)


def _mutated_copy(fmt: str, seed_path: str, data: bytes, directory: Path, n: int) -> str:
    """The mutated file in a new directory (its name is the model's cache key in the worker)."""
    d = directory / f"case{n}"
    d.mkdir()
    if fmt in ("symbol", "params"):
        prefix = seed_path[: -len("-symbol.json")]
        symbol, params = Path(seed_path), Path(f"{prefix}-0000.params")
        (d / "m-symbol.json").write_bytes(data if fmt == "symbol" else symbol.read_bytes())
        (d / "m-0000.params").write_bytes(data if fmt == "params" else params.read_bytes())
        hint = Path(f"{prefix}-input.json")
        if hint.exists():
            (d / "m-input.json").write_bytes(hint.read_bytes())
        return str(d / "m-symbol.json")
    target = d / Path(seed_path).name
    target.write_bytes(data)
    return str(target)


@pytest.mark.parametrize("fmt", ["h5", "keras", "onnx", "symbol", "params"])
def test_loaders_fed_mutated_files_raise_only_xvalidate_errors_and_never_hang(seeds, tmp_path, fmt):
    adapter, seed_path = seeds[fmt]
    source = Path(seed_path if fmt != "params" else seed_path[: -len("-symbol.json")] + "-0000.params")
    original = source.read_bytes()
    counter = iter(range(10**9))

    @_settings(EXAMPLES)
    @given(ops=st.lists(MUTATION, min_size=1, max_size=4))
    def load_mutated(ops):
        path = _mutated_copy(fmt, seed_path, mutate(original, ops), tmp_path, next(counter))
        worker = get_worker(adapter)
        # the framework's import (again, in a worker started after a crash) and the seed's load are not
        # what is timed: on a loaded machine they alone can take a minute
        worker.timeout = worker_module.DEFAULT_TIMEOUT
        worker.layers(seed_path)
        worker.timeout = LOAD_LIMIT
        try:
            worker.input_info(path)
            worker.layers(path)
            OUTCOMES[fmt]["loaded"] += 1
        except WorkerTimeoutError:
            OUTCOMES[fmt]["hang"] += 1
            raise
        except XValidateError as exc:
            crashed = type(exc).__name__ == "WorkerError" and "killed by" in str(exc)
            kind = f"worker crash ({str(exc).split('killed by ')[1].split()[0]})" if crashed else type(exc).__name__
            OUTCOMES[fmt][kind] += 1
            assert "\n" not in str(exc)
        except BaseException as exc:  # anything else fails the property
            OUTCOMES[fmt][f"other: {type(exc).__name__}"] += 1
            raise

    try:
        load_mutated()
    finally:
        get_worker(adapter).timeout = worker_module.DEFAULT_TIMEOUT


# ---------------------------------------------------------------- alignment
NAMES = ["conv", "conv1", "conv_1", "bn", "relu", "relu_1", "pool", "dense", "fc", "add", "flatten",
         "block1/conv", "block1_conv", "out", "logits", "softmax"]


@st.composite
def layer_graphs(draw, max_layers: int = 24):
    """A random topologically ordered graph of LayerInfos with unique names and plausible shapes."""
    n = draw(st.integers(0, max_layers))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n))
    layers, seen = [], collections.Counter()
    for i, base in enumerate(names):
        seen[base] += 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=2))
        rank = draw(st.sampled_from([2, 4]))
        dims = draw(st.lists(st.integers(1, 8), min_size=rank - 1, max_size=rank - 1))
        shape = draw(st.one_of(st.none(), st.just((None, *dims))))
        inputs = sorted(set(draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=2)))) if i else []
        layout = {2: "NC", 4: draw(st.sampled_from(["NHWC", "NCHW"]))}[rank]
        layers.append(LayerInfo(name, kinds[0], shape, layout, kinds, [layers[j].name for j in inputs if j < i]))
    return layers


@_settings(max(200, EXAMPLES * 25))
@given(src=layer_graphs(), dst=layer_graphs(), data=st.data())
def test_alignment_of_random_graphs_pairs_one_to_one_and_never_crashes(src, dst, data):
    layer_map, hints = {}, {}
    if src and dst:
        for s in data.draw(st.lists(st.sampled_from([l.name for l in src]), max_size=3, unique=True)):
            layer_map[s] = data.draw(st.sampled_from([l.name for l in dst]))
        for d in data.draw(st.lists(st.sampled_from([l.name for l in dst]), max_size=3, unique=True)):
            hints[d] = (data.draw(st.sampled_from([l.name for l in src])), data.draw(st.sampled_from(["name", "fused"])))
    try:
        result = align(src, dst, layer_map=layer_map, hints=hints)
    except UnknownLayerError:  # never for names drawn from the graphs
        raise
    OUTCOMES["align"]["runs"] += 1
    assert [p.src for p in result.pairs] == [l.name for l in src]
    paired = [p.dst for p in result.pairs if p.dst is not None]
    assert len(paired) == len(set(paired)), "a destination tensor paired twice"
    assert set(paired) <= {l.name for l in dst}
    assert not set(paired) & set(result.unmatched_dst)
