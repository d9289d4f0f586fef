import pytest

from xvalidate.core.align import align, normalize
from xvalidate.errors import UnknownLayerError
from xvalidate_adapters.base import LayerInfo


def L(name, kinds, shape=None, inputs=(), op="op"):
    return LayerInfo(name=name, op=op, shape=shape, kinds=list(kinds), inputs=list(inputs))


KERAS_SEED2 = [
    L("block1_conv1", ["conv", "relu"], (None, 80, 120, 128)),
    L("max_pooling2d", ["maxpool"], (None, 40, 60, 128), ["block1_conv1"]),
    L("block2_conv1", ["conv", "relu"], (None, 40, 60, 256), ["max_pooling2d"]),
    L("max_pooling2d_1", ["maxpool"], (None, 20, 30, 256), ["block2_conv1"]),
    L("flatten", ["flatten"], (None, 153600), ["max_pooling2d_1"]),
    L("final_fully_connected", ["dense", "softmax"], (None, 2), ["flatten"]),
]


def gluon_port(softmax=True, pad=1):
    h, w = (80, 120) if pad else (78, 118)
    layers = [
        L("hybridsequential0_conv0_fwd", ["conv"], (None, 128, h, w)),
        L("hybridsequential0_conv0_relu_fwd", ["relu"], (None, 128, h, w), ["hybridsequential0_conv0_fwd"]),
        L("hybridsequential0_pool0_fwd", ["maxpool"], (None, 128, h // 2, w // 2), ["hybridsequential0_conv0_relu_fwd"]),
        L("hybridsequential0_conv1_fwd", ["conv"], (None, 256, 40, 60), ["hybridsequential0_pool0_fwd"]),
        L("hybridsequential0_conv1_relu_fwd", ["relu"], (None, 256, 40, 60), ["hybridsequential0_conv1_fwd"]),
        L("hybridsequential0_pool1_fwd", ["maxpool"], (None, 256, 20, 30), ["hybridsequential0_conv1_relu_fwd"]),
        L("hybridsequential0_flatten0_flatten0", ["flatten"], (None, 153600), ["hybridsequential0_pool1_fwd"]),
        L("hybridsequential0_dense0_fwd", ["dense"], (None, 2), ["hybridsequential0_flatten0_flatten0"]),
    ]
    if softmax:
        layers.append(L("hybridsequential0_hybridlambda0_softmax0", ["softmax"], (None, 2), ["hybridsequential0_dense0_fwd"]))
    return layers


def pairs(alignment):
    return {p.src: (p.dst, p.match) for p in alignment.pairs}


def test_gluon_port_pairs_every_keras_layer_structurally():
    got = pairs(align(KERAS_SEED2, gluon_port()))
    assert got["block1_conv1"] == ("hybridsequential0_conv0_relu_fwd", "structural")
    assert got["flatten"][0] == "hybridsequential0_flatten0_flatten0"
    assert got["final_fully_connected"][0] == "hybridsequential0_hybridlambda0_softmax0"
    assert all(dst is not None for dst, _ in got.values())


def test_port_without_softmax_pairs_the_dense_with_the_keras_dense_softmax_layer():
    alignment = align(KERAS_SEED2, gluon_port(softmax=False))
    assert pairs(alignment)["final_fully_connected"][0] == "hybridsequential0_dense0_fwd"


def test_structural_pair_with_impossible_shapes_is_refused_with_a_reason():
    alignment = align(KERAS_SEED2, gluon_port(pad=0))
    got = pairs(alignment)
    assert got["block1_conv1"] == (None, "none")
    assert alignment.rejected["block1_conv1"].startswith("hybridsequential0_conv0")
    assert "no layout makes them comparable" in alignment.reasons["block1_conv1"]


def test_mmdnn_names_and_fused_activation():
    src = [L("conv1", ["conv", "relu"]), L("add_1", ["add"], inputs=["conv1"]), L("fc1000", ["dense", "softmax"])]
    dst = [L("conv1", ["conv"]), L("conv1_activation", ["relu"], inputs=["conv1"]),
           L("broadcast_add0", ["add"], inputs=["conv1_activation"]),
           L("fc1000", ["dense"], inputs=["broadcast_add0"]), L("fc1000_activation", ["softmax"], inputs=["fc1000"])]
    got = pairs(align(src, dst))
    assert got["conv1"] == ("conv1_activation", "name")
    assert got["fc1000"] == ("fc1000_activation", "name")
    assert got["add_1"] == ("broadcast_add0", "structural")


def test_tf2onnx_names_and_folded_batchnorm():
    src = [L("conv1_conv", ["conv"]), L("conv1_bn", ["bn"]), L("conv1_relu", ["relu"]), L("pool", ["maxpool"])]
    dst = [L("model/conv1_conv/BiasAdd:0", ["conv"]), L("model/conv1_relu/Relu:0", ["relu"]),
           L("model/pool/MaxPool:0", ["maxpool"])]
    got = pairs(align(src, dst))
    assert got["conv1_conv"] == (None, "none")
    assert got["conv1_bn"] == ("model/conv1_conv/BiasAdd:0", "fused")
    assert got["conv1_relu"] == ("model/conv1_relu/Relu:0", "normalized")


def test_route_hints_and_layer_map_win():
    src = [L("a", ["conv"]), L("b", ["relu"])]
    dst = [L("x", ["conv"]), L("y", ["relu"]), L("a", ["relu"])]
    got = pairs(align(src, dst, layer_map={"b": "y"}, hints={"x": ("a", "fused")}))
    assert got == {"a": ("x", "fused"), "b": ("y", "layer_map")}


def test_unknown_layer_in_layer_map_names_it():
    with pytest.raises(UnknownLayerError, match="'nope'"):
        align([L("a", ["conv"])], [L("x", ["conv"])], layer_map={"a": "nope"})


def test_unpaired_tensors_are_listed_not_dropped():
    src = [L("a", ["conv"]), L("b", ["tanh"])]
    dst = [L("x", ["conv"]), L("z", ["concat"])]
    alignment = align(src, dst)
    assert alignment.unmatched_src == ["b"] or pairs(alignment)["b"][0] is None
    assert "z" in alignment.unmatched_dst


def test_normalize_only_lowercases_and_trims_the_naming_rules_live_with_their_owners():
    """The core knows no framework's suffixes: the mxnet adapter strips Gluon's `_fwd` and MXNet's
    `_output`, the onnx route TensorFlow's `:0` (tf2onnx), the mmdnn route `_activation`."""
    from xvalidate.naming import pairing_names
    from xvalidate.routes.mmdnn import MMdnnRoute
    from xvalidate.routes.onnx import OnnxRoute
    from xvalidate_adapters.mxnet import MXNetAdapter

    assert normalize("/Model/Conv1_") == "model/conv1" and normalize("resnetv10_conv0_fwd") == "resnetv10_conv0_fwd"
    assert MXNetAdapter().pairing_name("resnetv10_conv0_fwd_output") == "resnetv10_conv0"
    assert OnnxRoute().pairing_name("model/conv1/Relu:0") == "model/conv1/Relu"
    assert MMdnnRoute().pairing_name("fc1000_activation") == "fc1000"
    assert pairing_names("mxnet", "mmdnn")("fc1000_activation_output") == ["fc1000_activation", "fc1000"]
    assert "fc1000" in pairing_names("mxnet")("fc1000_activation")  # no route: every route writing mxnet models


def test_a_route_naming_rule_pairs_only_where_it_is_given():
    from xvalidate.naming import pairing_names

    src = [L("stem", ["conv"]), L("head", ["dense"], inputs=["stem"])]
    dst = [L("stem_activation", ["relu"]), L("x1", ["softmax"], inputs=["stem_activation"]),
           L("head_fwd", ["dense"], inputs=["x1"])]
    assert pairs(align(src, dst))["stem"] == (None, "none")  # relu is no conv: structure cannot pair it
    got = pairs(align(src, dst, dst_names=pairing_names("mxnet", "mmdnn")))
    assert got == {"stem": ("stem_activation", "normalized"), "head": ("head_fwd", "normalized")}


def _inception(order, channels=(16, 16)):
    """Keras-named branches joined by a concat; `order` lists branch b first when "ba"."""
    stem = L("stem", ["conv", "relu"], (None, 8, 8, 4))
    a = [L("a_conv", ["conv"], (None, 8, 8, channels[0]), ["stem"]), L("a_relu", ["relu"], (None, 8, 8, channels[0]), ["a_conv"])]
    b = [L("b_conv", ["conv"], (None, 8, 8, channels[1]), ["stem"]), L("b_relu", ["relu"], (None, 8, 8, channels[1]), ["b_conv"])]
    join = L("join", ["concat"], (None, 8, 8, sum(channels)), ["a_relu", "b_relu"])
    return [stem, *(a + b if order == "ab" else b + a), join]


def _gluon(layers):
    """The same graph in NCHW with Gluon-style names that tell nothing."""
    names = {info.name: f"net0_op{i}" for i, info in enumerate(layers)}
    return [L(names[i.name], i.kinds, (None, i.shape[3], i.shape[1], i.shape[2]), [names[n] for n in i.inputs])
            for i in layers], names


@pytest.mark.parametrize("channels", [(16, 16), (16, 64)])
def test_branches_listed_in_another_order_pair_by_what_the_concat_joins(channels):
    dst, names = _gluon(_inception("ba", channels))
    got = pairs(align(_inception("ab", channels), dst))
    for layer in ("a_conv", "a_relu", "b_conv", "b_relu", "join"):
        assert got[layer] == (names[layer], "structural"), (layer, got[layer])


def test_a_structural_pair_must_descend_from_its_inputs_partners():
    src = [L("x", ["conv"], (None, 4, 4, 8)), L("y", ["conv"], (None, 4, 4, 8)),
           L("x_relu", ["relu"], (None, 4, 4, 8), ["x"]), L("y_relu", ["relu"], (None, 4, 4, 8), ["y"])]
    dst = [L("x", ["conv"], (None, 8, 4, 4)), L("y", ["conv"], (None, 8, 4, 4)),
           L("r0", ["relu"], (None, 8, 4, 4), ["y"]), L("r1", ["relu"], (None, 8, 4, 4), ["x"])]
    alignment = align(src, dst)
    got = pairs(alignment)
    assert got["x_relu"] == ("r1", "structural") and got["y_relu"] == ("r0", "structural")


def test_every_unmatched_source_layer_has_a_reason():
    src = [L("conv", ["conv"], (None, 4, 4, 8)), L("bn", ["bn"], (None, 4, 4, 8), ["conv"]),
           L("drop", ["dropout"], (None, 4, 4, 8), ["bn"]), L("r1", ["relu"], (None, 4, 4, 8), ["drop"]),
           L("r2", ["relu"], (None, 4, 4, 8), ["drop"]), L("odd", ["other"], (None, 3), ["r2"]),
           L("pad", ["pad"], (None, 6, 6, 8), ["r1"])]
    dst = [L("model/conv/Conv2D:0", ["conv"], (None, 8, 4, 4)), L("model/r1/Relu:0", ["relu"], (None, 8, 4, 4),
           ["model/conv/Conv2D:0"])]
    alignment = align(src, dst, hints={"model/conv/Conv2D:0": ("bn", "fused"), "model/r1/Relu:0": ("r1", "name")})
    assert set(alignment.reasons) == set(alignment.unmatched_src) == {"conv", "drop", "r2", "odd", "pad"}
    assert "merged into the op after it" in alignment.reasons["pad"]
    assert "folded into the layer after it" in alignment.reasons["conv"]
    assert "does nothing at inference" in alignment.reasons["drop"]
    assert "computes it once" in alignment.reasons["r2"] and "'r1'" in alignment.reasons["r2"]
    assert "no destination tensor" in alignment.reasons["odd"]


def test_an_unread_output_of_a_multi_output_layer_is_never_paired_by_structure():
    src = [L("emb", ["other"], (None, 5, 8)), L("lstm:0", ["other"], (None, 5, 4), ["emb"]),
           L("lstm:1", ["other"], (None, 4), ["emb"]), L("lstm:2", ["other"], (None, 4), ["emb"]),
           L("dense", ["dense"], (None, 3), ["lstm:1"])]
    dst = [L("e", ["other"], (None, 5, 8)), L("y", ["other"], (None, 5, 4), ["e"]), L("yh", ["other"], (None, 4), ["e"]),
           L("other_state", ["other"], (None, 4), ["e"]), L("d", ["dense"], (None, 3), ["yh"])]
    alignment = align(src, dst)
    got = pairs(alignment)
    assert got["lstm:2"] == (None, "none")
    assert alignment.reasons["lstm:2"] == ("an output of a multi-output layer that nothing reads: the destination need "
                                           "not compute it, and no name or hint pairs it")
    assert got["lstm:1"][0] == "yh" and got["dense"][0] == "d"
