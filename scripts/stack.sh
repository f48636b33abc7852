#!/usr/bin/env bash
# The local stack without Docker (Elasticsearch from the official integ-test zip, one node or a cluster,
# a security-on node for the security tests, MariaDB from Debian): a wrapper of `python -m devstack`,
# whose --help lists the commands (up, down, status, env, ...) and the environment variables.
#   eval "$(bash scripts/stack.sh env)"     ES_NODES=3 bash scripts/stack.sh up     bash scripts/stack.sh --help
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
if [ -x "$REPO_DIR/.venv/bin/python" ]; then
  PYTHON="$REPO_DIR/.venv/bin/python"
else
  PYTHON="$(command -v python3.11 || command -v python3)" || {
    echo "[stack] ERROR: python3 not found (run make venv)" >&2
    exit 1
  }
fi
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m devstack "$@"
