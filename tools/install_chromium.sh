#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/test_browser.py), the way CI needs it:
# Playwright drives this browser (/usr/bin/chromium); its own browser download does not work
# offline. Needs root (or passwordless sudo) and apt-get; prints why not and exits 3 otherwise.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get here; install Chromium yourself and put it on PATH" >&2
    exit 3
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install_chromium.sh: apt-get needs root: run 'sudo apt-get install chromium'" >&2
        exit 3
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
