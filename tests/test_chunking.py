"""A batch compared in chunks gives the metrics of the batch in one piece."""
import math

import pytest

import xvalidate
from xvalidate.errors import OptionError
from xvalidate.worker import get_worker


def test_chunked_equals_one_shot(tmp_path):
    h5 = get_worker("keras").call("xvalidate.models.keras_zoo:save", "seed2_cnn", str(tmp_path / "s2.h5"))
    ports = get_worker("mxnet").call("xvalidate.models.gluon_ports:save_port", "noperm", h5, str(tmp_path / "noperm"))
    whole = xvalidate.compare(h5, ports, src="keras", dst="mxnet", batch=5, memory_budget=2**34)
    chunked = xvalidate.compare(h5, ports, src="keras", dst="mxnet", batch=5, memory_budget=1)
    assert whole.inputs["chunk"] == 5 and chunked.inputs["chunk"] == 1
    for a, b in zip(whole.layers, chunked.layers):
        for name, x in a.metrics.items():
            y = b.metrics[name]
            if isinstance(x, float):
                # the metrics merge exactly (tests/test_metrics.py); the frameworks themselves give float32
                # results that differ in the last bits between batch sizes
                assert math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) or x == y, (a.src, name, x, y)
            elif name != "mismatched":
                assert x == y, (a.src, name)
    assert whole.first_divergence.src == chunked.first_divergence.src == "final_fully_connected"
    assert whole.first_divergence.cause == chunked.first_divergence.cause


def test_bad_memory_budget():
    with pytest.raises(OptionError, match="memory_budget"):
        xvalidate.compare("a.npz", "b.npz", src="keras", dst="keras", memory_budget=0)
