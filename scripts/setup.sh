#!/usr/bin/env bash
# Set up a virtual environment with the CPU build of PyTorch and Lexiscope.
#   --test  also installs the test tools and, through apt, Chromium, ChromeDriver and redis-server.
# GPU machines: install a CUDA build of torch into .venv first (see README), then run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
if [ "${1:-}" = "--test" ]; then
  extra="[test]"
  missing=""
  for bin in chromium chromedriver redis-server; do command -v $bin >/dev/null || missing=1; done
  if [ -n "$missing" ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver redis-server >/dev/null
  fi
fi
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
log=$(mktemp)
pipq() {  # quiet pip that still shows everything when it fails
  python -m pip install -q "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }
}
pipq --upgrade pip
# The CPU build first: a bare `torch` requirement would pull several GB of CUDA packages.
python -c "import torch" 2>/dev/null || pipq torch==2.13.0
pipq -e ".$extra"
python -c "import compute, store, dashboard, torch" # fail here, not in the tests, if the install broke
