#!/usr/bin/env bash
# Install the load generator of `make bench` (wrk, Debian package) when it is missing.
# Needs root or sudo; run once per machine. Prints what it did.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_wrk.sh: wrk is missing and this is not root (no sudo): apt-get install wrk" >&2; exit 1; }
    SUDO="sudo"
fi
echo "install_wrk.sh: installing wrk (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wrk >/dev/null
wrk --version 2>&1 | head -n1 || true
