"""bench.recall's pure logic: recall, percentiles, exact neighbours, memory, the recommendation rule."""

from __future__ import annotations

import numpy as np
import pytest

from bench import recall
from bench.recall import Candidate, Variant


def test_recall_counts_the_exact_top_k_among_the_first_k_found():
    truth = [[1, 2, 3, 4], [5, 6, 7, 8]]
    found = [[4, 3, 2, 1, 9], [5, 9, 10, 11, 6]]  # order does not matter; the 5th hit is beyond k
    assert recall.recall_per_query(found, truth, 4) == [1.0, 0.25]


def test_recall_of_a_short_result_counts_missing_hits_as_misses():
    assert recall.recall_per_query([[1, 2]], [[1, 2, 3, 4]], 4) == [0.5]


def test_recall_needs_one_truth_per_query():
    with pytest.raises(ValueError):
        recall.recall_per_query([[1]], [[1], [2]], 1)


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_interpolates_like_numpy(q):
    values = [5.0, 1.0, 9.0, 3.0, 7.5, 2.25, 8.0]
    assert recall.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_one_value_and_of_none():
    assert recall.percentile([4.2], 99) == 4.2
    with pytest.raises(ValueError):
        recall.percentile([], 50)


def test_exact_top_k_is_brute_force_best_first():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    top = recall.exact_top_k(vectors, queries, 10, chunk=3)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert top.shape == (7, 10)
    assert np.array_equal(top, expected)


def test_effective_num_candidates_follows_the_rescore_rule():
    assert recall.effective_num_candidates(55, 110, None) == 110
    assert recall.effective_num_candidates(55, 110, 0) == 110
    assert recall.effective_num_candidates(55, 110, 2) == 110
    assert recall.effective_num_candidates(55, 110, 3) == 165
    assert recall.effective_num_candidates(55, 440, 5) == 440


def test_offheap_memory_per_vector_uses_elastics_formulas():
    assert recall.offheap_bytes_per_vector("hnsw", 512, 16) == {"vectors": 2048, "graph": 64, "total": 2112}
    assert recall.offheap_bytes_per_vector("int8_hnsw", 512, 16)["total"] == 516 + 64
    assert recall.offheap_bytes_per_vector("int4_hnsw", 512, 16)["total"] == 260 + 64
    assert recall.offheap_bytes_per_vector("bbq_hnsw", 512, 16)["total"] == 78 + 64
    assert recall.offheap_bytes_per_vector("int8_flat", 512, 16)["graph"] == 0


def test_variants_expand_oversamples_only_for_the_types_given_them():
    variants = recall.variants_of(["hnsw", "bbq_hnsw"], {"bbq_hnsw": [0, 3], "int8_hnsw": [2]})
    assert variants == [Variant("hnsw"), Variant("bbq_hnsw", 0), Variant("bbq_hnsw", 3)]
    assert [v.name for v in variants] == ["hnsw", "bbq_hnsw, no rescore", "bbq_hnsw, rescore x3"]
    assert variants[0].rescore_vector() is None
    assert variants[1].rescore_vector() == {"oversample": 0}


def test_knn_request_is_the_apis_without_collapse_plus_rescoring():
    request = recall.knn_request([0.5, 0.5], 10, 55, 220, Variant("bbq_hnsw", 3.0))
    assert "collapse" not in request
    assert request["size"] == 11
    assert request["knn"]["k"] == 55 and request["knn"]["num_candidates"] == 220
    assert request["knn"]["rescore_vector"] == {"oversample": 3.0}
    assert "rescore_vector" not in recall.knn_request([0.5], 10, 55, 110, Variant("hnsw"))["knn"]


def candidate(name: str, recall_value: float, p50: float, memory: float) -> Candidate:
    return Candidate(name, recall_value, 100_000, p50, memory)


def test_recommendation_drops_low_recall_then_slow_then_picks_least_memory():
    choice = recall.recommend(
        [
            candidate("hnsw", 0.99, 8.0, 2112),
            candidate("int8", 0.97, 9.0, 580),  # within 20% of 8.0
            candidate("bbq, no rescore", 0.80, 6.0, 142),  # fastest and smallest, but recall too low
            candidate("bbq, rescore x5", 0.98, 10.4, 142),  # qualifies, 30% slower than the fastest
        ]
    )
    assert choice.choice == "int8"
    assert any(r.startswith("bbq, no rescore: dropped, recall@10 0.800") for r in choice.reasons)
    assert any(r.startswith("bbq, rescore x5: dropped, p50 10.40 ms > 9.60 ms") for r in choice.reasons)
    assert any(r.startswith("hnsw: dropped, 2112 B/vector > 580") for r in choice.reasons)
    assert choice.reasons[-1].startswith("chosen: int8")


def test_latency_ties_within_20_percent_or_one_millisecond():
    assert recall.latency_limit(10.0, 0.2, 1.0) == pytest.approx(12.0)
    assert recall.latency_limit(3.0, 0.2, 1.0) == pytest.approx(4.0)
    choice = recall.recommend([candidate("float", 0.99, 3.0, 2112), candidate("bbq", 0.99, 3.9, 142)])
    assert choice.choice == "bbq"


def test_recommendation_prefers_the_faster_of_equal_memory():
    choice = recall.recommend([candidate("bbq x5", 0.97, 3.5, 142), candidate("bbq x3", 0.96, 3.2, 142)])
    assert choice.choice == "bbq x3"


def test_recommendation_target_is_inclusive():
    assert recall.recommend([candidate("a", 0.95, 1.0, 1.0)]).choice == "a"


def test_no_recommendation_when_nothing_reaches_the_target():
    choice = recall.recommend([candidate("a", 0.90, 1.0, 1.0), candidate("b", 0.93, 2.0, 1.0)])
    assert choice.choice is None
    assert "best: b with 0.930" in choice.reasons[-1]


def test_candidates_take_the_worst_recall_over_sizes_and_latency_at_the_largest():
    def row(variant, recall_mean, p50, api=True):
        return {
            "variant": variant,
            "index_type": "int8_hnsw",
            "num_candidates": 110 if api else 220,
            "api_setting": api,
            "recall_mean": recall_mean,
            "p50_ms": p50,
        }

    indices = {"int8_hnsw": {"expected_offheap_per_vector": {"total": 580.0}}}
    small = [row("int8", 0.94, 2.0), row("int8", 0.99, 2.5, api=False)]
    large = [row("int8", 0.96, 3.0), row("int8", 0.99, 3.5, api=False)]
    sizes = [
        {"size": 10_000, "rows": small, "indices": indices},
        {"size": 100_000, "rows": large, "indices": indices},
    ]
    assert recall.candidates_of(sizes, api_only=True) == [Candidate("int8", 0.94, 10_000, 3.0, 580.0)]
    swept = recall.candidates_of(sizes, api_only=False)
    assert [c.name for c in swept] == ["int8, num_candidates 110", "int8, num_candidates 220"]
    assert swept[1].recall == 0.99 and swept[1].p50_ms == 3.5
