"""Helpers for integration tests: seed a catalog, run `full` or `incremental` in-process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from demo.catalog import CatalogEntry, load_catalog
from devstack.kit.catalog import quick_run_variables, throwaway_catalog
from imgsearch.esclient import make_client
from indexer.config import load_indexer_config
from indexer.full import FullRebuild
from indexer.incremental import IncrementalRun
from indexer.pipeline import RunOptions
from indexer.report import RunReport
from indexer.source import CatalogSource, connect


def photo_entries(count_products: int = 4, views: int = 2) -> list[CatalogEntry]:
    """Rows matching the files written by the photo_folder fixture (ids from 1)."""
    from demo.catalog import PHOTOS, VIEWS

    entries: list[CatalogEntry] = []
    for number, name in enumerate(PHOTOS[:count_products], start=1):
        for view in VIEWS[:views]:
            entries.append(
                CatalogEntry(len(entries) + 1, f"product-{number:03d}", f"p{number:03d}-{name}-{view}.jpg")
            )
    return entries


def execute_sql(env: dict[str, str], sql: str, params: tuple = ()) -> None:
    """Run one statement on the test's catalog table (`{table}` is replaced by its name)."""
    config = load_indexer_config(env).mysql
    connection = connect(config)
    try:
        connection.cursor().execute(sql.format(table=config.table), params)
    finally:
        connection.close()


def seed(env: dict[str, str], entries: list[CatalogEntry]) -> None:
    load_catalog(load_indexer_config(env).mysql, entries)


def scratch_catalog(
    stack_urls: tuple[str, str], report_dir: str, prefix: str, entries: list[CatalogEntry], **extra: str
) -> AbstractContextManager[dict[str, str]]:
    """A throwaway alias and table holding `entries`, the test variables and `extra`; the environment,
    every index of the alias and the table removed afterwards."""
    es_url, mysql_url = stack_urls
    base = {"ES_URL": es_url, "MYSQL_URL": mysql_url, **quick_run_variables(report_dir), **extra}
    return throwaway_catalog(base, prefix, entries)


@contextmanager
def indexed_catalog(
    stack_urls: tuple[str, str],
    extractor,
    image_server: str,
    report_dir: str,
    es,
    entries: list[CatalogEntry],
    prefix: str = "test-api",
    record_run: bool = False,
    **options,
) -> Iterator[dict[str, str]]:
    """A catalog served by the local image server, indexed by `full` under a fresh alias; yields the
    environment (ES_INDEX is the alias) and removes every index of the alias and the table afterwards.
    `record_run` stores the run report in `<alias>-runs` as the CLI does."""
    from indexer.state import StateStore

    with scratch_catalog(stack_urls, report_dir, prefix, entries, IMAGE_BASE_URL=image_server) as env:
        report = run_full(env, extractor, **options)
        if record_run:
            StateStore(es, env["ES_INDEX"]).ensure().record_run(report.as_dict())
        yield env


def run_full(env: dict[str, str], extractor, **options) -> RunReport:
    """Run `indexer full` in-process (sharing the session's model) and return its report."""
    return run_mode(FullRebuild, env, extractor, **options)


def run_incremental(env: dict[str, str], extractor, **options) -> RunReport:
    """Run `indexer incremental` in-process and return its report."""
    return run_mode(IncrementalRun, env, extractor, **options)


def run_mode(runner, env: dict[str, str], extractor, **options) -> RunReport:
    config = load_indexer_config(env)
    partition = options.get("partition")
    source = CatalogSource(
        config.mysql,
        page_size=options.pop("page_size", 500),
        **({"partition": partition} if partition else {}),
    )
    try:
        run = runner(config, make_client(config.elastic), source, extractor, RunOptions(**options))
        return run.run()
    finally:
        source.close()


REPO = Path(__file__).resolve().parents[2]


def cli_environment(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "PYTHONPATH": str(REPO)}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run `python -m indexer ARGS` in a fresh process and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        cwd=REPO,
        env=cli_environment(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def start_cli(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen:
    """Start `python -m indexer ARGS` in the background, stdout and stderr into log_path."""
    log = log_path.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "indexer", *args],
        cwd=REPO,
        env=cli_environment(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def assert_each_photo_finds_itself(
    client, folder: Path, entries: list[CatalogEntry], min_score: float
) -> None:
    """Upload every entry's photo to the API test client: its own row is the top hit, above min_score."""
    for entry in entries:
        upload = (folder / entry.photo).read_bytes()
        response = client.post("/search?size=4", data={"image": (io.BytesIO(upload), "q.jpg")})
        assert response.status_code == 200, response.get_json()
        top = response.get_json()["hits"][0]
        assert (top["id"], top["relation_id"]) == (str(entry.id), entry.relation_id)
        assert top["score"] > min_score
