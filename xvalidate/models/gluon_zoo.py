"""Gluon models built in code with seeded weights (pretrained=False). Run inside an MXNet worker."""
from __future__ import annotations

# Every vision net of mxnet.gluon.model_zoo (MXNet 1.9.1), as `vision.get_model` names them.
VISION_NETS = (
    "alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "inceptionv3",
    "mobilenet0.25", "mobilenet0.5", "mobilenet0.75", "mobilenet1.0",
    "mobilenetv2_0.25", "mobilenetv2_0.5", "mobilenetv2_0.75", "mobilenetv2_1.0",
    "resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1", "resnet152_v1",
    "resnet18_v2", "resnet34_v2", "resnet50_v2", "resnet101_v2", "resnet152_v2",
    "squeezenet1.0", "squeezenet1.1",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
)


def input_shape(name: str) -> tuple[int, int, int, int]:
    """The NCHW input shape (batch 1) a model-zoo net is built for."""
    return (1, 3, 299, 299) if name == "inceptionv3" else (1, 3, 224, 224)


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


def save(name: str, prefix: str, seed: int = 0) -> str:
    """Export model-zoo net `name` (pretrained=False, Xavier init, seeded, BatchNorm statistics
    randomized) to `<prefix>-symbol.json` + `<prefix>-0000.params`; return the symbol path."""
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    if name not in VISION_NETS:
        raise ValueError(f"unknown model-zoo net {name!r}; expected one of {', '.join(VISION_NETS)}")
    mx.random.seed(seed)
    with mx.name.NameManager():
        net = vision.get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros(input_shape(name)))
    randomize_batchnorm(net, seed)
    net.export(prefix)
    return prefix + "-symbol.json"


def randomize_batchnorm(net, seed: int = 0) -> int:
    """Random running statistics and affine parameters for every BatchNorm of a Gluon net (fresh
    ones are mean 0 / variance 1, which hides BatchNorm conversion errors). Returns the count."""
    import mxnet as mx
    import numpy as np

    rng = np.random.default_rng(seed)
    draws = {"running_var": lambda s: rng.uniform(0.5, 1.5, s), "running_mean": lambda s: rng.normal(0.0, 0.1, s),
             "gamma": lambda s: rng.uniform(0.8, 1.2, s), "beta": lambda s: rng.normal(0.0, 0.05, s)}
    count = 0
    for block in _blocks(net):
        if not isinstance(block, mx.gluon.nn.BatchNorm):
            continue
        for param in block.collect_params().values():
            kind = next(k for k in draws if param.name.endswith(k))
            param.set_data(mx.nd.array(draws[kind](param.shape).astype("float32")))
        count += 1
    return count


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)
