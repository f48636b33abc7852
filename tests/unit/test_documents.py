"""Documents carry the row's fields and its vector rounded to 7 decimals, as Python's round() would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
from elasticsearch.serializer import JsonSerializer, OrjsonSerializer

from imgsearch.documents import CatalogRow, indexed_document, rounded


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, 512)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_numpy_rounding_gives_exactly_what_round_per_value_gave():
    for vector in unit_vectors(400, seed=3):
        assert rounded(vector) == [round(float(value), 7) for value in vector]
    assert rounded([0.12345675, -1e-9, 1.0]) == [round(0.12345675, 7), round(-1e-9, 7), 1.0]


def test_a_document_reads_back_the_same_through_either_serializer():
    row = CatalogRow(7, "product-7", "7.jpg", datetime(2026, 12, 5, tzinfo=UTC))
    document = indexed_document(row, "http://shop/7.jpg", unit_vectors(1, seed=4)[0], datetime.now(UTC))
    assert all(type(value) is float for value in document["feature"])
    as_json, as_orjson = JsonSerializer().dumps(document), OrjsonSerializer().dumps(document)
    assert json.loads(as_json) == json.loads(as_orjson) == json.loads(json.dumps(document))
