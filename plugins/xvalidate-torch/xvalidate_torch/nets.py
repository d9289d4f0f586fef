"""Small torch networks built in code, seeded, for the plugin's tests and docs (plain torch: no
torchvision). Each sets `input_shape` (without the batch), which the adapter reads."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """A ResNet basic block: conv-bn-relu-conv-bn, plus the shortcut (1x1 conv when the shape changes), relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNetSmall(nn.Module):
    """A ResNet-style net: stem conv/bn/relu/maxpool, four basic blocks over three widths, global pool, fc."""

    input_shape = (3, 64, 64)

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Seed2CNN(nn.Module):
    """The seed-2 CNN in PyTorch: input 3x80x120, Conv 128 and 256 ('same' padding, relu), one max
    pool reused after each, Flatten, Dense softmax."""

    input_shape = (3, 80, 120)

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 128, 3, padding=1)
        self.conv2 = nn.Conv2d(128, 256, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(256 * 20 * 30, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return F.softmax(self.fc(self.flatten(x)), dim=1)


class ConvBnDwNet(nn.Module):
    """A port of a small Keras model (input 16x16x3): Conv2D 8 'same', BatchNormalization, relu,
    DepthwiseConv2D 3x3 'same' with depth multiplier 2, BatchNormalization, relu, Flatten, Dense 5.
    BatchNorm eps is Keras's default, 1e-3."""

    input_shape = (3, 16, 16)

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.bn2 = nn.BatchNorm2d(16, eps=1e-3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 16 * 16, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv(x)))
        x = F.relu(self.bn2(self.dw(x)))
        return self.fc(self.flatten(x))


def seeded(net: nn.Module, seed: int = 0) -> nn.Module:
    """`net` with seeded weights and randomized BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
            if module.bias is not None:
                nn.init.normal_(module.bias, std=0.05)
        elif isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return net.eval()


def build(name: str, seed: int = 0) -> nn.Module:
    """"resnet_small" or "seed2_cnn", seeded."""
    return seeded({"resnet_small": ResNetSmall, "seed2_cnn": Seed2CNN}[name](), seed)


def save(name: str, path: str, seed: int = 0) -> str:
    """Build `name` and save it as a torch.export .pt2 at `path` (run in a torch worker)."""
    net = build(name, seed)
    x = torch.zeros((2, *net.input_shape))
    program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, path)
    return path
