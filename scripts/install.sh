#!/usr/bin/env bash
# One-step set-up on a fresh machine: a virtual environment in .venv (created, or reused when it is
# already there) holding edgeprune with its test extras, and Debian's Chromium for the report page
# test. Works from Debian's own Python (which refuses system-wide pip installs), pyenv or a plain
# Python: nothing is installed outside .venv except the two Debian packages below, when missing.
#   PYTHON=python3.12 bash scripts/install.sh   picks the interpreter the environment is made from
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   where torch's CPU wheel comes from, on a
#       machine whose pip does not already find a local torch==2.13.0 wheel
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
venv=.venv

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv from $($python -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian ships venv's pip bootstrap in a package of its own.
        rm -rf "$venv"
        apt_install "python3-venv" || { echo "Error: '$python -m venv' failed: install your distribution's venv package (Debian: apt-get install python3-venv)" >&2; exit 2; }
        "$python" -m venv "$venv"
    fi
else
    echo "reusing $venv ($("$venv/bin/python" --version))"
fi
pip=("$venv/bin/python" -m pip install -q)

# torch first, as the CPU build: pyproject asks only torch>=2.2, and on Linux PyPI's torch is the
# CUDA build (gigabytes). Where pip finds no local CPU wheel, give TORCH_INDEX_URL.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "installing torch==2.13.0 (CPU)"
    "${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
fi
echo "installing edgeprune and its test extras into $venv"
"${pip[@]}" -e ".[test]"

if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium || echo "note: Chromium not installed (no apt-get): the report page test will fail"
fi
echo "edgeprune installed: $venv/bin/edgeprune (activate with: source $venv/bin/activate)"
