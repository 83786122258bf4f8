#!/usr/bin/env bash
# The test command (README and .ci/run): system packages, a non-editable install with test
# extras (so package data is tested as users get it), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/install-browser.sh
python -m pip install --quiet --disable-pip-version-check ".[test]"
python -m pytest -q -p no:cacheprovider
