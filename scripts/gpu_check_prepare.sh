#!/usr/bin/env bash
# Fills .gpu_check/ for bench/gpu_check.py on a GPU host that has no network:
#   wheels/    what the check imports beyond torch, transformers, torchvision and pillow
#              (pillow-heif, at pyproject.toml's pin), for CPython 3.12 on manylinux x86_64;
#   datasets/  imagenet-sample-100/, cifar10-train.tar.gz and cifar10-test.tar.gz, copied
#              from DATASETS (default ../shared/datasets, beside the checkout).
# Run it here, with the package registry, from anywhere:
#   bash scripts/gpu_check_prepare.sh [DATASETS]
# The folder is ignored by git (.git/info/exclude); carry it to the GPU host with the
# checkout (the device tool: carry [".gpu_check"]). About 40 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
datasets="${1:-../shared/datasets}"
out=.gpu_check
python="${PYTHON:-python3}"

exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$out/" "$exclude" 2>/dev/null || echo "/$out/" >>"$exclude"

mkdir -p "$out/wheels" "$out/datasets"
pin="$(grep -o 'pillow-heif==[0-9.]*' pyproject.toml)"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$out/wheels" "$pin"

cp -r "$datasets/imagenet-sample-100" "$out/datasets/"
cp "$datasets/cifar10-train.tar.gz" "$out/datasets/"
tar -czf "$out/datasets/cifar10-test.tar.gz" -C "$datasets" cifar10-test
du -sh "$out"/* && du -sh "$out"
