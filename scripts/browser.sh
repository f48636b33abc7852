#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed (Debian's `chromium` package); print its path.
set -euo pipefail
find_browser() { command -v chromium || command -v chromium-browser || true; }
browser="$(find_browser)"
if [[ -z "$browser" ]]; then
  echo "browser.sh: installing Debian's chromium (used by tests/integration/test_search_page.py)" >&2
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2 || true
  $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
  browser="$(find_browser)"
fi
[[ -n "$browser" ]] || { echo "browser.sh: chromium could not be installed" >&2; exit 1; }
echo "$browser"
