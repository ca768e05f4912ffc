#!/usr/bin/env bash
# Set up (first run) and start the embedded stack on 127.0.0.1. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/visionnet up "$@"
