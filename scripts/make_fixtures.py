#!/usr/bin/env python3
"""Generate the TorchScript test fixtures, the demo model and calibration data.

Run from the repository root:

    PYTHONPATH=$HOME/.cache/precisiond/torch-2.13.0 python3 scripts/make_fixtures.py
    PYTHONPATH=... python3 scripts/make_fixtures.py --resnet18-only OUTDIR

The default mode writes (all committed to git, so everything stays small):

  tests/fixtures/models/*.pt (+ *.pt.toml settings files where needed)
  tests/fixtures/calib/cnn_residual_pt/sample_0{0..3}.pt   (torch.save)
  tests/fixtures/calib/cnn_residual_npy/sample_0{0..3}.npy (numpy.save)
  tests/fixtures/calib/bad/{wrong_shape.npy,wrong_dtype.npy,unreadable.pt}
  examples/demo/tiny_resnet.pt

``--resnet18-only OUTDIR`` writes only OUTDIR/resnet18.pt: torchvision's
ResNet-18 (written out by hand here, torchvision is not needed), random init,
about 46 MB. It is NOT committed; benchmarks generate it on demand.

Every model is put in eval mode, compiled with torch.jit.script (or traced,
as the libraries of the traced fixtures save such models, and
traced_float_constant.pt on purpose: tracing bakes a float32 constant into
it) and saved with torch.jit.save. Generation is
deterministic: every model and data file is built right after its own
torch.manual_seed call, so files do not depend on the order they are made in,
and the script re-executes itself with PYTHONHASHSEED=0 because TorchScript
serializes module constants in (hash-randomized) set order. Rerunning it
reproduces byte-identical files with the same torch version.

After writing, each model is reloaded with torch.jit.load and run on a test
input in fp32 and, after `.to(torch.bfloat16)`, in bf16; name, size, output
shape and any failure are printed. The exit status is 1 if any check fails.
"""

import argparse
import os
import sys
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS_DIR = os.path.join(REPO, "tests", "fixtures", "models")
CALIB_DIR = os.path.join(REPO, "tests", "fixtures", "calib")
DEMO_DIR = os.path.join(REPO, "examples", "demo")

# 4 rather than 8 calibration samples per folder: one float32 [1,3,224,224]
# tensor is 588 KiB, and these folders are committed.
NUM_CALIB_SAMPLES = 4

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------
# torchvision-style ResNet (names match torchvision.models.resnet exactly)
# --------------------------------------------------------------------------

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
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet restricted to BasicBlock, with
    configurable stage widths so that tiny variants can share the code."""

    def __init__(self, layers: List[int], num_classes: int = 1000,
                 widths: Tuple[int, int, int, int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
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

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

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

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def randomize_bn(model: nn.Module) -> None:
    """Give BatchNorm layers non-trivial running stats / affine params so that
    eval-mode numerics are not the identity (makes precision diffs visible)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)


# --------------------------------------------------------------------------
# Fixture models
# --------------------------------------------------------------------------

class CnnResidual(nn.Module):
    """Stride-2 stem + two basic blocks (second one downsamples) + GAP + fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.block1 = BasicBlock(8, 8)
        self.block2 = BasicBlock(8, 16, stride=2, downsample=nn.Sequential(
            conv1x1(8, 16, 2), nn.BatchNorm2d(16)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.block1(x)
        x = self.block2(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(128, 64)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


class VanishingOutputs(nn.Module):
    """An untrained-looking classifier whose outputs are about 1e-9: INT8
    quantizes them to all zeros (so does PyTorch's quantize_jit), the case
    the accuracy verdict must not present as a win."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc2.weight.mul_(1e-9)
            self.fc2.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(x)))


class BatchedAttention(nn.Module):
    """Self-attention that needs [batch, seq, features] (torch.bmm rejects
    the [1, features] an inferred input gives): the rank-retry case."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)
        self.out = nn.Linear(32, 32)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = torch.bmm(q, k.transpose(1, 2)) / 32 ** 0.5
        return self.out(torch.bmm(scores.softmax(dim=-1), v))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.feat = nn.Linear(16, 8)
        self.head = nn.Linear(16, 10)

    def forward(self, image: Tensor, features: Tensor) -> Tensor:
        a = torch.flatten(self.pool(self.relu(self.bn(self.conv(image)))), 1)
        b = self.relu(self.feat(features))
        return self.head(torch.cat([a, b], dim=1))


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        features = self.relu(self.fc1(x))
        logits = self.fc2(features)
        return logits, features


class ControlFlow(nn.Module):
    """Data-dependent branch and a loop: only torch.jit.script can capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_in = nn.Linear(32, 32)
        self.fc_pos = nn.Linear(32, 32)
        self.fc_neg = nn.Linear(32, 32)
        self.fc_out = nn.Linear(32, 10)
        self.steps = 3

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc_in(x)
        if h.sum() > 0:
            h = torch.relu(self.fc_pos(h))
        else:
            h = torch.tanh(self.fc_neg(h))
        for _ in range(self.steps):
            h = h + 0.5 * torch.relu(self.fc_pos(h))
        return self.fc_out(h)


class NoQuantLayers(nn.Module):
    """Elementwise math only: no conv, no linear (one small [8] parameter so
    that dtype casts have something to act on)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8))

    def forward(self, x: Tensor) -> Tensor:
        y = x * 2.0 + 1.0
        y = torch.relu(y) * self.scale
        y = torch.sigmoid(y) - 0.5
        return y * torch.exp(-x * x) + torch.tanh(x)


class QuantCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = torch.flatten(self.pool(x), 1)
        x = self.fc(x)
        return self.dequant(x)


class IntInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.fc = nn.Linear(16, 10)

    def forward(self, ids: Tensor) -> Tensor:
        return self.fc(self.emb(ids).mean(dim=1))


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------

def smooth_images(n: int, size: int = 224) -> Tensor:
    """Realistic-ish images: low-frequency random fields (upsampled noise at a
    few scales) plus a gradient, in [0,1], then ImageNet-normalized."""
    imgs = []
    for _ in range(n):
        img = torch.zeros(1, 3, size, size)
        for cells, weight in ((4, 0.5), (14, 0.3), (56, 0.15)):
            coarse = torch.rand(1, 3, cells, cells)
            img += weight * nn.functional.interpolate(
                coarse, size=(size, size), mode="bicubic", align_corners=False)
        ramp = torch.linspace(-0.1, 0.1, size)
        img += ramp.view(1, 1, 1, size) * torch.rand(1, 3, 1, 1)
        img = img.clamp(0.0, 1.0)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        imgs.append(((img - mean) / std).contiguous())
    return torch.cat(imgs, 0)


def build_prequantized() -> nn.Module:
    torch.backends.quantized.engine = "x86"
    # torch 2.13 flags torch.ao.quantization (eager mode) and quantized tensor
    # creation as deprecated; it still works, so keep the output readable.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(reduce_range|quantize_per_tensor).*")
        return _build_prequantized()


def _build_prequantized() -> nn.Module:
    model = QuantCnn()
    randomize_bn(model)
    model.eval()
    fused = torch.ao.quantization.fuse_modules(
        model, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]])
    fused.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(fused)
    with torch.no_grad():
        for _ in range(8):
            prepared(torch.randn(1, 3, 32, 32))
    quantized = torch.ao.quantization.convert(prepared)
    quantized.eval()
    return quantized


class Fixture:
    def __init__(self, name: str, out_dir: str, build, inputs, settings: Optional[str] = None,
                 bf16: bool = True) -> None:
        self.name = name
        self.out_dir = out_dir
        self.build = build          # () -> nn.Module (called after manual_seed)
        self.inputs = inputs        # () -> List[Tensor]
        self.settings = settings    # text of NAME.toml, or None
        self.bf16 = bf16            # whether the bf16 check is expected to pass

    @property
    def path(self) -> str:
        return os.path.join(self.out_dir, self.name)


def float_input(name: str, shape: List[int]) -> str:
    return ("[[inputs]]\n"
            f'name = "{name}"\n'
            f"shape = [{', '.join(str(d) for d in shape)}]\n"
            'dtype = "float32"\n')


# --------------------------------------------------------------------------
# torchvision's operators (issue #22, class 4): a scripted detector calls
# torchvision::nms and torchvision::roi_align, which only torchvision's C++
# library registers. The library is loaded straight from the wheel that
# scripts/install-torchvision.sh installs (torch.ops.load_library), so the
# torchvision Python package itself (and its PIL dependency) is not needed.
# --------------------------------------------------------------------------

def load_torchvision_ops() -> None:
    import subprocess
    folder = subprocess.run([os.path.join(REPO, "scripts", "install-torchvision.sh"), "--python"],
                            check=True, capture_output=True, text=True).stdout.strip()
    library = os.path.join(folder, "torchvision", "_C.so")
    if library not in torch.ops.loaded_libraries:
        torch.ops.load_library(library)


class TorchvisionOps(nn.Module):
    """A detection head in miniature: a conv backbone, boxes from fixed
    anchors and predicted deltas, NMS on the scores, and RoIAlign of the
    kept boxes. The output has a fixed shape ([anchors, 8 * 2 * 2]: the
    suppressed boxes' rows are zero) so precisions can be compared."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.deltas = nn.Conv2d(8, 4, 1)
        self.score = nn.Conv2d(8, 1, 1)
        # 4x4 grid of 12-pixel boxes over a 32x32 image, (x1, y1, x2, y2).
        centres = torch.arange(4, dtype=torch.float32) * 8 + 4
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        c = torch.stack([cx.flatten(), cy.flatten()], 1)
        self.register_buffer("anchors", torch.cat([c - 6, c + 6], 1))

    def forward(self, image: Tensor) -> Tensor:
        features = self.backbone(image)
        small = nn.functional.adaptive_avg_pool2d(features, 4)
        deltas = self.deltas(small).flatten(2)[0].t()
        scores = torch.sigmoid(self.score(small)).flatten()
        boxes = self.anchors + deltas
        keep = torch.ops.torchvision.nms(boxes, scores, 0.5)
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1)
        pooled = torch.ops.torchvision.roi_align(features, rois, 1.0, 2, 2, 2, False)
        kept = torch.zeros_like(scores).index_fill(0, keep, 1.0)
        return pooled.flatten(1) * kept.unsqueeze(1)


def build_torchvision_ops() -> nn.Module:
    load_torchvision_ops()
    return TorchvisionOps()



def fixtures() -> List[Fixture]:
    def seeded(fn):
        def wrapped():
            torch.manual_seed(0)
            m = fn()
            randomize_bn(m)
            return m
        return wrapped

    return [
        Fixture("cnn_residual.pt", MODELS_DIR, seeded(CnnResidual),
                lambda: [torch.randn(1, 3, 224, 224)]),
        Fixture("mlp.pt", MODELS_DIR, seeded(Mlp), lambda: [torch.randn(1, 64)]),
        Fixture("two_inputs.pt", MODELS_DIR, seeded(TwoInputs),
                lambda: [torch.randn(1, 3, 32, 32), torch.randn(1, 16)],
                settings=float_input("image", [1, 3, 32, 32]) + float_input("features", [1, 16])),
        Fixture("tuple_out.pt", MODELS_DIR, seeded(TupleOut), lambda: [torch.randn(1, 64)]),
        Fixture("control_flow.pt", MODELS_DIR, seeded(ControlFlow), lambda: [torch.randn(1, 32)]),
        Fixture("transformer_block.pt", MODELS_DIR,
                seeded(lambda: nn.TransformerEncoderLayer(
                    d_model=64, nhead=4, dim_feedforward=128, dropout=0.0, batch_first=True)),
                lambda: [torch.randn(1, 16, 64)],
                # forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)
                settings=float_input("src", [1, 16, 64])),
        Fixture("no_quant_layers.pt", MODELS_DIR, seeded(NoQuantLayers),
                lambda: [torch.randn(1, 8)], settings=float_input("x", [1, 8])),
        Fixture("prequantized.pt", MODELS_DIR, seeded(build_prequantized),
                lambda: [torch.randn(1, 3, 32, 32)],
                settings=float_input("x", [1, 3, 32, 32]), bf16=False),
        Fixture("int_input.pt", MODELS_DIR, seeded(IntInput),
                lambda: [torch.randint(0, 100, (1, 12), dtype=torch.int64)],
                settings=('[[inputs]]\nname = "ids"\nshape = [1, 12]\ndtype = "int64"\n'
                          "low = 0\nhigh = 100\n"),
                bf16=False),
        Fixture("vanishing_outputs.pt", MODELS_DIR, seeded(VanishingOutputs),
                lambda: [torch.randn(1, 64)]),
        Fixture("batched_attention.pt", MODELS_DIR, seeded(BatchedAttention),
                lambda: [torch.randn(1, 16, 32)]),
        Fixture("torchvision_ops.pt", MODELS_DIR, seeded(build_torchvision_ops),
                lambda: [torch.randn(1, 3, 32, 32)],
                settings=float_input("image", [1, 3, 32, 32]),
                # torchvision's CPU nms takes float32 and float64 only.
                bf16=False),
        Fixture("tiny_resnet.pt", DEMO_DIR,
                # ~10 ms fp32 / ~7 ms bf16 at 224x224 on 2 threads, ~920 KiB.
                seeded(lambda: ResNet([2, 1, 1, 1], num_classes=10, widths=(48, 48, 48, 48))),
                lambda: [torch.randn(1, 3, 224, 224)]),
    ]


# --------------------------------------------------------------------------
# Inputs from the graph (issue 22, class 3): models whose inputs precisiond
# infers from how forward() uses them first, without a settings file. Traced
# as their libraries would save them (submodules called through
# prim::CallMethod), the LSTM-first one scripted.
# --------------------------------------------------------------------------

class TinyGpt(nn.Module):
    """GPT-2-style decoder: token and position embeddings, one pre-norm block
    with causal self-attention, an LM head. Its first weight is the token
    embedding's, its first use of the input an aten::embedding."""

    def __init__(self, vocab: int = 256, positions: int = 64, width: int = 64) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(positions, width)
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.heads = 4

    def forward(self, idx: Tensor) -> Tensor:
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        q, k, v = self.qkv(self.ln_1(x)).split(x.size(-1), dim=2)
        shape = (b, t, self.heads, x.size(-1) // self.heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, -1))
        x = x + self.mlp(self.ln_2(x))
        return self.lm_head(self.ln_f(x))


class LstmTagger(nn.Module):
    """Embedding + LSTM sequence tagger (batch_first)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(200, 32)
        self.lstm = nn.LSTM(32, 48, batch_first=True)
        self.tags = nn.Linear(48, 10)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.tags(out)


class AudioConv1d(nn.Module):
    """Keyword-spotting style 1-D convolutions over a raw waveform."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, kernel_size=9, stride=4), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Conv1d(16, 32, kernel_size=5, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1))
        self.head = nn.Linear(32, 12)

    def forward(self, wave: Tensor) -> Tensor:
        return self.head(self.features(wave).flatten(1))


class LstmFirst(nn.Module):
    """An LSTM straight on the input (not batch_first: [steps, batch, features])."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(20, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1])


class MaskedEncoder(nn.Module):
    """BERT-style: token ids and an attention mask that is only used in
    arithmetic (an additive mask on the attention scores)."""

    def __init__(self, vocab: int = 300, positions: int = 32, width: int = 32) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, width)
        self.position_embeddings = nn.Embedding(positions, width)
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.width = width

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        t = input_ids.size(1)
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.norm(self.word_embeddings(input_ids) + self.position_embeddings(positions))
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = torch.matmul(q, k.transpose(1, 2)) / self.width ** 0.5
        scores = scores + (1.0 - attention_mask[:, None, :].to(scores.dtype)) * -10000.0
        return self.out(torch.matmul(scores.softmax(dim=-1), v))


class OpaqueInputs(nn.Module):
    """Two inputs whose first use tells nothing of their shape: inference
    fails and the error names the settings file."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Linear(8, 8)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.scale(torch.tanh(a) * torch.tanh(b))


class WaveformConv(nn.Module):
    """wav2vec2-style: a raw waveform [batch, samples] made one channel with
    x[:, None] before a Conv1d whose kernel needs more than 224 samples."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, kernel_size=300, stride=100)
        self.head = nn.Linear(8, 4)

    def forward(self, input_values: Tensor) -> Tensor:
        x = torch.relu(self.conv(input_values[:, None]))
        return self.head(x.mean(-1))


class StftSpectrogram(nn.Module):
    """torchaudio-style spectrogram (torch.stft inside forward) then a CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(64))
        self.conv = nn.Conv2d(1, 4, kernel_size=3)
        self.head = nn.Linear(4, 3)

    def forward(self, wave: Tensor) -> Tensor:
        spec = torch.stft(wave, n_fft=64, hop_length=16, window=self.window,
                          return_complex=True).abs().pow(2.0)
        x = torch.relu(self.conv(torch.log1p(spec).unsqueeze(1)))
        return self.head(x.mean(dim=[2, 3]))


class LinearFirst4d(nn.Module):
    """DeepSpeech-style: linear layers on (batch, channel, time, features),
    then squeeze(1) and an LSTM; only those tell the input has rank 4."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 16)
        self.rnn = nn.LSTM(16, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.fc(x)).squeeze(1).transpose(0, 1)
        out, _ = self.rnn(x)
        return self.head(out)


def graph_input_fixtures() -> List[Tuple[str, nn.Module, List[Tensor], bool]]:
    """(file name, model, example inputs, traced) of the inputs-from-the-graph fixtures."""
    def seeded(build):
        torch.manual_seed(0)
        m = build()
        randomize_bn(m)
        return m.eval()

    return [
        ("gpt_decoder.pt", seeded(TinyGpt), [torch.randint(0, 256, (1, 16))], True),
        ("lstm_tagger.pt", seeded(LstmTagger), [torch.randint(0, 200, (1, 16))], True),
        ("audio_conv1d.pt", seeded(AudioConv1d), [torch.randn(1, 1, 224)], True),
        ("lstm_first.pt", seeded(LstmFirst), [torch.randn(16, 1, 20)], False),
        ("masked_encoder.pt", seeded(MaskedEncoder),
         [torch.randint(0, 300, (1, 16)), torch.ones(1, 16, dtype=torch.long)], True),
        ("opaque_inputs.pt", seeded(OpaqueInputs), [torch.randn(1, 8), torch.randn(1, 8)], False),
        ("waveform_conv.pt", seeded(WaveformConv), [torch.randn(1, 1000)], True),
        ("stft_spectrogram.pt", seeded(StftSpectrogram), [torch.randn(1, 1000)], False),
        ("linear_first_4d.pt", seeded(LinearFirst4d), [torch.randn(1, 1, 16, 12)], True),
    ]


def make_graph_input_fixtures() -> List[str]:
    """Writes and checks them; the names of those that fail their check."""
    failures = []
    for name, model, example, traced in graph_input_fixtures():
        path = os.path.join(MODELS_DIR, name)
        with torch.no_grad():
            saved = torch.jit.trace(model, tuple(example)) if traced else torch.jit.script(model)
        saved.eval()
        torch.jit.save(saved, path)
        if not check(path, example, try_bf16=True, bf16_expected=False):
            failures.append(name)
    return failures


# --------------------------------------------------------------------------
# INT8 beyond static PTQ (issue #22, class 5): traced, as their libraries
# save such models
# --------------------------------------------------------------------------

class LstmLinear(nn.Module):
    """An LSTM with a Linear head: dynamic PTQ quantizes the Linear layers,
    static PTQ has nothing for the LSTM (it stays FP32 either way)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 48, batch_first=True)
        self.fc1 = nn.Linear(48, 96)
        self.fc2 = nn.Linear(96, 10)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.lstm(x)
        return self.fc2(torch.relu(self.fc1(y)))


class SharedActConv(nn.Module):
    """ultralytics' Conv: one class-level activation module shared by every
    instance (`default_act = nn.SiLU()`). Traced, each Conv.forward takes
    that shared SiLU as an argument, and libtorch's quantization passes
    refuse such methods: "We don't support quantizing methods that has
    Object as arguments"."""

    default_act = nn.SiLU()

    def __init__(self, c1: int, c2: int, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 3, s, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class SharedActNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(SharedActConv(3, 16, 2), SharedActConv(16, 32, 2),
                                  SharedActConv(32, 32))
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def traced_fixtures() -> List[Tuple[str, nn.Module, List[Tensor], str]]:
    """(name, model, example inputs, settings text) of the traced fixtures."""
    torch.manual_seed(0)
    lstm = LstmLinear().eval()
    torch.manual_seed(0)
    shared = SharedActNet()
    randomize_bn(shared)
    shared.eval()
    return [
        ("lstm_linear.pt", lstm, [torch.randn(1, 20, 16)], float_input("x", [1, 20, 16])),
        ("shared_act.pt", shared, [torch.randn(1, 3, 64, 64)], float_input("x", [1, 3, 64, 64])),
    ]


def make_traced() -> List[str]:
    """Writes the traced fixtures; returns the names of those that fail their check."""
    failures = []
    for name, model, inputs, settings in traced_fixtures():
        path = os.path.join(MODELS_DIR, name)
        with torch.no_grad():
            traced = torch.jit.trace(model, tuple(inputs))
        torch.jit.save(traced, path)
        with open(path + ".toml", "w") as f:
            f.write(settings)
        if not check(path, inputs, try_bf16=True, bf16_expected=False):
            failures.append(name)
    return failures


# --------------------------------------------------------------------------
# Issue #22, classes 1 and 2: how FP16/BF16 are prepared (cast vs autocast)
# --------------------------------------------------------------------------
# int_buffer.pt (scripted): int64 buffers used as indices, as BERT's
# position ids and Swin's/LeViT's relative-position-bias index. A cast that
# converts every tensor (libtorch's C++ Module::to(dtype)) breaks both;
# PyTorch's nn.Module.to casts floating-point tensors only.
# traced_float_constant.pt (traced): a conv+GRU keyword spotter that makes
# its zero hidden state inside forward with dtype=torch.float32; tracing
# bakes that constant into the graph, so the FP16/BF16 cast fails with a
# dtype mismatch while torch.autocast runs it.

class IntBuffer(nn.Module):
    def __init__(self, tokens: int = 16, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.proj = nn.Linear(dim, dim)
        self.pos = nn.Embedding(tokens, dim)
        self.register_buffer("positions", torch.arange(tokens, dtype=torch.int64))
        side = torch.arange(tokens)
        rel = side[:, None] - side[None, :] + tokens - 1
        self.register_buffer("bias_index", rel.to(torch.int64))
        self.bias_table = nn.Parameter(torch.randn(2 * tokens - 1, heads) * 0.1)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.proj(x) + self.pos(self.positions)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        bias = self.bias_table[self.bias_index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5 + bias, dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, d))


class TracedFloatConstant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 16, 3, padding=1)
        self.gru = nn.GRU(16, 24, batch_first=True)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.conv(x)).transpose(1, 2)
        h0 = torch.zeros(1, y.shape[0], 24, dtype=torch.float32)
        out, _ = self.gru(y, h0)
        return self.fc(out[:, -1])


def make_cast_fixtures() -> List[str]:
    """Writes int_buffer.pt and traced_float_constant.pt (with settings
    files naming their inputs); returns the names whose check failed."""
    failures = []
    torch.manual_seed(0)
    path = os.path.join(MODELS_DIR, "int_buffer.pt")
    save_script(IntBuffer(), path)
    with open(path + ".toml", "w") as f:
        f.write(float_input("x", [1, 16, 32]))
    torch.manual_seed(0)
    traced_path = os.path.join(MODELS_DIR, "traced_float_constant.pt")
    model = TracedFloatConstant().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn(1, 8, 20))
    torch.jit.save(traced, traced_path)
    with open(traced_path + ".toml", "w") as f:
        f.write(float_input("x", [1, 8, 20]))
    for p, shape, bf16_expected in [(path, [1, 16, 32], True), (traced_path, [1, 8, 20], False)]:
        torch.manual_seed(42)
        if not check(p, [torch.randn(*shape)], try_bf16=True, bf16_expected=bf16_expected):
            failures.append(os.path.basename(p))
    return failures


# --------------------------------------------------------------------------
# Issue #22: static PTQ of a traced transformer that returns a tuple
# --------------------------------------------------------------------------
# tuple_encoder.pt (traced, as Hugging Face models are saved): a BERT-like
# encoder (embedding, one attention + feed-forward layer, a pooler) that
# returns (last_hidden_state, pooler_output). libtorch's InsertQuantDeQuant
# dequantizes that tuple as one value, and the model PyTorch's own
# quantize_jit writes does not load ("annotated as having type
# Tuple[Tensor, Tensor] but is actually of type List[Tensor]").

class TupleEncoderLayer(nn.Module):
    def __init__(self, width: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width)
        self.ff1 = nn.Linear(width, 2 * width)
        self.ff2 = nn.Linear(2 * width, width)
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        x = self.norm1(x + self.out((att @ v).transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.ff2(torch.nn.functional.gelu(self.ff1(x))))


class TupleEncoderPooler(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class TupleEncoder(nn.Module):
    def __init__(self, vocab: int = 100, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.layer = TupleEncoderLayer(width)
        self.pooler = TupleEncoderPooler(width)

    def forward(self, ids: Tensor) -> Tuple[Tensor, Tensor]:
        hidden = self.layer(self.norm(self.embed(ids)))
        return hidden, self.pooler(hidden)


def make_tuple_encoder() -> List[str]:
    """Writes tuple_encoder.pt (+ settings); the names whose check failed."""
    torch.manual_seed(0)
    model = TupleEncoder().eval()
    example = [torch.randint(0, 100, (1, 16))]
    path = os.path.join(MODELS_DIR, "tuple_encoder.pt")
    with torch.no_grad():
        traced = torch.jit.trace(model, tuple(example))
    torch.jit.save(traced, path)
    with open(path + ".toml", "w") as f:
        f.write('[[inputs]]\nname = "ids"\nshape = [1, 16]\ndtype = "int64"\n'
                "low = 0\nhigh = 100\n")
    return [] if check(path, example, try_bf16=True, bf16_expected=True) else ["tuple_encoder.pt"]


# --------------------------------------------------------------------------
# Writing and checking
# --------------------------------------------------------------------------

def save_script(model: nn.Module, path: str) -> None:
    model.eval()
    scripted = torch.jit.script(model)
    scripted.eval()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.jit.save(scripted, path)


def shapes_of(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"{list(out.shape)} {str(out.dtype).replace('torch.', '')}"
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(shapes_of(o) for o in out) + ")"
    return type(out).__name__


def all_finite(out) -> bool:
    if isinstance(out, torch.Tensor):
        return bool(torch.isfinite(out.float()).all())
    if isinstance(out, (tuple, list)):
        return all(all_finite(o) for o in out)
    return True


def check(path: str, inputs: List[Tensor], try_bf16: bool, bf16_expected: bool) -> bool:
    """Reload from disk and run fp32 (and bf16). Prints one report line."""
    ok = True
    size = os.path.getsize(path)
    rel = os.path.relpath(path, REPO)
    if rel.startswith(".."):
        rel = os.path.abspath(path)
    in_desc = ", ".join(f"{list(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in inputs)
    line = f"{rel:45s} {size / 1024:9.1f} KiB  in: {in_desc}"
    try:
        m = torch.jit.load(path, map_location="cpu")
        m.eval()
        with torch.no_grad():
            out = m(*inputs)
        line += f"  out fp32: {shapes_of(out)}"
        if not all_finite(out):
            line += " (NON-FINITE)"
            ok = False
    except Exception as e:  # noqa: BLE001
        print(f"{line}  FP32 FAILED: {type(e).__name__}: {e}")
        return False
    if try_bf16:
        try:
            mb = torch.jit.load(path, map_location="cpu").to(torch.bfloat16)
            mb.eval()
            bin_ = [t.to(torch.bfloat16) if t.is_floating_point() else t for t in inputs]
            with torch.no_grad():
                outb = mb(*bin_)
            line += f"  bf16: ok {shapes_of(outb)}"
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()
            msg = first[-1] if first else ""
            line += f"  bf16: FAILED ({type(e).__name__}: {msg[:160]})"
            if bf16_expected:
                ok = False
    print(line)
    return ok


def quantized_ops(path: str) -> List[str]:
    m = torch.jit.load(path, map_location="cpu")
    ops = set()
    for node in m.inlined_graph.nodes():
        if node.kind().startswith("quantized::") or node.kind() in (
                "aten::quantize_per_tensor", "aten::dequantize"):
            ops.add(node.kind())
    return sorted(ops)


def write_calibration() -> None:
    torch.manual_seed(1234)
    images = smooth_images(NUM_CALIB_SAMPLES)
    pt_dir = os.path.join(CALIB_DIR, "cnn_residual_pt")
    npy_dir = os.path.join(CALIB_DIR, "cnn_residual_npy")
    bad_dir = os.path.join(CALIB_DIR, "bad")
    for d in (pt_dir, npy_dir, bad_dir):
        os.makedirs(d, exist_ok=True)
    for i in range(NUM_CALIB_SAMPLES):
        sample = images[i:i + 1].clone().contiguous()
        torch.save(sample, os.path.join(pt_dir, f"sample_{i:02d}.pt"))
        np.save(os.path.join(npy_dir, f"sample_{i:02d}.npy"), sample.numpy().astype(np.float32))

    rng = np.random.default_rng(1234)
    np.save(os.path.join(bad_dir, "wrong_shape.npy"),
            rng.standard_normal((1, 3, 10, 10)).astype(np.float32))
    np.save(os.path.join(bad_dir, "wrong_dtype.npy"),
            rng.integers(0, 256, size=(1, 3, 224, 224), dtype=np.uint8))
    with open(os.path.join(bad_dir, "unreadable.pt"), "wb") as f:
        f.write(b"this is not a torch file\x00\xff\xfe" + bytes(range(256)))

    print("calibration data:")
    for d in (pt_dir, npy_dir, bad_dir):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if name.endswith(".pt") and d != bad_dir:
                desc = shapes_of(torch.load(p, weights_only=True))
            elif name.endswith(".npy"):
                a = np.load(p)
                desc = f"{list(a.shape)} {a.dtype}"
            else:
                desc = "garbage bytes"
            print(f"  {os.path.relpath(p, REPO):55s} {os.path.getsize(p) / 1024:8.1f} KiB  {desc}")


def make_all() -> int:
    failures = []
    for fx in fixtures():
        model = fx.build()
        save_script(model, fx.path)
        if fx.settings is not None:
            with open(fx.path + ".toml", "w") as f:
                f.write(fx.settings)
    print("models (reloaded from disk with torch.jit.load):")
    for fx in fixtures():
        torch.manual_seed(42)
        if not check(fx.path, fx.inputs(), try_bf16=True, bf16_expected=fx.bf16):
            failures.append(fx.name)
    failures += make_graph_input_fixtures()
    failures += make_traced()
    failures += make_cast_fixtures()
    failures += make_tuple_encoder()
    qops = quantized_ops(os.path.join(MODELS_DIR, "prequantized.pt"))
    print("prequantized.pt quantized ops:", ", ".join(qops) or "NONE")
    if not any(op.startswith("quantized::") for op in qops):
        failures.append("prequantized.pt (no quantized:: ops)")
    write_calibration()
    total = sum(os.path.getsize(os.path.join(MODELS_DIR, n)) for n in os.listdir(MODELS_DIR))
    print(f"tests/fixtures/models total: {total / 1024:.1f} KiB")
    if failures:
        print("FAILED:", ", ".join(failures))
        return 1
    return 0


def make_resnet18(out_dir: str) -> int:
    torch.manual_seed(0)
    model = ResNet([2, 2, 2, 2], num_classes=1000)
    model.eval()
    path = os.path.join(out_dir, "resnet18.pt")
    save_script(model, path)
    torch.manual_seed(42)
    ok = check(path, [torch.randn(1, 3, 224, 224)], try_bf16=True, bf16_expected=True)
    return 0 if ok else 1


def main() -> int:
    # TorchScript writes module constants in Python set order, which depends
    # on string hash randomization; pin it so the saved bytes are reproducible.
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resnet18-only", metavar="OUTDIR",
                    help="only write OUTDIR/resnet18.pt (torchvision ResNet-18, random init)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.resnet18_only:
        return make_resnet18(args.resnet18_only)
    return make_all()


if __name__ == "__main__":
    sys.exit(main())
