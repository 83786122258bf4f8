#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the HTML report's browser test
# (tests/test_report_browser.py). Installs only when missing; apt-get needs root.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing chromium with apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
