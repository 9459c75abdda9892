#!/usr/bin/env bash
# Download (here, where PyPI is reachable) the wheels the GPU machine lacks, into .whl/ (git-ignored),
# for the device tool's `carry: [".whl"]`. The device image already has torch, numpy, scipy, pandas,
# matplotlib, scikit-image, jinja2, click, tabulate, tqdm, rich, jaxtyping, ninja, imageio, torchmetrics
# (see the device tool's KINDS.md). Python 3.12 there. ~7 MB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
plat=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform any --only-binary=:all:)
for p in gsplat==1.5.3 omegaconf==2.4.0 roma lpips==0.1.4 plyfile submitit; do
  python3 -m pip download -q --no-deps "${plat[@]}" -d .whl "$p"
done
ls -la .whl
