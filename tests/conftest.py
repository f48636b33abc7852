"""Shared fixtures: the real stack, throwaway catalogs and aliases, a local image server, the model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kit.catalog import TEST_SEED, catalog_environment, drop_scratch_tables, scratch_tables
from devstack.kit.imageserver import serve_folder
from tests.support import stack

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def stack_urls() -> Iterator[tuple[str, str]]:
    """(ES_URL, MYSQL_URL): from the environment, else testcontainers, else a loud failure."""
    found = stack.from_environment()
    if found:
        before = scratch_tables(found[1])
        yield found
        drop_scratch_tables(found[1], keep=before)  # the shared stack is left as it was found
        return
    if not stack.docker_available():
        pytest.fail(stack.NO_STACK_MESSAGE, pytrace=False)
    es_url, mysql_url, stop = stack.start_containers()
    try:
        yield es_url, mysql_url
    finally:
        stop()


@pytest.fixture(scope="session")
def es(stack_urls):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(stack_urls[0].split(","), request_timeout=30)
    client.cluster.health(wait_for_status="yellow", timeout="30s")
    return client


@pytest.fixture(scope="session")
def extractor_in():
    """The seeded random-weights VGG16 in a given precision ('auto', 'float32', 'bfloat16'), each built
    once per session (model load is the slow part); 'auto' is whichever this machine's hardware picks."""
    from imgsearch.features import FeatureExtractor

    built = {}

    def get(precision: str = "auto"):
        if precision not in built:
            model = FeatureExtractor("random", seed=TEST_SEED, precision=precision)
            model.warm_up()
            built[precision] = built.setdefault(model.compute.precision, model)
        return built[precision]

    return get


@pytest.fixture(scope="session")
def extractor(extractor_in):
    """The model as this machine runs it by default (VGG16_PRECISION=auto)."""
    return extractor_in("auto")


@pytest.fixture
def alias(es) -> Iterator[str]:
    """A unique alias; every index of it is deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")


@pytest.fixture
def catalog_env(stack_urls, alias, tmp_path) -> dict[str, str]:
    """Environment for a run against a fresh images table and a fresh alias."""
    return catalog_environment(*stack_urls, alias, str(tmp_path / "reports"))


@pytest.fixture
def drop_table(catalog_env) -> Iterator[None]:
    yield
    from indexer.config import load_mysql_config
    from indexer.source import connect

    config = load_mysql_config(catalog_env)
    connection = connect(config)
    connection.cursor().execute(f"DROP TABLE IF EXISTS `{config.table}`")
    connection.close()


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Real photographs: 4 products x 2 views, plus broken files."""
    from demo.catalog import write_photo_files

    folder = tmp_path_factory.mktemp("photos")
    write_photo_files(folder, products=4, views=2)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    return folder


@pytest.fixture(scope="session")
def image_server(photo_folder) -> Iterator[str]:
    with serve_folder(photo_folder) as base_url:
        yield base_url
