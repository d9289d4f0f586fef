"""Gluon models built in code with seeded weights (pretrained=False). Run inside an MXNet worker."""
from __future__ import annotations


def save_resnet18(prefix: str, input_shape: tuple = (1, 3, 224, 224), seed: int = 0) -> str:
    """Export mxnet.gluon.model_zoo's resnet18_v1 (Xavier init, seeded) to `<prefix>-symbol.json`
    and `<prefix>-0000.params`; return the symbol path."""
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(seed)
    with mx.name.NameManager():  # resnetv10_* names in any process
        net = vision.resnet18_v1(pretrained=False)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros(input_shape))
    net.export(prefix)
    return prefix + "-symbol.json"
