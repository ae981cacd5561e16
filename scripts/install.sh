#!/usr/bin/env bash
# One-step set-up on a fresh machine: edgeprune with its test extras, and Debian's Chromium for the
# report page test (skipped when already there or when apt-get is not available).
set -euo pipefail
cd "$(dirname "$0")/.."
# torch is pinned to 2.13.0 exactly in pyproject.toml: a looser pin would pull the CUDA build.
python3 -m pip install -q -e ".[test]"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
echo "edgeprune installed: $(command -v edgeprune)"
