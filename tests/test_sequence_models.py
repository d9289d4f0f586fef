"""Sequence, attention and multi-input models: keras -> onnx and keras vs keras, end to end."""
import numpy as np
import pytest

import xvalidate
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq_zoo")
    keras = get_worker("keras")
    names = ("text_classifier", "transformer_block", "two_inputs", "multi_output")
    return {name: keras.call("xvalidate.models.keras_seq_zoo:save", name, str(d / f"{name}.h5")) for name in names}


def _all_paired_and_passing(report):
    assert report.passed, report.summary()
    assert not report.unmatched["src"], report.unmatched["src"]
    assert len(report.layers) == report.meta["layers"]["src"]


def test_text_classifier_gets_token_ids_and_passes_through_onnx(zoo):
    report = xvalidate.validate(zoo["text_classifier"], src="keras", dst="onnx", via="onnx", cache=False, batch=3)
    _all_paired_and_passing(report)
    assert report.inputs["dtype"] == "int32" and report.inputs["range"] == [0, 100]
    assert [r.src for r in report.layers] == ["emb", "lstm", "gru", "probs"]
    assert report.layers[1].dst.endswith("lstm/PartitionedCall/transpose_1:0")  # LSTM's Y, back in (batch, time)


def test_transformer_block_keeps_the_sequence_layout_through_onnx(zoo):
    report = xvalidate.validate(zoo["transformer_block"], src="keras", dst="onnx", via="onnx", cache=False)
    _all_paired_and_passing(report)
    assert report.inputs["layouts"]["features"] == {"dst": "features", "src_layout": "NWC", "dst_layout": "NWC",
                                                    "guessed": False}
    rows = {r.src: r for r in report.layers}
    # the attention layer's output is a tensor tf2onnx left unnamed (its Einsums rewritten as MatMuls)
    assert rows["mha"].dst != "transformer_block/mha/softmax/Softmax:0" and rows["mha"].transform is None
    assert rows["mha"].src_shape == rows["mha"].dst_shape == (1, 16, 32)
    assert rows["ffn1"].dst.endswith("ffn1/Gelu/mul_1:0") and rows["logits"].metrics["max_abs"] < 1e-5


def test_two_inputs_through_onnx_with_a_dict_and_an_npz(zoo, tmp_path):
    rng = np.random.default_rng(0)
    x = {"right": rng.standard_normal((4, 4)).astype(np.float32), "left": rng.standard_normal((4, 8)).astype(np.float32)}
    report = xvalidate.validate(zoo["two_inputs"], src="keras", dst="onnx", via="onnx", cache=False, inputs=x)
    _all_paired_and_passing(report)
    assert report.inputs["source"] == "dict" and report.inputs["inputs"]["left"]["shape"] == [4, 8]
    random = xvalidate.validate(zoo["two_inputs"], src="keras", dst="onnx", via="onnx", batch=2)
    assert random.passed and set(random.inputs["inputs"]) == {"left", "right"}
    npz = tmp_path / "x.npz"
    np.savez(npz, **x)
    captured = xvalidate.run("onnx", random.dst_model, {"left": x["left"], "right": x["right"]})
    from_file = xvalidate.validate(zoo["two_inputs"], src="keras", dst="onnx", via="onnx", inputs=str(npz))
    assert from_file.passed and from_file.inputs["source"] == str(npz)
    keras_out = xvalidate.run("keras", zoo["two_inputs"], x)
    np.testing.assert_allclose(keras_out["out"], captured["out"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["text_classifier", "transformer_block", "two_inputs", "multi_output"])
def test_keras_against_itself(zoo, name):
    report = xvalidate.compare(zoo[name], zoo[name], src="keras", dst="keras", batch=2)
    _all_paired_and_passing(report)
    assert {r.match for r in report.layers} == {"name"} and report.layers[-1].metrics["max_abs"] == 0


def test_run_refuses_a_bare_array_for_two_inputs(zoo):
    with pytest.raises(xvalidate.XValidateError, match=r"2 inputs \(left, right\); give a dict"):
        xvalidate.run("keras", zoo["two_inputs"], np.zeros((1, 8), np.float32))
