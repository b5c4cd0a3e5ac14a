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
echo "anprfed installed in .venv ($(.venv/bin/anprfed --version))"
