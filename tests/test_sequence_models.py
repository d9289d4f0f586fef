"""Sequence, attention and multi-input models: keras -> onnx and keras vs keras, end to end."""
import numpy as np
import pytest

import xvalidate
from xvalidate.worker import get_worker


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq_zoo")
    keras = get_worker("keras")
    names = ("text_classifier", "transformer_block", "two_inputs", "multi_output", "bidirectional_tagger")
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


def test_rnn_sequence_output_and_final_state_pair_with_the_onnx_node_outputs(zoo):
    """Keras GRU(return_sequences, return_state) is one layer with two outputs; ONNX has one GRU node
    whose Y (time-major) and Y_h become them."""
    report = xvalidate.validate(zoo["multi_output"], src="keras", dst="onnx", via="onnx", cache=False, batch=2)
    _all_paired_and_passing(report)
    rows = {r.src: r for r in report.layers}
    assert rows["gru:0"].transform == "TNC->NTC" and rows["gru:0"].dst_shape == (10, 2, 8)
    assert rows["gru:1"].transform is None and rows["gru:1"].dst_shape == (2, 8)
    assert rows["label"].dst == "label" and rows["value"].dst == "value"  # both model outputs compared
    assert [(o["src"], o["dst"], o["passed"]) for o in report.meta["outputs"]] == [
        ("label", "label", True), ("value", "value", True)]


def test_bidirectional_lstm_tagger_through_onnx(zoo):
    report = xvalidate.validate(zoo["bidirectional_tagger"], src="keras", dst="onnx", via="onnx", cache=False)
    _all_paired_and_passing(report)
    rows = {r.src: r for r in report.layers}
    assert rows["bilstm"].transform == "TNC->NTC" and rows["bilstm"].src_shape == (1, 12, 16)


@pytest.mark.parametrize("name", ["text_classifier", "transformer_block", "two_inputs", "multi_output"])
def test_keras_against_itself(zoo, name):
    report = xvalidate.compare(zoo[name], zoo[name], src="keras", dst="keras", batch=2)
    _all_paired_and_passing(report)
    # the same file on both sides; one side may run the traced capture, the other the eager one
    assert {r.match for r in report.layers} == {"name"} and report.layers[-1].metrics["max_abs"] < 1e-6


def test_run_refuses_a_bare_array_for_two_inputs(zoo):
    with pytest.raises(xvalidate.XValidateError, match=r"2 inputs \(left, right\); give a dict"):
        xvalidate.run("keras", zoo["two_inputs"], np.zeros((1, 8), np.float32))


def test_cli_takes_an_npz_of_named_inputs_and_names_a_bad_one(zoo, tmp_path):
    from click.testing import CliRunner

    from xvalidate.cli import main

    good, bad = tmp_path / "x.npz", tmp_path / "bad.npz"
    np.savez(good, left=np.ones((2, 8), np.float32), right=np.ones((2, 4), np.float32))
    np.savez(bad, left=np.ones((2, 8), np.float32), right=np.ones((2, 5), np.float32))
    ok = CliRunner().invoke(main, ["validate", zoo["two_inputs"], "--src", "keras", "--dst", "onnx", "--via", "onnx",
                                   "--input", str(good)])
    assert ok.exit_code == 0, ok.output
    captured = CliRunner().invoke(main, ["capture", zoo["two_inputs"], "--adapter", "keras", "--input", str(good)])
    assert captured.exit_code == 0 and "input (2, 8), (2, 4)" in captured.output, captured.output
    refused = CliRunner().invoke(main, ["compare", zoo["two_inputs"], zoo["two_inputs"], "--src", "keras", "--dst",
                                        "keras", "--input", str(bad)])
    assert refused.exit_code == 2 and "input 'right'" in refused.output and "Traceback" not in refused.output


def test_two_inputs_through_onnx_into_mxnet(zoo):
    """MXNet's symbol imported from ONNX has two data inputs; the route records both beside it."""
    report = xvalidate.validate(zoo["two_inputs"], src="keras", dst="mxnet", via="onnx", cache=False, batch=2)
    _all_paired_and_passing(report)
    infos = get_worker("mxnet").inputs_info(report.dst_model)
    assert [(i.name, i.shape) for i in infos] == [("left", (None, 8)), ("right", (None, 4))]


# ---------------------------------------------------------------- LSTM gate order (run in workers)
def keras_lstm(seed: int = 0) -> dict:
    """An LSTM(6, return_sequences) on (5, 3) inputs: its Keras weights, an input and its output."""
    from xvalidate.models.keras_zoo import _keras

    keras = _keras(seed)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(6, return_sequences=True, name="lstm")])
    model.layers[0].set_weights([w + np.random.default_rng(seed).normal(0, 0.3, w.shape).astype(np.float32)
                                 for w in model.layers[0].get_weights()])  # a bias that is not all 0/1
    x = np.random.default_rng(seed + 1).standard_normal((2, 5, 3)).astype(np.float32)
    kernel, recurrent, bias = model.layers[0].get_weights()
    return {"x": x, "kernel": kernel, "recurrent": recurrent, "bias": bias, "out": model(x).numpy()}


def swap_lstm_gates(onnx_path: str, out_path: str) -> str:
    """The converter bug: the ONNX LSTM's W, R and B blocks put back into Keras's i, f, c, o order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    inits = {i.name: i for i in model.graph.initializer}
    for name in [n for n in node.input[1:4] if n in inits]:
        arr = numpy_helper.to_array(inits[name])
        blocks = np.split(arr, 4 if name != node.input[3] else 8, axis=1)
        order = [0, 2, 3, 1]  # ONNX i, o, f, c -> Keras i, f, c, o
        blocks = [blocks[k] for k in order] + ([blocks[4 + k] for k in order] if len(blocks) == 8 else [])
        inits[name].CopyFrom(numpy_helper.from_array(np.concatenate(blocks, axis=1), name))
    onnx.save(model, out_path)
    return out_path


def lstm_node_weights(onnx_path: str) -> list:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n][0] for n in node.input[1:4]]  # the one direction of W, R, B


def _onnx_blocks(a: np.ndarray) -> np.ndarray:
    """Keras gate blocks (i, f, c, o) along the last axis -> ONNX (i, o, f, c) along the first."""
    i, f, c, o = np.split(a, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1).T


def test_numpy_lstm_matches_keras_and_names_a_swapped_gate_order():
    from xvalidate.core.causes.lstm_gates import describe, gate_order, lstm_forward

    k = get_worker("keras").call("test_sequence_models:keras_lstm")
    W, R = _onnx_blocks(k["kernel"]), _onnx_blocks(k["recurrent"])
    B = np.concatenate([_onnx_blocks(k["bias"][None])[:, 0], np.zeros(24)])
    seq, last, _ = lstm_forward(k["x"], W, R, B)
    np.testing.assert_allclose(seq, k["out"], rtol=1e-5, atol=1e-6)
    assert gate_order(k["x"], k["out"], W, R, B) is None  # right weights: no gate-order cause
    found = gate_order(k["x"], k["out"], k["kernel"].T, k["recurrent"].T, np.concatenate([k["bias"], np.zeros(24)]))
    assert found == "ifco" and "Keras's order" in describe(found)
    assert gate_order(k["x"], k["out"] + 1.0, W[::-1], R, B) is None  # nothing reproduces it: no claim


def test_planted_gate_order_fault_is_localized_to_the_lstm(zoo, tmp_path):
    from xvalidate.core.causes.lstm_gates import gate_order

    good = xvalidate.validate(zoo["text_classifier"], src="keras", dst="onnx", via="onnx", keep=str(tmp_path / "k"))
    bad = get_worker("onnx").call("test_sequence_models:swap_lstm_gates", good.artifacts["onnx"],
                                  str(tmp_path / "swapped.onnx"))
    # the route's pairing of the LSTM (its output is a Transpose, which name matching alone skips)
    lstm_dst = next(r.dst for r in good.layers if r.src == "lstm")
    report = xvalidate.compare(zoo["text_classifier"], bad, src="keras", dst="onnx", batch=2,
                               layer_map={"lstm": lstm_dst})
    assert not report.passed and report.first_divergence.src == "lstm"
    assert report.first_divergence.cause.startswith("LSTM gate order") and "(i, f, c, o)" in report.first_divergence.cause
    assert [r.src for r in report.layers if r.passed] == ["emb"]
    x = np.random.default_rng(3).integers(0, 100, (2, 20)).astype(np.int32)
    src = xvalidate.run("keras", zoo["text_classifier"], x, ["emb", "lstm"])
    W, R, B = get_worker("onnx").call("test_sequence_models:lstm_node_weights", bad)
    assert gate_order(src["emb"], src["lstm"], W, R, B) == "ifco"


def save_gluon_embedding(prefix: str) -> str:
    """A Gluon Embedding(30, 4) -> Dense(2) exported, run once on token ids (in the mxnet worker)."""
    import mxnet as mx

    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Embedding(30, 4), mx.gluon.nn.Dense(2, flatten=True))
    net.initialize(mx.init.Normal(0.5))
    net.hybridize()
    net(mx.nd.array(np.zeros((1, 7))))
    net.export(prefix)
    from xvalidate_adapters.mxnet import write_input_hint

    write_input_hint(prefix + "-symbol.json", None, [None, 7], "NC")
    return prefix + "-symbol.json"


def test_mxnet_embedding_input_gets_token_ids(tmp_path):
    symbol = get_worker("mxnet").call("test_sequence_models:save_gluon_embedding", str(tmp_path / "emb"))
    (info,) = get_worker("mxnet").inputs_info(symbol)
    assert (info.shape, info.value_range, info.layout) == ((None, 7), (0, 30), "NC")
    report = xvalidate.compare(symbol, symbol, src="mxnet", dst="mxnet", batch=3)
    assert report.passed and report.inputs["range"] == [0, 30]


def test_a_layer_map_onto_the_raw_onnx_lstm_output(zoo, tmp_path):
    """Mapped by hand onto the ONNX LSTM node's own Y (time, directions, batch, hidden) and Y_h, the Keras
    LSTM's sequence output is compared through the rnn transforms."""
    report = xvalidate.validate(zoo["text_classifier"], src="keras", dst="onnx", via="onnx", keep=str(tmp_path / "k"))
    lstm = get_worker("onnx").call("test_sequence_models:lstm_outputs", report.artifacts["onnx"])
    mapped = xvalidate.compare(zoo["text_classifier"], report.artifacts["onnx"], src="keras", dst="onnx", batch=2,
                               layer_map={"lstm": lstm[0]})
    row = next(r for r in mapped.layers if r.src == "lstm")
    assert row.passed and row.transform == "rnn:TDNC->NTC" and row.dst_shape == (20, 1, 2, 32)


def lstm_outputs(onnx_path: str) -> list:
    import onnx

    return list(next(n for n in onnx.load(onnx_path).graph.node if n.op_type == "LSTM").output)


def save_bidirectional_states(path: str) -> str:
    """Bidirectional(LSTM(return_sequences, return_state)) whose forward and backward h are used."""
    from xvalidate.models.keras_zoo import _keras

    keras = _keras(0)
    layers = keras.layers
    x_in = keras.Input((6, 4), name="seq")
    out, fh, fc, bh, bc = layers.Bidirectional(layers.LSTM(5, return_sequences=True, return_state=True), name="bi")(x_in)
    head = layers.Dense(2, name="head")(layers.Concatenate(name="states")([fh, bh]))
    keras.Model(x_in, [head, layers.GlobalAveragePooling1D(name="pool")(out)]).save(path)
    return path


def test_bidirectional_states_pair_with_their_direction(tmp_path):
    """ONNX keeps both directions' h in one Y_h; tf2onnx's Slice of direction d is Keras's forward
    (d=0) or backward (d=1) h. (The c states, unused here, have no such slice in the graph.)"""
    h5 = get_worker("keras").call("test_sequence_models:save_bidirectional_states", str(tmp_path / "bi.h5"))
    report = xvalidate.validate(h5, src="keras", dst="onnx", via="onnx", cache=False, batch=2)
    rows = {r.src: r for r in report.layers}
    assert all(rows[name].passed and rows[name].match == "name" for name in ("bi:0", "bi:1", "bi:3", "head"))
    assert rows["bi:1"].dst != rows["bi:3"].dst and rows["bi:0"].transform == "TNC->NTC"
