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
    assert list(results.glob(f"{name}-smoke-*.md")), f"no {name}-smoke-*.md table in {results}"
    return json.loads(found[0].read_text())


def test_indexer_smoke_runs_every_phase_and_cleans_up(stack_urls, es, tmp_path):
    from imgsearch.compute import read_cpu_facts
    from indexer import connect, load_mysql_config

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
    assert isinstance(results["target"]["chosen_is_fastest"], bool)  # vs the precision x compile matrix
    assert results["machine"]["cpu_vendor"] == read_cpu_facts().vendor

    alias, table = results["settings"]["alias"], results["settings"]["table"]
    assert es.indices.get(index=f"{alias}*", expand_wildcards="all") == {}
    connection = connect(load_mysql_config({"MYSQL_URL": stack_urls[1]}))
    try:
        cursor = connection.cursor()
        cursor.execute("SHOW TABLES LIKE %s", (table,))
        assert cursor.fetchall() == []
    finally:
        connection.close()


def test_recall_smoke_measures_every_variant_against_exact_search(stack_urls, es, tmp_path):
    results = run_bench("recall", stack_urls, tmp_path, "--sizes", "1000", "--queries", "40")

    [size] = results["sizes"]
    variants = {row["variant"] for row in size["rows"]}
    assert {"hnsw", "int8_hnsw, no rescore", "bbq_hnsw, rescore x3"} <= variants
    api_rows = {row["variant"]: row for row in size["rows"] if row["api_setting"]}
    assert set(api_rows) == variants
    # Float HNSW on 1,000 vectors is practically exact; a broken truth or request would show here.
    assert api_rows["hnsw"]["recall_mean"] >= 0.95
    assert all(0.0 <= row["recall_mean"] <= 1.0 and row["p50_ms"] > 0 for row in size["rows"])
    assert all(facts["store_bytes"] > 0 for facts in size["indices"].values())
    assert results["recommendation"]["reasons"]
    assert es.indices.get(index="bench-recall-1000-*", expand_wildcards="all") == {}


def test_quality_smoke_agrees_with_the_in_process_search(stack_urls, es, tmp_path):
    edits = "identity,scale_0.5,jpeg_q30,flip_h"
    results = run_bench("quality", stack_urls, tmp_path, "--products", "6", "--edits", edits)

    by_edit = {row["edit"]: row for row in results["summary"]["by_edit"]}
    assert set(by_edit) == set(edits.split(","))
    # The catalog file itself must find its own product first, through the API and in-process.
    assert by_edit["identity"]["api_top1"] == 1.0 and by_edit["identity"]["baseline_top1"] == 1.0
    assert all(row["api_errors"] == 0 and row["api_top5"] >= row["api_top1"] for row in by_edit.values())
    assert results["stored_vs_recomputed"]["min_cosine"] > 0.9999
    assert results["agreement"]["score_gap_max"] < 0.01
    assert es.indices.get(index=f"{results['settings']['alias']}*", expand_wildcards="all") == {}


def test_soak_smoke_serves_every_request_while_the_alias_swaps(stack_urls, es, tmp_path):
    results = run_bench("soak", stack_urls, tmp_path, "--seconds", "15", "--baseline-seconds", "5")

    summary = results["summary"]
    assert summary["passed"], summary["failure_reasons"]
    assert summary["requests"] > 0 and summary["errors"] == 0
    assert summary["swaps_under_load"] == len(results["indexer_runs"]) == 2
    assert results["cleanup"]["left_over"] == []


def test_search_smoke_measures_api_and_raw_knn(stack_urls, es, tmp_path):
    alias = f"bench-smoke-{os.getpid()}"
    results = run_bench("search", stack_urls, tmp_path, "--docs", "500", "--alias", alias, "--drop")

    series = {phase["series"] for phase in results["phases"]}
    assert {"model", "decode+model", "upload", "by id", "raw get+kNN", "raw kNN"} <= series
    summary = results["summary"]
    assert summary["soak_errors"] == 0
    assert all(summary[key] > 0 for key in ("model_p50_ms", "upload_p50_ms", "id_p50_ms", "raw_knn_p50_ms"))
    assert results["index"]["docs"] == 500
    assert es.indices.get(index=f"{alias}*", expand_wildcards="all") == {}


def test_ingest_smoke_measures_the_sink_against_the_ceiling_and_cleans_up(stack_urls, es, tmp_path):
    sizes = ("--docs", "400", "--threads", "1,2", "--streams", "1,2")
    results = run_bench("ingest", stack_urls, tmp_path, *sizes)

    phases = [(phase["kind"], phase["count"]) for phase in results["phases"]]
    assert phases == [("ceiling", 1), ("ceiling", 2), ("naive", 1), ("sink", 1), ("sink", 2)]
    assert all(phase["docs"] == 400 and phase["docs_per_second"] > 0 for phase in results["phases"])
    assert set(results["ratios"]) == {
        "sink_over_ceiling",
        "sink_over_naive",
        "sink_1_streams_over_ceiling",
        "sink_2_streams_over_ceiling",
    }
    assert results["settings"]["sink_streams"] == 2
    assert es.indices.get(index="bench-ingest-*", expand_wildcards="all").body == {}


def test_offline_smoke_needs_no_services_and_accounts_every_row(tmp_path):
    """`bench.indexer --no-services` (bench/offline.py): no ES_URL, no MYSQL_URL; every phase measured,
    every pipeline row accounted by the counting sink, the ratios and targets written."""
    env = {key: value for key, value in os.environ.items() if key not in ("ES_URL", "MYSQL_URL")}
    command = [
        sys.executable,
        "-m",
        "bench.indexer",
        "--no-services",
        "--smoke",
        "--results-dir",
        str(tmp_path),
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env | {"VGG16_WEIGHTS": "random"},
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    (found,) = tmp_path.glob("indexer-offline-smoke-*.json")
    assert list(tmp_path.glob("indexer-offline-smoke-*.md"))
    results = json.loads(found.read_text())
    phases = {phase["phase"].split(",")[0]: phase for phase in results["phases"]}
    assert list(phases) == ["model float32", "model bfloat16", "decode", "pipeline", "naive"]
    assert phases["pipeline"]["statuses"] == {"indexed": results["settings"]["images"]} == {"indexed": 48}
    assert all(phase["images_per_second"] > 0 for phase in phases.values())
    assert set(results["ratios"]) == {
        "pipeline_over_ceiling",
        "pipeline_over_naive",
        "pipeline_over_model",
        "pipeline_over_decode",
        "bfloat16_over_float32",
    }
    assert results["target"]["ratio"] == "pipeline_over_ceiling" and "met" in results["target"]
    assert results["machine"]["cpu_model"] and "gpus" in results["machine"]
