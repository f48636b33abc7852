"""Keras backends on the real stack: an index built under TensorFlow is searched by an API under JAX,
and an index built by the indexer under JAX is searched by an API under TensorFlow."""

from __future__ import annotations

import importlib.util
import json
from urllib.parse import urlsplit

import pytest

from devstack.kit.apiserver import get_json, gunicorn_api
from devstack.kit.loadgen import KeepAliveClient, upload_request
from searchapi import create_app
from tests.integration.helpers import (
    assert_each_photo_finds_itself,
    indexed_catalog,
    photo_entries,
    run_cli,
    seed,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed"),
]
MIN_SCORE = 0.99  # each side in its own `auto` precision: bf16 under TF's graph and under XLA differ a little


def test_an_api_under_jax_searches_an_index_built_under_tensorflow(
    stack_urls, extractor, image_server, photo_folder, es, tmp_path
):
    entries = photo_entries(4, 2)
    with (
        indexed_catalog(stack_urls, extractor, image_server, str(tmp_path), es, entries) as env,
        gunicorn_api(env, tmp_path / "api.log", KERAS_BACKEND="jax") as url,
    ):
        status, ready = get_json(url + "/ready")
        assert status == 200 and ready["compute"]["backend"] == "jax", ready
        stats = get_json(url + "/stats")[1]
        assert stats["model_matches"] is True
        assert stats["indices"][0]["compute"]["backend"] == "tensorflow"
        client = KeepAliveClient("127.0.0.1", urlsplit(url).port)
        try:
            for entry in entries:
                status, body = client.send(upload_request((photo_folder / entry.photo).read_bytes(), 4))
                assert status == 200, body
                top = json.loads(body)["hits"][0]
                assert (top["id"], top["relation_id"]) == (str(entry.id), entry.relation_id)
                assert top["score"] > MIN_SCORE
        finally:
            client.close()


def test_an_api_under_tensorflow_searches_an_index_built_under_jax(
    env, extractor, photo_folder, es, drop_table
):
    entries = photo_entries(4, 2)
    seed(env, entries)
    done = run_cli({**env, "KERAS_BACKEND": "jax"}, "full")
    assert done.returncode == 0, done.stderr[-3000:]
    (mapping,) = es.indices.get_mapping(index=env["ES_INDEX"]).body.values()
    assert mapping["mappings"]["_meta"]["compute"]["backend"] == "jax"
    client = create_app(env, extractor=extractor).test_client()
    stats = client.get("/stats").get_json()
    assert stats["model_matches"] is True and stats["compute"]["backend"] == "tensorflow"
    assert_each_photo_finds_itself(client, photo_folder, entries, MIN_SCORE)
