"""Input layouts read from an ONNX graph, token ranges from its Gather tables, time-major RNN outputs.
The graphs are built and read in the onnx worker."""
import numpy as np
import pytest

from xvalidate.core import layout
from xvalidate.worker import get_worker


# ---------------------------------------------------------------- run in the onnx worker
def input_of(case: str) -> tuple:
    """(layout, guessed, dtype, value_range) of the input of a small hand-built graph."""
    from onnx import TensorProto, helper, numpy_helper

    from xvalidate_adapters.onnx import OnnxAdapter, OnnxModel

    node, elem, inits = helper.make_node, TensorProto.FLOAT, []
    if case == "sequence":
        shape, nodes = ["N", 16, 32], [node("Relu", ["x"], ["y"])]
    elif case == "conv1d":
        shape, nodes = ["N", 32, 16], [node("Unsqueeze", ["x"], ["u"], axes=[2]), node("Conv", ["u", "w"], ["y"])]
    elif case == "tf2onnx_conv1d":
        shape, nodes = ["N", 24, 12], [node("Unsqueeze", ["x"], ["u"], axes=[1]),
                                       node("Transpose", ["u"], ["t"], perm=[0, 3, 1, 2]), node("Conv", ["t", "w"], ["y"])]
    elif case == "tf2onnx_image":
        shape, nodes = ["N", 8, 8, 16], [node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
                                         node("MaxPool", ["t"], ["y"], kernel_shape=[2, 2])]
    elif case == "unexplained_image":
        shape, nodes = ["N", 32, 32, 3], [node("Mul", ["x", "x"], ["y"])]
    elif case == "tokens":
        shape, elem = ["N", 20], TensorProto.INT32
        inits = [numpy_helper.from_array(np.zeros((57, 4), np.float32), "table")]
        nodes = [node("Cast", ["x"], ["c"], to=TensorProto.INT64), node("Gather", ["table", "c"], ["y"])]
    else:  # a boolean mask
        shape, elem, nodes = ["N", 20], TensorProto.BOOL, [node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    (info,) = OnnxAdapter().inputs_info(OnnxModel(helper.make_model(graph), "test.onnx"))
    return info.layout, info.layout_guessed, info.dtype, info.value_range


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("case, expected", [
    ("sequence", ("NWC", False)),          # read by attention or RNN ops: (batch, time, features)
    ("conv1d", ("NCW", False)),            # a Conv reads it (through Unsqueeze): channels-first
    ("tf2onnx_conv1d", ("NWC", False)),    # tf2onnx's transpose before the Conv: channels-last
    ("tf2onnx_image", ("NHWC", False)),
    ("unexplained_image", ("NHWC", True)),  # nothing in the graph says: a guess from the shape, reported
])
def test_input_layout_from_the_graph(case, expected):
    assert tuple(get_worker("onnx").call("test_inputs_layout:input_of", case)[:2]) == expected


def test_token_ids_range_from_the_gather_table_and_masks_are_zero_one():
    assert tuple(get_worker("onnx").call("test_inputs_layout:input_of", "tokens")) == ("NC", False, "int32", (0, 57))
    assert get_worker("onnx").call("test_inputs_layout:input_of", "mask")[2:] == ("bool", (0, 2))


def test_time_major_rnn_output_back_to_batch_major():
    src = np.arange(2 * 5 * 3).reshape(2, 5, 3).astype(np.float32)  # (batch, time, features)
    dst = src.transpose(1, 0, 2)
    assert "TNC->NTC" in layout.candidates(src.shape, dst.shape)
    assert np.array_equal(layout.apply("TNC->NTC", dst), src)


def test_raw_onnx_rnn_outputs_to_the_keras_layout():
    seq = np.arange(2 * 5 * 6).reshape(2, 5, 6).astype(np.float32)  # (batch, time, 2 directions x 3 hidden)
    y = seq.reshape(2, 5, 2, 3).transpose(1, 2, 0, 3)  # ONNX Y: (time, directions, batch, hidden)
    assert layout.candidates(seq.shape, y.shape) == ["rnn:TDNC->NTC"]
    assert np.array_equal(layout.apply("rnn:TDNC->NTC", y), seq)
    state = seq[:, -1]  # (batch, 2 x 3)
    y_h = state.reshape(2, 2, 3).transpose(1, 0, 2)  # ONNX Y_h: (directions, batch, hidden)
    assert layout.candidates(state.shape, y_h.shape) == ["rnn:DNC->NC"]
    assert np.array_equal(layout.apply("rnn:DNC->NC", y_h), state)
