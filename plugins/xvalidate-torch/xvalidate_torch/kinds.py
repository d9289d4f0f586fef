"""Framework-neutral op kinds (xvalidate_adapters.base.KINDS) of torch modules and functions."""
from __future__ import annotations

from typing import Any

MODULE_KINDS = {
    "Conv1d": "conv", "Conv2d": "conv", "Linear": "dense", "BatchNorm1d": "bn", "BatchNorm2d": "bn",
    "ReLU": "relu", "ReLU6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
    "SiLU": "swish", "GELU": "act", "LeakyReLU": "act", "ELU": "act", "Hardswish": "act",
    "MaxPool1d": "maxpool", "MaxPool2d": "maxpool", "AvgPool1d": "avgpool", "AvgPool2d": "avgpool",
    "AdaptiveAvgPool2d": "gpool", "AdaptiveAvgPool1d": "gpool", "Flatten": "flatten", "Dropout": "dropout",
    "Identity": "identity", "ZeroPad2d": "pad", "ConstantPad2d": "pad",
}
CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def module_kinds(module: Any, op: str | None = None) -> list[str]:
    """The kinds of one module call (`op`: its class name, when `module` stands in for it); a
    convolution with one group per input channel is "dwconv"."""
    op = op or type(module).__name__
    kind = MODULE_KINDS.get(op, "other")
    groups, channels = getattr(module, "groups", 1), getattr(module, "in_channels", 0)
    if kind == "conv" and groups > 1 and groups == channels:
        kind = "dwconv"
    return [kind]


def module_attrs(module: Any) -> dict[str, Any]:
    """Small facts for the diagnosis: kernel, strides, padding, units, epsilon."""
    attrs: dict[str, Any] = {}
    for ours, theirs in (("kernel", "kernel_size"), ("strides", "stride"), ("padding", "padding"),
                         ("units", "out_features"), ("epsilon", "eps"), ("groups", "groups")):
        value = getattr(module, theirs, None)
        if isinstance(value, (int, float, str, tuple)):
            attrs[ours] = list(value) if isinstance(value, tuple) else value
    return attrs
