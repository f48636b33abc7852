"""The index definition: mappings/images.json with the configured vector type and its rescoring."""

from __future__ import annotations

import pytest

from imgsearch.config import load_elastic_config
from imgsearch.indices import load_index_definition


def feature_options(vector_type: str | None) -> dict:
    env = {"ES_VECTOR_INDEX_TYPE": vector_type} if vector_type else {}
    body = load_index_definition(load_elastic_config(env), {})
    return body["mappings"]["properties"]["feature"]["index_options"]


def test_the_default_is_int8_hnsw_rescored_from_twice_k():
    assert feature_options(None) == {
        "type": "int8_hnsw",
        "m": 16,
        "ef_construction": 100,
        "rescore_vector": {"oversample": 2.0},
    }


@pytest.mark.parametrize(
    ("vector_type", "oversample"),
    [("int4_hnsw", 2.0), ("bbq_hnsw", 3.0), ("int8_flat", 2.0), ("bbq_flat", 3.0)],
)
def test_quantized_types_rescore_with_their_own_oversample(vector_type, oversample):
    options = feature_options(vector_type)
    assert options["type"] == vector_type and options["rescore_vector"] == {"oversample": oversample}


@pytest.mark.parametrize("vector_type", ["hnsw", "flat"])
def test_float_types_have_nothing_to_rescore(vector_type):
    options = feature_options(vector_type)
    assert options["type"] == vector_type and "rescore_vector" not in options


@pytest.mark.parametrize("vector_type", ["flat", "int8_flat", "int4_flat", "bbq_flat"])
def test_flat_types_carry_no_graph_parameters(vector_type):
    """Elasticsearch refuses m and ef_construction without an HNSW graph."""
    options = feature_options(vector_type)
    assert "m" not in options and "ef_construction" not in options
