#!/usr/bin/env bash
# Install the headless browser the HTML-view test uses (Debian's chromium), once; print its path.
#
#   bash tools/setup_browser.sh        # last line of output: the chromium binary
#
# Idempotent: if a chromium binary is already on PATH nothing is installed. Needs root (or sudo)
# and the Debian package mirrors; the browser itself comes from Debian, never from a download.
set -euo pipefail
find_browser() {
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}
if ! bin=$(find_browser); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  echo "installing Debian's chromium (apt-get)..." >&2
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >&2
  bin=$(find_browser) || { echo "chromium was installed but is not on PATH" >&2; exit 1; }
fi
echo "$bin"
