#!/usr/bin/env bash
# Create .venv and install VisionNet with the given extras (default: cpu).
# Re-running is cheap: the install is skipped while pyproject.toml and the
# extras are unchanged. VISIONNET_TORCH=gpu installs the CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${VISIONNET_TORCH:-cpu}${1:+,$1}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.visionnet-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing visionnet[$extras] into .venv ..." >&2
  # pip's log goes to a file (this machine's pip config is noisy); shown on failure.
  if ! .venv/bin/python -m pip install --quiet -e ".[$extras]" > .venv/pip.log 2>&1; then
    grep -v "^WARNING: Location" .venv/pip.log >&2
    exit 1
  fi
  .venv/bin/python -c "import visionnet.web, visionnet.workers, visionnet.config" # fails loudly if the install did
  echo "$want" > "$stamp"
fi

# The browser tests drive a system Chromium (no browser download: the network is
# closed but for the package registries). Installed here when apt can; when it
# cannot, the browser tests are skipped with the reason printed.
if [[ ",$extras," == *",test,"* ]] && ! command -v chromium > /dev/null; then
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing chromium (apt) for the browser tests ..." >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        > .venv/apt.log 2>&1; then
      echo "WARNING: could not install chromium (see .venv/apt.log): browser tests will be skipped" >&2
    fi
  else
    echo "WARNING: no chromium and no root apt-get: browser tests will be skipped" >&2
  fi
fi

# The two-host test makes its hosts from network namespaces with `ip` and reads
# their listeners with `ss` (both in iproute2), as root.
if [[ ",$extras," == *",test,"* ]] && ! command -v ip > /dev/null; then
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing iproute2 (apt) for the two-host test ..." >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; } \
        > .venv/apt-iproute2.log 2>&1; then
      echo "WARNING: could not install iproute2 (see .venv/apt-iproute2.log): the two-host test will be skipped" >&2
    fi
  else
    echo "WARNING: no ip command and no root apt-get: the two-host test will be skipped" >&2
  fi
fi

# The compose test validates docker-compose.yml with Debian's docker-compose 1.29.2
# (its `config` needs no Docker engine). --no-install-recommends leaves out docker.io
# and containerd (about 270 MB installed); without it only that check is skipped.
if [[ ",$extras," == *",test,"* ]] && ! command -v docker-compose > /dev/null; then
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing docker-compose (apt) for the compose test ..." >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends docker-compose; } >> .venv/apt.log 2>&1; then
      echo "WARNING: could not install docker-compose (see .venv/apt.log): the compose" \
        "file's schema check will be skipped" >&2
    fi
  else
    echo "WARNING: no docker-compose and no root apt-get: the compose file's schema check" \
      "will be skipped" >&2
  fi
fi
