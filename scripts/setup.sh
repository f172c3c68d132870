#!/usr/bin/env bash
# Set up a virtual environment with the CPU build of PyTorch and Lexiscope, and, through apt where it
# exists, WordNet 3.0 (Debian's wordnet-base: the supersense labels of `precompute`).
#   --test  also installs the test tools and, through apt, Chromium, ChromeDriver and redis-server.
# GPU machines: install a CUDA build of torch into .venv first (see README), then run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
packages=""
[ -f /usr/share/wordnet/data.noun ] || packages="wordnet-base"
if [ "${1:-}" = "--test" ]; then
  extra="[test]"
  for bin in chromium chromedriver redis-server; do
    command -v $bin >/dev/null || packages="$packages chromium chromium-driver redis-server"
  done
fi
if [ -n "$packages" ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $(echo $packages | tr ' ' '\n' | sort -u) >/dev/null
  else
    echo "no apt-get: install $packages yourself (README: WordNet)" >&2
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
