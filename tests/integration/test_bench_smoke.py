"""The benchmarks' --smoke modes run end to end against the real stack and write sane results.

Nothing here is timed: these tests only keep `bench/` from rotting (a phase that stops running,
a result file that loses a field, throwaway indices or tables left behind).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 600


def run_bench(name: str, stack_urls: tuple[str, str], results: Path, *extra: str) -> dict:
    """`python -m bench.<name> --smoke --results-dir <results>`; return its one JSON result."""
    es_url, mysql_url = stack_urls
    env = {**os.environ, "ES_URL": es_url, "MYSQL_URL": mysql_url, "VGG16_WEIGHTS": "random"}
    command = [sys.executable, "-m", f"bench.{name}", "--smoke", "--results-dir", str(results), *extra]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    found = sorted(results.glob(f"{name}-smoke-*.json"))
    assert len(found) == 1, f"expected one {name}-smoke-*.json in {results}, found {found}"
    assert (results / f"{name}-smoke-latest.md").is_file()
    return json.loads(found[0].read_text())


def test_indexer_smoke_runs_every_phase_and_cleans_up(stack_urls, es, tmp_path):
    from indexer.config import load_mysql_config
    from indexer.source import connect

    results = run_bench("indexer", stack_urls, tmp_path)

    phases = {phase["phase"]: phase for phase in results["phases"]}
    assert list(phases) == [
        "ceiling pass 1",
        "pipeline run 1",
        "ceiling pass 2",
        "full, reuse",
        "incremental",
        "naive",
    ]
    assert phases["pipeline run 1"]["statuses"] == {"indexed": 16}
    assert phases["full, reuse"]["statuses"] == {"reused": 400}
    assert phases["incremental"]["rows_changed"] == 4
    assert phases["incremental"]["statuses"] == {"indexed": 4}
    assert phases["naive"]["images"] == 4
    assert all(phase["images_per_second"] > 0 for phase in phases.values())
    assert set(results["ratios"]) >= {
        "pipeline_over_ceiling",
        "full_reuse_over_pipeline",
        "incremental_over_pipeline",
    }

    alias, table = results["settings"]["alias"], results["settings"]["table"]
    assert es.indices.get(index=f"{alias}*", expand_wildcards="all") == {}
    connection = connect(load_mysql_config({"MYSQL_URL": stack_urls[1]}))
    try:
        cursor = connection.cursor()
        cursor.execute("SHOW TABLES LIKE %s", (table,))
        assert cursor.fetchall() == []
    finally:
        connection.close()
