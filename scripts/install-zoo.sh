#!/usr/bin/env bash
# Installs the Python packages that benches/zoo/make_zoo.py builds its models
# with (torchvision, timm, transformers, ultralytics, torchaudio) into
# precisiond's cache, once, and prints the folder. It holds no torch: Python
# needs the torch folder first on PYTHONPATH, then this one:
#
#   PYTHONPATH=$(scripts/install-torch-full.sh):$(scripts/install-zoo.sh)
#
# Every package goes in with --no-deps at a pinned version, so pip never
# resolves a second torch (4.7 GB with its CUDA libraries) into this folder.
# The list below is pip's own resolution of the five packages with torch
# pinned to 2.13.0 (`pip install --dry-run --report` with a constraints
# file), less what the torch folder already holds (numpy, sympy, jinja2,
# filelock, fsspec, networkx, typing_extensions, setuptools, the nvidia and
# cuda packages, triton): one numpy, the torch folder's.
#
# torchvision 0.28.0 is the release built for torch 2.13.0 (its metadata
# requires torch==2.13.0). torchaudio has no 2.13 release; 2.11.1 is the
# newest, asks for torch>=2.11 and is kept only if it imports with torch
# 2.13.0 (checked below; without it the zoo has no torchaudio model).
# opencv-python-headless replaces ultralytics' opencv-python: the same cv2
# without libGL, which a server often lacks.
#
# Installed into a temporary folder and renamed into place only when pip and
# the import check succeeded, so an interrupted install never looks cached.
set -euo pipefail

ZOO_TAG="${ZOO_TAG:-torch2.13.0-1}"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/zoo-$ZOO_TAG"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PACKAGES=(
    torchvision==0.28.0
    timm==1.0.31
    transformers==5.25.0
    ultralytics==8.4.190
    torchaudio==2.11.1
    # timm, transformers
    huggingface_hub==2.4.0
    hf-xet==1.8.0
    safetensors==0.8.0
    tokenizers==0.23.3
    kernels==0.19.1
    regex==2026.12.2
    tqdm==4.70.1
    packaging==26.4
    PyYAML==6.0.4
    typer==0.29.2
    click==8.5.1
    shellingham==1.5.4
    rich==15.0.0
    markdown-it-py==4.3.0
    mdurl==0.1.2
    Pygments==2.21.0
    annotated-doc==0.0.7
    httpx==0.29.0
    httpcore==1.0.9
    httpx2==2.17.0
    httpcore2==2.17.0
    h11==0.16.0
    anyio==4.16.0
    idna==3.21
    certifi==2026.10.19.post1
    truststore==0.10.5
    tomlkit==0.15.3
    pydantic==2.14.4
    pydantic_core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    # torchvision
    pillow==13.0.0
    # ultralytics
    opencv-python-headless==5.1.0.95
    matplotlib==3.11.2
    contourpy==1.3.3
    cycler==0.12.1
    fonttools==4.69.1
    kiwisolver==1.5.1
    pyparsing==3.3.3
    python-dateutil==4.0.0
    polars==2.1.0
    polars-runtime-32==2.1.0
    psutil==7.2.2
    requests==2.34.2
    urllib3==2.8.0
    charset-normalizer==3.5.3
    nvidia-ml-py==13.615.71
    ultralytics-thop==2.2.3
    ultralytics-platform==0.1.99
    tzdata==2026.6
)

if [ ! -f "$TARGET/.complete" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$PYTHON" ]; then
        echo "error: python3 with pip is needed to install the zoo's packages" >&2
        exit 1
    fi
    TORCH_DIR="$("$HERE/install-torch-full.sh")"
    mkdir -p "$CACHE"
    partial="$(mktemp -d "$CACHE/.zoo-$ZOO_TAG.XXXXXX")"
    trap 'rm -rf "$partial"' EXIT
    echo "installing the zoo's packages into $TARGET (about 400 MB, once per cache)" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        --target "$partial" "${PACKAGES[@]}" >&2
    # --no-deps keeps torch out; this makes sure no second copy came in.
    rm -rf "$partial"/torch "$partial"/torch-*.dist-info "$partial"/bin
    check() { PYTHONPATH="$TORCH_DIR:$partial" "$PYTHON" -c "$1" >&2; }
    # torch must come from the torch folder, at 2.13.0.
    check "import torch, torchvision, timm, transformers, ultralytics
assert torch.__file__.startswith('$TORCH_DIR/'), torch.__file__
assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"
    if ! check 'import torchaudio, torch; torchaudio.transforms.MelSpectrogram(n_mels=40)(torch.zeros(1, 1600))'; then
        echo "torchaudio 2.11.1 does not run with torch 2.13.0: left out of the zoo" >&2
        rm -rf "$partial"/torchaudio "$partial"/torchaudio-*.dist-info
    fi
    touch "$partial/.complete"
    rm -rf "$TARGET"
    mv "$partial" "$TARGET"
    trap - EXIT
fi
echo "$TARGET"
