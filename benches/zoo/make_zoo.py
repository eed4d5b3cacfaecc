#!/usr/bin/env python3
"""Builds precisiond's model zoo: real architectures from torchvision, timm,
transformers, ultralytics, torchaudio and two hand-written RNNs, each saved
the way its library documents, to see what a new user gets from
`precisiond run MODEL`.

    PYTHONPATH=$(scripts/install-torch-full.sh):$(scripts/install-zoo.sh) \
        python3 benches/zoo/make_zoo.py [OUTDIR] [--only NAME,...] [--list]

OUTDIR defaults to the cache's zoo-models/ folder; the models never go into
the repository. Every model has random weights (a seed of its own, from its
name: a rebuild has the same weights, though not the same bytes, as
TorchScript writes a random serialization id), its BatchNorm
statistics settled by a few train-mode passes on random inputs, then eval().
No weights are downloaded: pretrained=False, transformers from configs,
ultralytics from its yaml. Batch 1, inputs of at most 224 pixels, so a
2-core machine measures the whole zoo in under an hour.

No settings file is written beside any model: the zoo shows what precisiond
makes of a model on its own (input inference included). A model whose file
exists is not built again; `zoo.json` in OUTDIR lists what each file is.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import traceback
import zlib
from pathlib import Path

import torch
from torch import nn

DEFAULT_OUT = (
    Path(
        os.environ.get("PRECISIOND_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "precisiond"
    )
    / "zoo-models"
)


def seed_for(name):
    """A seed per model, from its name, so models do not share weights and a
    model's weights do not depend on which others were built."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@torch.no_grad()
def settle_batchnorm(model, make_input, passes=4):
    """Replaces untrained BatchNorm statistics (mean 0, var 1) by the real
    statistics of the activations on random inputs: a cumulative average
    (momentum=None) over a few train-mode passes, then eval(). Batch 2 in
    train mode: BatchNorm cannot normalise a single value per channel."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for _ in range(passes):
            model(make_input(2))
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
    model.eval()
    return model


def image(size=224, channels=3):
    return lambda batch=1: torch.randn(batch, channels, size, size)


def tokens(vocab, length=128):
    return lambda batch=1: torch.randint(0, vocab, (batch, length), dtype=torch.int64)


def trace(model, example, strict=True):
    with torch.no_grad():
        return torch.jit.trace(model, example, strict=strict)


# ---------------------------------------------------------------- torchvision

TV_CLASSIFICATION = [
    "resnet18",
    "resnet50",
    "squeezenet1_1",
    "googlenet",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "convnext_tiny",
    "swin_t",
    "maxvit_t",
]


def tv_classifier(arch):
    def build():
        import torchvision

        model = torchvision.models.get_model(arch, weights=None)
        settle_batchnorm(model, image())
        # torchvision's documented TorchScript path for classifiers: trace
        # (or script) the eval-mode model.
        return trace(model, image()())

    return build


def tv_segmentation(arch):
    def build():
        import torchvision

        model = torchvision.models.get_model(arch, weights=None, weights_backbone=None)
        settle_batchnorm(model, image())
        # The segmentation models return a dict ("out"): strict=False lets
        # the tracer keep it.
        return trace(model, image()(), strict=False)

    return build


def tv_detection(arch):
    def build():
        import torchvision

        model = torchvision.models.get_model(arch, weights=None, weights_backbone=None)
        settle_batchnorm_detector(model)
        # torchvision documents torch.jit.script for its detectors: they
        # take a list of images and call torchvision:: operators (nms).
        return torch.jit.script(model)

    return build


@torch.no_grad()
def settle_batchnorm_detector(model):
    """A detector in train mode wants targets; its backbone does not."""
    settle_batchnorm(model.backbone, image(320))
    model.eval()


# ----------------------------------------------------------------------- timm

TIMM = [
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "convnextv2_atto",
    "edgenext_xx_small",
    "mobilenetv4_conv_small",
    "mobileone_s0",
    "levit_128s",
    "tiny_vit_5m_224",
    "efficientvit_b0",
    "ghostnetv2_100",
    "swin_tiny_patch4_window7_224",
    "fastvit_t8",
    "mobilevitv2_050",
    "repvit_m0_9",
    "efficientformerv2_s0",
    "regnety_002",
    "lcnet_050",
]


def timm_model(arch):
    def build():
        import timm

        model = timm.create_model(arch, pretrained=False)
        settle_batchnorm(model, image())
        # timm's models are scriptable or traceable; tracing is what its
        # export examples and most deployments use.
        return trace(model, image()())

    return build


# --------------------------------------------------------------- transformers

SMALL_TEXT = dict(
    vocab_size=30522,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    max_position_embeddings=512,
)


def hf_config(config_name, config_kwargs, tuples=True):
    """transformers' TorchScript recipe: torchscript=True (untied weights).
    transformers 5 still returns its ModelOutput dicts with it, which the
    tracer refuses; return_dict=False gives the tuples the recipe expects."""
    import transformers

    return getattr(transformers, config_name)(
        torchscript=True, **({"return_dict": False} if tuples else {}), **config_kwargs
    )


def hf_text(config_name, model_name, config_kwargs, vocab=30522, length=128):
    def build():
        import transformers

        config = hf_config(config_name, config_kwargs)
        model = getattr(transformers, model_name)(config).eval()
        # Traced with int64 token ids, as transformers documents.
        return trace(model, tokens(vocab, length)())

    return build


def hf_vision(config_name, model_name, config_kwargs, size=224, tuples=True):
    def build():
        import transformers

        config = hf_config(config_name, config_kwargs, tuples)
        model = getattr(transformers, model_name)(config)
        settle_batchnorm(model, image(size))
        # tuples=False: transformers 5's Swin and ConvNext fail with
        # return_dict=False (they read .last_hidden_state from their own
        # encoder's tuple), so they keep the dict output, which the tracer
        # takes with strict=False.
        return trace(model, image(size)(), strict=tuples)

    return build


def hf_audio(config_name, model_name, config_kwargs, samples=16000):
    def build():
        import transformers

        config = hf_config(config_name, config_kwargs)
        model = getattr(transformers, model_name)(config)
        wave = lambda batch=1: torch.randn(batch, samples)
        settle_batchnorm(model, wave)
        return trace(model, wave())

    return build


HF = {
    "hf_bert": hf_text("BertConfig", "BertModel", SMALL_TEXT),
    "hf_distilbert": hf_text(
        "DistilBertConfig",
        "DistilBertModel",
        dict(vocab_size=30522, dim=256, n_layers=4, n_heads=4, hidden_dim=1024),
    ),
    "hf_roberta": hf_text(
        "RobertaConfig", "RobertaModel", dict(SMALL_TEXT, max_position_embeddings=514)
    ),
    "hf_albert": hf_text(
        "AlbertConfig",
        "AlbertModel",
        dict(SMALL_TEXT, embedding_size=128),
    ),
    "hf_electra": hf_text(
        "ElectraConfig", "ElectraModel", dict(SMALL_TEXT, embedding_size=128)
    ),
    "hf_gpt2": hf_text(
        "GPT2Config",
        "GPT2Model",
        # use_cache=False: the key/value cache is an object the tracer
        # cannot return.
        dict(vocab_size=50257, n_embd=256, n_layer=4, n_head=4, n_positions=512, use_cache=False),
        vocab=50257,
    ),
    "hf_vit": hf_vision(
        "ViTConfig",
        "ViTModel",
        dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768),
    ),
    "hf_swin": hf_vision(
        "SwinConfig",
        "SwinModel",
        dict(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24]),
        tuples=False,
    ),
    "hf_convnext": hf_vision(
        "ConvNextConfig",
        "ConvNextModel",
        dict(hidden_sizes=[48, 96, 192, 384], depths=[2, 2, 2, 2]),
        tuples=False,
    ),
    "hf_wav2vec2": hf_audio(
        "Wav2Vec2Config",
        "Wav2Vec2Model",
        dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    ),
}


# ---------------------------------------------------------------- ultralytics


def yolo(yaml_name, size=224):
    def build():
        from ultralytics import YOLO

        wrapper = YOLO(yaml_name)  # architecture from its yaml: no weights
        net = wrapper.model
        settle_batchnorm(net, image(size))
        # ultralytics' own export: fuses Conv+BN, traces, saves with its
        # metadata (config.txt) in the TorchScript file.
        with tempfile.TemporaryDirectory() as tmp, pushd(tmp):
            exported = wrapper.export(format="torchscript", imgsz=size, device="cpu")
            return Path(exported).read_bytes()

    return build


@contextlib.contextmanager
def pushd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


ULTRALYTICS = {
    "yolov8n": yolo("yolov8n.yaml"),
    "yolo11n": yolo("yolo11n.yaml"),
    "yolov8n_cls": yolo("yolov8n-cls.yaml"),
}


# ----------------------------------------------------------------- torchaudio


def torchaudio_available():
    try:
        import torchaudio  # noqa: F401
    except Exception:
        return False
    return True


def ta_wav2letter():
    import torchaudio

    model = torchaudio.models.Wav2Letter(num_classes=40, input_type="mfcc", num_features=40)
    feats = lambda batch=1: torch.randn(batch, 40, 200)
    return trace(settle_batchnorm(model, feats), feats())


def ta_deepspeech():
    import torchaudio

    model = torchaudio.models.DeepSpeech(n_feature=40, n_hidden=256, n_class=40)
    feats = lambda batch=1: torch.randn(batch, 1, 200, 40)
    return trace(settle_batchnorm(model, feats), feats())


def ta_melspec_cnn():
    """Spectrogram front end (torchaudio.transforms) into a small conv net."""
    import torchaudio

    model = nn.Sequential(
        torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_mels=40),
        torchaudio.transforms.AmplitudeToDB(),
        Unsqueeze1(),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 12),
    )
    wave = lambda batch=1: torch.randn(batch, 16000)
    return trace(settle_batchnorm(model, wave), wave())


class Unsqueeze1(nn.Module):
    def forward(self, x):
        return x.unsqueeze(1)


TORCHAUDIO = {
    "ta_wav2letter": ta_wav2letter,
    "ta_deepspeech": ta_deepspeech,
    "ta_melspec_cnn": ta_melspec_cnn,
}


# ----------------------------------------------------------------------- RNNs


class KeywordSpotter(nn.Module):
    """Conv front end over 40 MFCC features, then a GRU whose zero hidden
    state is made inside forward (as most RNN code does), then a classifier
    on the last step."""

    def __init__(self, features=40, hidden=128, classes=12):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Sequential(
            nn.Conv1d(features, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU()
        )
        self.gru = nn.GRU(64, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):  # x: [batch, features, time]
        y = self.conv(x).transpose(1, 2)
        h0 = torch.zeros(1, x.shape[0], self.hidden)
        out, _ = self.gru(y, h0)
        return self.head(out[:, -1])


class LstmTagger(nn.Module):
    """Embedding + bidirectional LSTM + per-token tag scores."""

    def __init__(self, vocab=5000, dim=128, hidden=128, tags=17):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.tags = nn.Linear(2 * hidden, tags)

    def forward(self, ids):  # ids: [batch, length] int64
        out, _ = self.lstm(self.embed(ids))
        return self.tags(out)


class TransformerClassifier(nn.Module):
    """torch.nn's own TransformerEncoder over a feature sequence."""

    def __init__(self, features=64, classes=10):
        super().__init__()
        layer = nn.TransformerEncoderLayer(features, 4, 256, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 3)
        self.head = nn.Linear(features, classes)

    def forward(self, x):  # x: [batch, length, features]
        return self.head(self.encoder(x).mean(1))


def rnn_keyword_spotter():
    feats = lambda batch=1: torch.randn(batch, 40, 100)
    return trace(settle_batchnorm(KeywordSpotter(), feats), feats())


def rnn_lstm_tagger():
    return trace(LstmTagger().eval(), tokens(5000, 64)())


def nn_transformer():
    seq = lambda batch=1: torch.randn(batch, 64, 64)
    return trace(TransformerClassifier().eval(), seq())


CUSTOM = {
    "rnn_kws_gru": rnn_keyword_spotter,
    "rnn_lstm_tagger": rnn_lstm_tagger,
    "nn_transformer": nn_transformer,
}


# ---------------------------------------------------------------------- zoo


def zoo():
    """(name, family, builder) for every model, in a fixed order."""
    models = [(f"tv_{a}", "torchvision", tv_classifier(a)) for a in TV_CLASSIFICATION]
    models += [
        ("tv_lraspp_mobilenet_v3_large", "torchvision-segmentation", tv_segmentation("lraspp_mobilenet_v3_large")),
        ("tv_deeplabv3_mobilenet_v3_large", "torchvision-segmentation", tv_segmentation("deeplabv3_mobilenet_v3_large")),
        ("tv_ssdlite320_mobilenet_v3_large", "torchvision-detection", tv_detection("ssdlite320_mobilenet_v3_large")),
        ("tv_fasterrcnn_mobilenet_v3_large_320_fpn", "torchvision-detection", tv_detection("fasterrcnn_mobilenet_v3_large_320_fpn")),
    ]
    models += [(f"timm_{a}", "timm", timm_model(a)) for a in TIMM]
    models += [(n, "transformers", b) for n, b in HF.items()]
    models += [(n, "ultralytics", b) for n, b in ULTRALYTICS.items()]
    if torchaudio_available():
        models += [(n, "torchaudio", b) for n, b in TORCHAUDIO.items()]
    models += [(n, "custom", b) for n, b in CUSTOM.items()]
    return models


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--list", action="store_true", help="print the names and exit")
    parser.add_argument("--force", action="store_true", help="rebuild existing files")
    args = parser.parse_args()

    models = zoo()
    if args.list:
        for name, family, _ in models:
            print(f"{name}\t{family}")
        return 0
    wanted = {n for n in args.only.split(",") if n}
    unknown = wanted - {n for n, _, _ in models}
    if unknown:
        sys.exit(f"unknown model(s): {', '.join(sorted(unknown))}")

    torch.set_num_threads(int(os.environ.get("ZOO_THREADS", "1")))
    args.outdir.mkdir(parents=True, exist_ok=True)
    manifest_path = args.outdir / "zoo.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    failed = []
    for name, family, build in models:
        if wanted and name not in wanted:
            continue
        path = args.outdir / f"{name}.pt"
        if path.exists() and not args.force:
            continue
        print(f"building {name} ({family})", file=sys.stderr, flush=True)
        torch.manual_seed(seed_for(name))
        try:
            built = build()
        except Exception as e:  # one model's failure must not stop the zoo
            traceback.print_exc()
            failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        tmp = path.with_suffix(".pt.part")
        if isinstance(built, bytes):
            tmp.write_bytes(built)
            saved = "ultralytics export"
        else:
            built.save(str(tmp))
            saved = "scripted" if isinstance(built, torch.jit.RecursiveScriptModule) else "traced"
        os.replace(tmp, path)
        manifest[name] = {"family": family, "saved": saved, "seed": seed_for(name)}
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for line in failed:
        print(f"not built: {line}", file=sys.stderr)
    print(args.outdir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
