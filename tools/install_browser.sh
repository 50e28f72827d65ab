#!/usr/bin/env bash
# Install what tests/test_web.py needs: Debian's Chromium (driven headless) and the Playwright
# Python client. No browser is downloaded by Playwright itself (never `playwright install`): the
# test launches /usr/bin/chromium through executable_path. Idempotent; quick when already there.
set -euo pipefail

PY="${PYTHON:-python}"

if ! command -v chromium >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

if ! "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; then
    "$PY" -m pip install -q "playwright>=1.40"
fi

/usr/bin/chromium --version
"$PY" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
