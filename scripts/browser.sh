#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed (Debian's `chromium` package); print its path.
# tests/integration/test_search_page.py drives it with Playwright's Python client through
# `executable_path` (no `playwright install`, which would download a browser from a CDN).
set -euo pipefail
find_browser() { command -v chromium || command -v chromium-browser || true; }
browser="$(find_browser)"
if [[ -z "$browser" ]]; then
  echo "browser.sh: installing Debian's chromium (used by tests/integration/test_search_page.py)" >&2
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2 || true
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
  browser="$(find_browser)"
fi
[[ -n "$browser" ]] || { echo "browser.sh: chromium could not be installed" >&2; exit 1; }
# It must start headless here (as root in a container it needs --no-sandbox, like the test passes).
if ! dom="$(timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
             --dump-dom 'data:text/html,<p>browser-ok</p>' 2>/dev/null)" || [[ "$dom" != *browser-ok* ]]; then
  echo "browser.sh: $browser is installed but does not start headless" >&2
  exit 1
fi
echo "$browser"
