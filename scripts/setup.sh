#!/usr/bin/env bash
# Create .venv and install anprfed with the pinned constraints (torch 2.13.0 CPU, flwr 1.41.0).
# Usage: bash scripts/setup.sh        # the toolkit
#        bash scripts/setup.sh dev    # the toolkit plus test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
if [ "${1:-}" = "dev" ]; then extra="[dev]"; fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -c constraints.txt -e ".${extra}"
# The tests render the DPIA report in headless Chromium (tests/dpia): Debian's package.
if [ "${1:-}" = "dev" ] && [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package) for the DPIA browser test"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "anprfed installed in .venv ($(.venv/bin/anprfed --version))"
