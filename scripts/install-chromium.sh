#!/bin/sh
# Install Debian's headless-capable Chromium for the report's browser test (pytest -m browser).
# Idempotent and quiet: does nothing when a chromium is already on PATH. It never fails the
# build: without apt (or root, or a network) it says so once and the browser test then skips
# with its own reason, so CI on other images still goes green on everything else.
set -u

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not available; the browser test will be skipped" >&2
    exit 0
fi

# Root runs apt directly; a CI runner user usually has passwordless sudo.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-chromium: not root and no sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Ubuntu's "chromium" is a snap shim that does not work in containers; Debian's is a real package.
if $SUDO apt-get update -qq >/dev/null 2>&1 \
    && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
        >/dev/null 2>&1; then
    exit 0
fi
echo "install-chromium: apt-get could not install chromium; the browser test will be skipped" >&2
exit 0
