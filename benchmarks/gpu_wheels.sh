#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels that the lent GPU machine lacks (see the device
# notes: its image has torch, transformers, accelerate, einops, safetensors, torchvision, but not
# these): diffusers (+ importlib_metadata) for imagegen itself, and imagen-pytorch with what its
# `imagen_pytorch.imagen_pytorch` module imports (beartype, kornia, kornia-rs) for the baseline.
# Run on a developer machine (PyPI reachable); then name `.whl` in the device call's `carry` and
# install them there with the line in docs/performance.md, "To run on a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl diffusers==0.42.1 importlib_metadata==8.7.0 imagen-pytorch==2.1.0 beartype kornia kornia-rs
ls -la .whl
du -sh .whl
