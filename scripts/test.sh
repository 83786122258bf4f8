#!/usr/bin/env bash
# The test command (README and .ci/run): system packages, a non-editable install with test
# extras (so package data is tested as users get it), then the default suite: every test not marked
# slow (`bash scripts/test.sh --slow` runs the slow ones too, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/install-browser.sh
python -m pip install --quiet --disable-pip-version-check ".[test]"
if [[ "${1:-}" == "--slow" ]]; then
    python -m pytest -q -p no:cacheprovider
else
    python -m pytest -q -p no:cacheprovider -m "not slow"
fi
