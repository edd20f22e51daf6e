#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests (Playwright drives /usr/bin/chromium;
# its own browser download does not work offline). Installs them only when absent.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "Installing Debian's chromium and chromium-driver…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version
