"""The torch plugin: its adapter captures every module call, the hub composes torch -> onnx -> mxnet,
and keras -> torch hand ports are compared. Torch runs only in workers; nets come from
xvalidate_torch.nets (seeded) and are saved by a torch worker as .pt2 or built there."""
import json
import subprocess
import sys

import numpy as np
import pytest

import xvalidate
from xvalidate.worker import get_worker

NETS = "xvalidate_torch.nets"


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    """{net name: .pt2 path} of the seeded test nets, saved by a torch worker."""
    out = tmp_path_factory.mktemp("torch")
    return {name: get_worker("torch").call(f"{NETS}:save", name, str(out / f"{name}.pt2"))
            for name in ("resnet_small", "seed2_cnn")}


def test_the_plugin_is_found_through_its_entry_points():
    assert "torch" in xvalidate.adapters() and "torch-onnx" in xvalidate.route_names()
    from xvalidate.routes.onnx_hub import reachable

    assert {("torch", "onnx", "onnx"), ("torch", "mxnet", "onnx"), ("torch", "onnx", "torch-onnx")} <= set(reachable())


def test_every_module_call_is_captured_and_a_reused_module_gets_one_name_per_call(pt2):
    infos = get_worker("torch").layers(pt2["seed2_cnn"])
    names = [info.name for info in infos]
    assert names == ["conv1", "relu", "pool", "conv2", "relu@1", "pool@1", "flatten", "fc", "softmax"]
    assert [info.kinds for info in infos][:3] == [["conv"], ["relu"], ["maxpool"]]
    assert infos[5].inputs == ["relu@1"] and infos[5].shape == (None, 256, 20, 30) and infos[5].layout == "NCHW"


def test_pt2_capture_matches_the_final_output(pt2):
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    outputs = xvalidate.run("torch", pt2["resnet_small"], x)
    assert "layer1.0.add" in outputs and "layer1.0.relu@1" in outputs and outputs["fc"].shape == (2, 10)
    assert np.array_equal(outputs["layer1.0.relu@1"], np.maximum(outputs["layer1.0.add"], 0))


VALIDATE = """
import json, sys
import xvalidate
from xvalidate_torch.nets import build
report = xvalidate.validate(build(sys.argv[1]), src="torch", dst="mxnet", via="onnx", batch=2, cache=False)
print(json.dumps({"passed": report.passed, "summary": report.summary(), "artifacts": report.artifacts,
                  "matches": [row.match for row in report.layers],
                  "final": report.layers[-1].metrics["max_abs"], "src": [row.src for row in report.layers],
                  "hops": [[h.hop, h.src, h.dst, h.passed, [r.src for r in h.layers], len(h.unmatched["src"])]
                           for h in report.hops], "located": report.located}))
"""


@pytest.mark.parametrize("name", ["resnet_small", "seed2_cnn"])
def test_an_in_memory_module_passes_torch_to_mxnet_through_the_onnx_hub(name):
    """validate(module, ...) in a process of its own: torch is never imported by the test process. Both
    halves (torch vs ONNX, ONNX vs MXNet) are compared as well."""
    out = subprocess.run([sys.executable, "-c", VALIDATE, name], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["passed"], result["summary"]
    assert result["artifacts"]["onnx"].endswith(".onnx")  # the intermediate model is kept
    assert sum(m in ("name", "fused") for m in result["matches"]) >= 5
    assert result["final"] < 1e-4
    # the ONNX model is compared too: torch vs onnx pairs what the whole pairs, onnx vs mxnet every tensor kept
    (export, *e), (imported, *i) = result["hops"]
    assert (export, *e[:3]) == ("export", "torch", "onnx", True) and e[3] == result["src"]
    assert (imported, *i[:2]) == ("import", "onnx", "mxnet") and i[2] and len(i[3]) >= len(result["src"]) and i[4] == 0
    assert result["located"]["hop"] is None


def test_a_pt2_program_is_refused_by_the_exporter_in_one_line(pt2):
    from xvalidate.errors import ConversionError

    with pytest.raises(ConversionError, match="dynamo exporter"):
        xvalidate.validate(pt2["seed2_cnn"], src="torch", dst="onnx", via="onnx", cache=False)


PORT = """
import json, sys
import numpy as np
import xvalidate
from xvalidate.models.keras_zoo import seed2_cnn
from xvalidate_torch.nets import Seed2CNN
from xvalidate_torch.transfer import transfer_weights

keras_model = seed2_cnn(0)
port = Seed2CNN(classes=2).eval()
pairs = transfer_weights(keras_model, port, permute_flatten=sys.argv[1] == "permute")
x = np.random.default_rng(0).random((2, 80, 120, 3), dtype=np.float32)
report = xvalidate.compare(keras_model, port, src="keras", dst="torch", inputs=x)
root = report.first_divergence
print(json.dumps({"pairs": pairs, "passed": report.passed, "root": root and [root.src, root.dst],
                  "final": report.layers[-1].metrics["max_abs"]}))
"""


@pytest.mark.parametrize("flatten", ["permute", "keep"])
def test_keras_weights_into_a_torch_port_then_compare(flatten):
    """transfer_weights keras -> torch (conv, Dense after Flatten) and compare(keras, torch): the port
    passes; without the flatten permutation the Dense after the Flatten is the root."""
    out = subprocess.run([sys.executable, "-c", PORT, flatten], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [p[1] for p in result["pairs"]] == ["conv1", "conv2", "fc"]
    if flatten == "permute":
        assert result["passed"] and result["final"] < 1e-5
    else:
        assert not result["passed"] and result["root"][0] == "final_fully_connected"


BN_DW_PORT = """
import json
import numpy as np
import tensorflow as tf
import xvalidate
from xvalidate_torch.nets import ConvBnDwNet
from xvalidate_torch.transfer import transfer_weights

tf.keras.utils.set_random_seed(0)
L = tf.keras.layers
inputs = L.Input((16, 16, 3))
x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(x))
x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
x = L.ReLU(name="relu2")(L.BatchNormalization(name="bn2")(x))
keras_model = tf.keras.Model(inputs, L.Dense(5, name="fc")(L.Flatten(name="flatten")(x)))
rng = np.random.default_rng(0)
for layer in keras_model.layers:  # seeded weights, BatchNorm statistics away from 0 and 1
    layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "Normalization" in type(layer).__name__ and i in (0, 3)
                       else rng.normal(0, 0.3, w.shape) for i, w in enumerate(layer.get_weights())])
port = ConvBnDwNet().eval()
pairs = transfer_weights(keras_model, port)
x = rng.random((2, 16, 16, 3), dtype=np.float32)
report = xvalidate.compare(keras_model, port, src="keras", dst="torch", inputs=x)
print(json.dumps({"pairs": pairs, "passed": report.passed, "summary": report.summary(),
                  "rows": [[r.src, r.dst, r.passed] for r in report.layers], "unmatched": report.unmatched["src"],
                  "reasons": report.unmatched_reasons, "final": report.layers[-1].metrics["max_abs"]}))
"""


def test_batchnorm_and_depthwise_weights_into_a_torch_port_then_compare():
    """transfer_weights keras -> torch with BatchNormalization (statistics) and DepthwiseConv2D (depth
    multiplier 2): the port passes, every Keras layer paired with its torch module."""
    out = subprocess.run([sys.executable, "-c", BN_DW_PORT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["pairs"] == [["conv", "conv"], ["bn1", "bn1"], ["dw", "dw"], ["bn2", "bn2"], ["fc", "fc"]]
    assert result["passed"] and result["final"] < 1e-4, result["summary"]
    assert not result["unmatched"], result["reasons"]
    assert [r[0] for r in result["rows"]] == ["conv", "bn1", "relu1", "dw", "bn2", "relu2", "flatten", "fc"]
