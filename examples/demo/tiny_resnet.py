"""The demo model, tiny_resnet.pt, as an eager PyTorch module, for
scripts/precisiond-export.py (`make demo-aoti`):

    precisiond-export.py examples/demo/tiny_resnet.py --name tiny_resnet --out-dir DIR

Defines at top level `model` (eval mode) and `example_inputs`. The
architecture is the one scripts/make_fixtures.py scripts into
tiny_resnet.pt: its torchvision-style ResNet restricted to BasicBlock, with
layers [2, 1, 1, 1], every stage 48 channels wide and 10 classes, on
[1, 3, 224, 224] float32 inputs. The weights are not re-created here but
loaded from tiny_resnet.pt next to this file (strict: every parameter and
buffer must match by name and shape), so the AOTInductor packages exported
from this file and the TorchScript file are the same model.

Running this file directly checks that: eager and TorchScript outputs on
random inputs are compared and the largest difference printed.
"""

import os
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

HERE = os.path.dirname(os.path.abspath(__file__))
TORCHSCRIPT = os.path.join(HERE, "tiny_resnet.pt")
INPUT_SHAPE = (1, 3, 224, 224)


# Same module names as scripts/make_fixtures.py (and torchvision) for every
# module with weights or buffers, so that the TorchScript file's state_dict
# loads unchanged. One difference, with no effect on the numbers:
# BasicBlock's two ReLUs are two modules (relu1, relu2) where make_fixtures.py
# calls one `relu` twice. ReLU has no state, and a module called twice makes
# torchao's X86InductorQuantizer (INT8) fail on the conv + add + ReLU
# pattern with "Input partition has more than one output node".

def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu2(out)


class ResNet(nn.Module):
    def __init__(self, layers: List[int], num_classes: int,
                 widths: Tuple[int, int, int, int]) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def build() -> nn.Module:
    m = ResNet([2, 1, 1, 1], num_classes=10, widths=(48, 48, 48, 48))
    state = torch.jit.load(TORCHSCRIPT, map_location="cpu").state_dict()
    m.load_state_dict(state, strict=True)
    return m.eval()


model = build()
# Seeded, so that re-exports check their packages on the same input.
example_inputs = (torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(0)),)


if __name__ == "__main__":
    scripted = torch.jit.load(TORCHSCRIPT, map_location="cpu").eval()
    torch.manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for _ in range(5):
            x = torch.randn(*INPUT_SHAPE)
            worst = max(worst, (model(x) - scripted(x)).abs().max().item())
    print(f"eager vs TorchScript ({TORCHSCRIPT}): max abs diff {worst:.3g} over 5 random inputs")
    raise SystemExit(0 if worst <= 1e-5 else 1)
