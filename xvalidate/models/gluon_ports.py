"""Hand ports to Gluon of the seed-2 Keras CNN (`keras_zoo.seed2_cnn`), right and wrong.

Every port is the seed's architecture in NCHW with Gluon's default names
(hybridsequential0_conv0, ...): Conv2D 128 3x3 relu, MaxPool 2/2, Conv2D 256
3x3 relu, MaxPool 2/2, Flatten, Dense 2, and the Keras weights copied in by
`xvalidate.transfer.transfer_weights`. The kinds:

- "right":     padding 1 (Keras 'same'), softmax at the end, Dense rows permuted for the NCHW flatten;
- "pad0":      padding 0, the seed's first mistake. The maps shrink to 78x118 -> 39x59 -> 37x57 -> 18x28,
               so the Dense has 18*28*256 = 129024 in-features against Keras's 20*30*256 = 153600: only the
               two convolutions get the Keras weights, the Dense keeps Gluon's default initialization
               (seeded, so every build is the same);
- "nosoftmax": as right without the final softmax (none of Gluon's Dense activations is a softmax);
- "noperm":    as right with the Dense weights copied without the flatten permutation.

Run these inside an MXNet worker (they import mxnet).
"""
from __future__ import annotations

from xvalidate.errors import OptionError
from xvalidate.transfer import read_keras_weights, transfer_weights

PORTS = ("right", "pad0", "nosoftmax", "noperm")


def architecture(kind: str):
    """The Gluon block of port `kind` (one of PORTS), its parameters not initialized."""
    import mxnet as mx
    from mxnet.gluon import nn

    if kind not in PORTS:
        raise OptionError(f"port kind {kind!r} is unknown; expected one of {', '.join(PORTS)}")
    pad = 0 if kind == "pad0" else 1
    with mx.name.NameManager():  # fresh counters: the block is hybridsequential0 in any process
        net = nn.HybridSequential()
        with net.name_scope():
            net.add(nn.Conv2D(128, kernel_size=3, padding=pad, activation="relu"),
                    nn.MaxPool2D(pool_size=2, strides=2),
                    nn.Conv2D(256, kernel_size=3, padding=pad, activation="relu"),
                    nn.MaxPool2D(pool_size=2, strides=2),
                    nn.Flatten(),
                    nn.Dense(2))
            if kind != "nosoftmax":
                net.add(nn.HybridLambda("softmax"))
    return net


def build_port(kind: str, keras_h5: str, seed: int = 0):
    """The Gluon port `kind` (one of PORTS) of the seed-2 CNN saved at `keras_h5`, with its weights, hybridized."""
    import mxnet as mx

    net = architecture(kind)
    keras = read_keras_weights(keras_h5)
    mx.random.seed(seed)
    net.initialize()
    if kind == "pad0":
        convs = [layer.name for layer in keras.layers if layer.kind == "conv"]
        transfer_weights(keras, net[:4], layers=convs)  # net[:4]: conv, pool, conv, pool
        net(mx.nd.zeros(keras.nchw_input_shape))  # initializes the Dense
    else:
        transfer_weights(keras, net, permute_flatten=kind != "noperm")
    net.hybridize()
    return net


def save_port(kind: str, keras_h5: str, prefix: str, seed: int = 0) -> str:
    """Build port `kind` and export it to `<prefix>-symbol.json` and `<prefix>-0000.params`; return the symbol path."""
    import mxnet as mx

    net = build_port(kind, keras_h5, seed)
    net(mx.nd.zeros(read_keras_weights(keras_h5).nchw_input_shape))  # export needs one hybridized forward
    net.export(prefix)
    return f"{prefix}-symbol.json"
