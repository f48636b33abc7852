"""Recall@10, kNN latency, disk and memory of the dense_vector index types against exact numpy kNN."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.catalog import fill_defaults
from bench.machine import CpuMeter, load_average, machine_facts, wait_for_load_below
from bench.searchindex import DIMS, CorpusPlan, corpus, corpus_stats, load_documents, real_vectors, unit_rows

log = logging.getLogger("bench.recall")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-search-bench"
INDEX_PREFIX = "bench-recall"
TYPES = ("hnsw", "int8_hnsw", "bbq_hnsw")
RECALL_TARGET = 0.95
LATENCY_TOLERANCE = 0.20  # p50 within this share of the fastest qualifying variant counts as a tie,
LATENCY_SLACK_MS = 1.0  # or within this many ms when that is more (client-side noise on a shared machine)
QUERY_SEED_OFFSET = 1000  # held-out queries: the corpus generator with seed + this
BLOCK = 20  # queries per interleaved block: every variant runs one block before the next block starts
WARM_QUERIES = 20  # untimed searches per variant and num_candidates before any clock starts
MERGE_TIMEOUT = 3 * 3600
USAGE_TIMEOUT = 1800
CACHEABLE_WEIGHTS = ("random", "imagenet")  # deterministic weights: their photo vectors can be cached
IDLE_LOAD = 0.5
DISTURBED_CORES = 0.1
DISTURBED_ES_OPS = 10
SMOKE = {"sizes": "2000", "queries": 100, "real_photos": 24}
DEFAULTS = {"sizes": "10000,100000", "queries": 200, "real_photos": 240}
# Hot files per index type in a Lucene segment: what kNN search reads on every query (graph + the
# vectors it scores); .vec (raw floats) is only read for rescoring when the type is quantized.
HOT_FILES = {"float": ("vex", "vec"), "int8": ("vex", "veq"), "int4": ("vex", "veq"), "bbq": ("vex", "veb")}
DOCS = {
    "knn_rescore": "https://www.elastic.co/docs/solutions/search/vector/knn#dense-vector-knn-search-rescoring",
    "knn_query": "https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-knn-query",
    "dense_vector": "https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector",
    "memory": "https://www.elastic.co/docs/deploy-manage/production-guidance/optimize-performance/"
    "approximate-knn-search",
    "disk_usage": "https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-indices-disk-usage",
    "rescore_mapping_pr": "https://github.com/elastic/elasticsearch/pull/124581",
}
RULE = (
    f"keep the variants whose recall@10 is >= {RECALL_TARGET} at every size; among them, those whose "
    f"p50 at the largest size is within {LATENCY_TOLERANCE:.0%} or {LATENCY_SLACK_MS:g} ms (whichever is "
    "more) of the fastest; of these, the lowest "
    "expected off-heap bytes per vector (ties: lower p50)"
)

DESCRIPTION = f"""\
Measure what each dense_vector index_options.type costs in recall, latency, disk and memory, on the
same vectors, in one run. For every --sizes N and every --types T, an index {INDEX_PREFIX}-<N>-<T> is
built with the project's definition (indexer.indices.load_index_definition: mappings/images.json with only
index_options.type swapped, m and ef_construction kept, replicas 0), bulk-loaded, force-merged to one
segment. Then, per variant (type + rescore_vector oversample) and per num_candidates:
  recall@10   top 10 hits of the API's own request builder (searchapi.queries.similarity_search, collapse
              off, size 10) against exact brute force in numpy (dot product of unit vectors, the
              mapping's dot_product similarity), mean over --queries held-out query vectors
  latency     p50/p99 of es.search from this process, sequential, after warm-up; variants interleave
              in blocks of {BLOCK} queries so the shared machine's slow minutes hit all alike
  disk        _stats/store after the force-merge, the field's knn_vectors bytes from
              _disk_usage?run_expensive_tasks=true, and segment file sizes by extension
  memory      expected off-heap (page cache) bytes per vector, Elastic's sizing formulas
k and num_candidates are the API's for a page of 10 (searchapi.queries.initial_k(10, 0) and
num_candidates_for(k): 55 and 110 today); --num-candidates sweeps others. rescore_vector (ES 8.18+, in
the knn section) oversamples: ES gathers max(num_candidates, k * oversample) candidates, rescores the top
k * oversample with the float vectors and returns k; oversample 0 turns rescoring off, which matters
for bbq_hnsw: ES 8.19 adds rescore_vector.oversample 3 to its mapping by default.

Vectors: VGG16 (--weights, --seed) of --real-photos generated photos (bench/photos.py), plus synthetic
products clustered round them (bench/searchindex.py: a product centre mixes two real vectors plus
noise, its 1-5 images add less noise, ReLU-like clipping, unit length). Queries come from the same
generator with seed + {QUERY_SEED_OFFSET} (other products, other image noise; a real photo's own vector
is never a query), so none of them is in the index. The photo vectors are cached in --cache-dir.

Recommendation, applied mechanically at the API's num_candidates and printed with the reason for
every variant it drops:
{textwrap.fill(RULE, width=100, initial_indent="  ", subsequent_indent="  ")}.
Needs ES_URL (eval "$(bash scripts/stack.sh env)"). Results: tables on stdout,
bench/results/recall-<UTC time>.json and .md, recall-latest.md (--smoke: recall-smoke-*).
The {INDEX_PREFIX}-* indices this run creates are deleted at the end unless --keep."""


# --- pure logic (unit-tested) -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def recall_per_query(found: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], k: int) -> list[float]:
    """Per query, the share of the exact top k that is among the first k results found."""
    return [len(set(list(got)[:k]) & set(list(want)[:k])) / k for got, want in zip(found, truth, strict=True)]


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """Row numbers of the k highest dot products per query, best first (brute force)."""
    tops = []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ vectors.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        tops.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(tops)


def effective_num_candidates(k: int, num_candidates: int, oversample: float | None) -> int:
    """Candidates ES gathers: with rescore_vector, max(num_candidates, k * oversample) (knn query docs)."""
    if not oversample:
        return num_candidates
    return max(num_candidates, math.ceil(k * oversample))


def quantization_of(index_type: str) -> str:
    """float, int8, int4 or bbq."""
    prefix = index_type.split("_", 1)[0]
    return prefix if prefix in ("int8", "int4", "bbq") else "float"


def offheap_bytes_per_vector(index_type: str, dims: int, m: int) -> dict[str, float]:
    """Expected page-cache bytes per vector kNN search keeps hot (Elastic's sizing guide): the vectors
    it scores (float 4*dims, int8 dims+4, int4 dims/2+4, bbq dims/8+14) plus the HNSW graph (4*m)."""
    vectors = {
        "float": 4.0 * dims,
        "int8": dims + 4.0,
        "int4": dims / 2 + 4.0,
        "bbq": dims / 8 + 14.0,
    }[quantization_of(index_type)]
    graph = 4.0 * m if index_type.endswith("hnsw") else 0.0
    return {"vectors": vectors, "graph": graph, "total": vectors + graph}


@dataclass(frozen=True)
class Candidate:
    """One variant as the recommendation rule sees it."""

    name: str
    recall: float  # the lowest mean recall@10 over the sizes
    recall_size: int  # where it was lowest
    p50_ms: float  # at the largest size
    bytes_per_vector: float


@dataclass(frozen=True)
class Recommendation:
    choice: str | None
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_limit(fastest_ms: float, tolerance: float, slack_ms: float) -> float:
    """The slowest p50 that still ties with the fastest: `tolerance` over it or `slack_ms`, the larger."""
    return max(fastest_ms * (1 + tolerance), fastest_ms + slack_ms)


def recommend(
    candidates: Sequence[Candidate],
    target: float = RECALL_TARGET,
    tolerance: float = LATENCY_TOLERANCE,
    slack_ms: float = LATENCY_SLACK_MS,
) -> Recommendation:
    """Recall >= target everywhere, then p50 tied with the fastest, then the least memory."""
    passed = [c for c in candidates if c.recall >= target]
    reasons = [
        f"{c.name}: dropped, recall@10 {c.recall:.3f} at {c.recall_size:,} vectors < {target}"
        for c in candidates
        if c not in passed
    ]
    if not passed:
        best = max(candidates, key=lambda c: c.recall, default=None)
        best_text = f"; best: {best.name} with {best.recall:.3f}" if best else ""
        return Recommendation(None, [*reasons, f"no variant reaches recall@10 {target}{best_text}"])
    fastest = min(passed, key=lambda c: c.p50_ms)
    limit = latency_limit(fastest.p50_ms, tolerance, slack_ms)
    near = [c for c in passed if c.p50_ms <= limit]
    reasons += [
        f"{c.name}: dropped, p50 {c.p50_ms:.2f} ms > {limit:.2f} ms (the fastest that qualifies, "
        f"{fastest.name}, takes {fastest.p50_ms:.2f} ms)"
        for c in passed
        if c not in near
    ]
    choice = min(near, key=lambda c: (c.bytes_per_vector, c.p50_ms))
    reasons += [
        f"{c.name}: dropped, {c.bytes_per_vector:.0f} B/vector > {choice.bytes_per_vector:.0f}"
        + (" (same memory, slower)" if c.bytes_per_vector == choice.bytes_per_vector else "")
        for c in near
        if c is not choice
    ]
    reasons.append(
        f"chosen: {choice.name}: recall@10 {choice.recall:.3f} >= {target} at every size, p50 "
        f"{choice.p50_ms:.2f} ms (fastest that qualifies: {fastest.name} {fastest.p50_ms:.2f} ms), "
        f"{choice.bytes_per_vector:.0f} B/vector off-heap, the least of those within {limit:.2f} ms"
    )
    return Recommendation(choice.name, reasons)


def parse_ints(text: str) -> list[int]:
    return [int(part) for part in str(text).split(",") if part.strip()]


def parse_floats(text: str) -> list[float]:
    return [float(part) for part in str(text).split(",") if part.strip()]


# --- variants ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """An index type and the rescore_vector oversample sent with each query (None: not sent)."""

    index_type: str
    oversample: float | None = None

    @property
    def name(self) -> str:
        if self.oversample is None:
            return self.index_type
        if self.oversample == 0:
            return f"{self.index_type}, no rescore"
        return f"{self.index_type}, rescore x{self.oversample:g}"

    def rescore_vector(self) -> dict[str, float] | None:
        return None if self.oversample is None else {"oversample": self.oversample}


def variants_of(types: Sequence[str], oversamples: dict[str, list[float]]) -> list[Variant]:
    """One variant per type, or one per oversample for the types given oversamples."""
    return [
        Variant(index_type, oversample)
        for index_type in types
        for oversample in oversamples.get(index_type) or [None]
    ]


def index_name(size: int, index_type: str) -> str:
    return f"{INDEX_PREFIX}-{size}-{index_type.replace('_', '-')}"


# --- vectors ----------------------------------------------------------------------------------------


def corpus_matrix(real: np.ndarray, plan: CorpusPlan) -> np.ndarray:
    """The indexed vectors as Elasticsearch holds them (rounded to 6 decimals as sent, float32);
    row i is document id i + 1."""
    rows = np.stack([vector for _, _, vector in corpus(real, plan)])
    return np.round(rows, 6).astype(np.float32)


def held_out_queries(real: np.ndarray, plan: CorpusPlan, count: int) -> np.ndarray:
    """`count` vectors of the same generator with another seed (other products, other image noise),
    never a real photo's own vector, so none is in the index."""
    seed = plan.seed + QUERY_SEED_OFFSET
    pool = corpus_matrix(real, replace(plan, seed=seed))
    fresh = pool[(pool @ real.T.astype(np.float32)).max(axis=1) < 1 - 1e-6]
    rng = np.random.default_rng(seed)
    return fresh[np.sort(rng.choice(len(fresh), size=min(count, len(fresh)), replace=False))]


def query_stats(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """How close the held-out queries are to the index: cosine of the 1st and 10th exact neighbours."""
    first = np.sum(queries * vectors[truth[:, 0]], axis=1)
    last = np.sum(queries * vectors[truth[:, -1]], axis=1)
    return {
        "queries": len(queries),
        "nearest_cosine_mean": round(float(first.mean()), 4),
        "nearest_cosine_max": round(float(first.max()), 4),
        "tenth_cosine_mean": round(float(last.mean()), 4),
        "gap_1st_10th_mean": round(float((first - last).mean()), 4),
    }


GEOMETRIES = {
    "as-is": "the photo vectors as the model gives them",
    "centred": "each photo vector minus the mean photo vector, negatives clipped, unit length",
}


def shaped(real: np.ndarray, geometry: str) -> np.ndarray:
    """The photo vectors the corpus grows from, in the chosen geometry.

    `as-is` keeps them: with random weights every photo is ~0.98 cosine-similar to every other, a
    far denser cloud than trained features give. `centred` removes the shared mean direction (then
    ReLU-like clipping and unit length, as VGG16's output), which spreads random pairs to ~0.3
    cosine, the range of trained CNN features of unrelated images: an assumption, stated in the results.
    """
    if geometry == "as-is":
        return real
    return unit_rows(real - real.mean(axis=0, keepdims=True))


def cache_path(args: argparse.Namespace) -> Path | None:
    if args.no_cache or args.weights not in CACHEABLE_WEIGHTS:
        return None
    return args.cache_dir / f"photo-vectors-{args.weights}-seed{args.seed}-n{args.real_photos}.npz"


def load_real_vectors(args: argparse.Namespace) -> tuple[np.ndarray, dict[str, Any], str]:
    """VGG16 vectors of the generated photos (cached), the model's _meta, and where they came from."""
    path = cache_path(args)
    if path and path.exists():
        with np.load(path) as data:
            return data["vectors"], json.loads(str(data["model"])), f"cache {path}"
    from imgsearch.features import FeatureExtractor

    started = time.perf_counter()
    print(f"computing VGG16 vectors of {args.real_photos} photos ...", file=sys.stderr)
    extractor = FeatureExtractor(args.weights, seed=args.seed)
    extractor.warm_up()
    with tempfile.TemporaryDirectory(prefix="bench-recall-") as folder:
        real = real_vectors(extractor, Path(folder), args.real_photos, args.seed)
    model = extractor.info.as_meta()
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=real, model=json.dumps(model))
    return real, model, f"computed in {time.perf_counter() - started:.0f} s on {extractor.device}"


# --- Elasticsearch ----------------------------------------------------------------------------------


def elastic_config(index: str, index_type: str):
    """The project's Elasticsearch settings (ES_* from the environment) for one bench index."""
    from imgsearch.config import load_elastic_config

    if not os.environ.get("ES_URL"):
        raise SystemExit('ES_URL not set: run eval "$(bash scripts/stack.sh env)" first')
    env = {key: value for key, value in os.environ.items() if key.startswith("ES_")}
    env |= {"ES_INDEX": index, "ES_NUMBER_OF_REPLICAS": "0", "ES_VECTOR_INDEX_TYPE": index_type}
    return load_elastic_config(env)


def feature_mapping(es, index: str) -> dict[str, Any]:
    return es.indices.get_mapping(index=index).body[index]["mappings"]["properties"]["feature"]


def build_index(es, plan: CorpusPlan, real: np.ndarray, model: dict[str, Any], name: str) -> dict[str, Any]:
    """Create `name` from the project's definition, bulk load, restore settings, force-merge to 1 segment."""
    import indexer
    from imgsearch import indices

    config = elastic_config(name, plan.vector_index_type)
    meta = {"model": model, "created_at": datetime.now(UTC).isoformat(), "created_by": "bench.recall"}
    body = indices.load_index_definition(config, meta | {"bench": plan.as_meta()})
    if es.indices.exists(index=name):  # a leftover of an interrupted run of this bench
        es.indices.delete(index=name)
    clock, seconds = time.perf_counter(), {}
    indexer.create_build_index(es, name, body)
    print(f"loading {plan.docs} documents into {name} ...", file=sys.stderr)
    load_documents(es, name, real, plan)
    seconds["bulk_load"], clock = time.perf_counter() - clock, time.perf_counter()
    indexer.finish_build_index(es, name, body)
    seconds["refresh"], clock = time.perf_counter() - clock, time.perf_counter()
    print(f"force-merging {name} to one segment ...", file=sys.stderr)
    es.options(request_timeout=MERGE_TIMEOUT).indices.forcemerge(index=name, max_num_segments=1)
    es.indices.refresh(index=name)
    seconds["force_merge"] = time.perf_counter() - clock
    return {
        "index": name,
        "index_type": plan.vector_index_type,
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
        "feature_mapping": feature_mapping(es, name),
    }


def disk_usage(es, name: str) -> dict[str, Any]:
    """knn_vectors bytes of the vector field and _source bytes (the analysis reads the whole index)."""
    from elasticsearch import ApiError

    try:
        usage = es.options(request_timeout=USAGE_TIMEOUT).indices.disk_usage(
            index=name, run_expensive_tasks=True
        )
    except ApiError as exc:
        return {"error": str(exc)}
    fields = usage.body[name]["fields"]
    return {
        "total_bytes": usage.body[name]["all_fields"]["total_in_bytes"],
        "feature_knn_vectors_bytes": fields["feature"]["knn_vectors_in_bytes"],
        "feature_total_bytes": fields["feature"]["total_in_bytes"],
        "source_bytes": fields.get("_source", {}).get("total_in_bytes", 0),
    }


def storage_facts(es, name: str, index_type: str, docs: int, m: int) -> dict[str, Any]:
    """Store size, segments, file sizes by extension, the _disk_usage breakdown, memory per vector."""
    stats = es.indices.stats(index=name, metric="docs,store,segments", include_segment_file_sizes=True)
    primaries = stats.body["indices"][name]["primaries"]
    files = {ext: info["size_in_bytes"] for ext, info in primaries["segments"].get("file_sizes", {}).items()}
    hot = HOT_FILES[quantization_of(index_type)]
    compound = "cfs" in files
    return {
        "docs": primaries["docs"]["count"],
        "segments": primaries["segments"]["count"],
        "store_bytes": primaries["store"]["size_in_bytes"],
        "file_sizes": files,
        "file_descriptions": {
            ext: info.get("description", "")
            for ext, info in primaries["segments"].get("file_sizes", {}).items()
        },
        "compound_file": compound,
        "hot_files": list(hot),
        "hot_bytes_per_vector": None if compound else round(sum(files.get(ext, 0) for ext in hot) / docs, 1),
        "disk_usage": disk_usage(es, name),
        "expected_offheap_per_vector": offheap_bytes_per_vector(index_type, DIMS, m),
    }


def knn_request(vector: list[float], top: int, k: int, num_candidates: int, variant: Variant) -> dict:
    """The API's request (searchapi.queries.similarity_search) with collapse off, our num_candidates
    and the variant's rescore_vector."""
    from searchapi import queries

    request = queries.similarity_search(vector, size=top, from_=0, k=k, collapse=False)
    request["knn"]["num_candidates"] = num_candidates
    rescore = variant.rescore_vector()
    if rescore is not None:
        request["knn"]["rescore_vector"] = rescore
    return request


@dataclass
class Series:
    """One variant at one num_candidates on one index: what was sent and what came back."""

    variant: Variant
    num_candidates: int
    index: str
    seconds: list[float]
    took_ms: list[float]
    found: list[list[int]]


def timed_search(es, series: Series, request: dict, top: int, record: bool) -> None:
    started = time.perf_counter()
    response = es.search(index=series.index, **request)
    elapsed = time.perf_counter() - started
    if record:
        series.seconds.append(elapsed)
        series.took_ms.append(float(response["took"]))
        series.found.append([int(hit["_id"]) for hit in response["hits"]["hits"][:top]])


def run_series(es, all_series: list[Series], vectors: list[list[float]], top: int, k: int) -> None:
    """Warm up every series, then time them interleaved, block of queries by block."""
    for series in all_series:
        for vector in vectors[:WARM_QUERIES]:
            request = knn_request(vector, top, k, series.num_candidates, series.variant)
            timed_search(es, series, request, top, record=False)
    for start in range(0, len(vectors), BLOCK):
        for series in all_series:
            for vector in vectors[start : start + BLOCK]:
                request = knn_request(vector, top, k, series.num_candidates, series.variant)
                timed_search(es, series, request, top, record=True)


def warm_indices(es, names: dict[str, str], vectors: list[list[float]], top: int, k: int, nc: int) -> None:
    """Every query once per index (untimed), so each index's files are in the page cache."""
    for index_type, name in names.items():
        series = Series(Variant(index_type), nc, name, [], [], [])
        for vector in vectors:
            timed_search(es, series, knn_request(vector, top, k, nc, series.variant), top, record=False)


def series_row(series: Series, truth: np.ndarray, top: int, k: int, api_nc: int) -> dict[str, Any]:
    recalls = recall_per_query(series.found, truth.tolist(), top)
    millis = [seconds * 1000 for seconds in series.seconds]
    oversample = series.variant.oversample
    return {
        "variant": series.variant.name,
        "index_type": series.variant.index_type,
        "oversample": oversample,
        "k": k,
        "num_candidates": series.num_candidates,
        "effective_num_candidates": effective_num_candidates(k, series.num_candidates, oversample),
        "api_setting": series.num_candidates == api_nc,
        "queries": len(recalls),
        "recall_mean": round(float(np.mean(recalls)), 4),
        "recall_min": round(min(recalls), 2),
        "queries_recall_1": sum(1 for value in recalls if value == 1.0),
        "p50_ms": round(percentile(millis, 50), 2),
        "p90_ms": round(percentile(millis, 90), 2),
        "p99_ms": round(percentile(millis, 99), 2),
        "mean_ms": round(float(np.mean(millis)), 2),
        "max_ms": round(max(millis), 2),
        "took_p50_ms": round(percentile(series.took_ms, 50), 1),
        "took_p99_ms": round(percentile(series.took_ms, 99), 1),
    }


# --- one size ---------------------------------------------------------------------------------------


def elasticsearch_ops_total(es) -> dict[str, int]:
    """Searches + writes Elasticsearch served per index, left out this bench's own indices."""
    from bench.search import elasticsearch_ops

    return {name: ops for name, ops in elasticsearch_ops(es, "").items() if not name.startswith(INDEX_PREFIX)}


def measure(es, args, names: dict[str, str], queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Warm every index, then time every variant at every num_candidates, interleaved."""
    from bench.search import elasticsearch_pids, ops_between

    vectors = [query.tolist() for query in queries]
    load = wait_for_load_below(IDLE_LOAD, args.wait_idle) if args.wait_idle else load_average()
    warm_indices(es, names, vectors, args.page_size, args.k, args.api_num_candidates)
    all_series = [
        Series(variant, nc, names[variant.index_type], [], [], [])
        for variant in args.variants
        for nc in args.num_candidates
    ]
    before = elasticsearch_ops_total(es)
    with CpuMeter(named_pids={"elasticsearch": elasticsearch_pids(es)}) as meter:
        run_series(es, all_series, vectors, args.page_size, args.k)
    cpu = meter.as_dict()
    cpu.pop("image_server_cores", None)
    rows = [series_row(s, truth, args.page_size, args.k, args.api_num_candidates) for s in all_series]
    others = ops_between(before, elasticsearch_ops_total(es))
    return {
        "rows": rows,
        "load_average": {"before": load, "after": load_average()},
        "cpu": cpu,
        "other_es_ops": others,
    }


def run_size(es, args, real: np.ndarray, model: dict[str, Any], size: int) -> dict[str, Any]:
    """Build one index per type with `size` vectors, measure every variant, drop the indices."""
    plan = CorpusPlan(size, args.seed, len(real), "")
    print(f"{size} vectors: generating the corpus and exact neighbours ...", file=sys.stderr)
    vectors = corpus_matrix(real, plan)
    queries = held_out_queries(real, plan, args.queries)
    truth = exact_top_k(vectors, queries, args.page_size) + 1  # document ids are row + 1
    names = {index_type: index_name(size, index_type) for index_type in args.types}
    indices: dict[str, Any] = {}
    try:
        for index_type, name in names.items():
            indices[index_type] = build_index(
                es, replace(plan, vector_index_type=index_type), real, model, name
            )
            m = indices[index_type]["feature_mapping"]["index_options"].get("m", 16)
            indices[index_type] |= storage_facts(es, name, index_type, size, m)
        print(f"{size} vectors: measuring {len(args.variants)} variants ...", file=sys.stderr)
        measured = measure(es, args, names, queries, truth)
    finally:
        if not args.keep:
            drop_indices(es, list(names.values()))
    return {
        "size": size,
        "corpus": replace(plan, vector_index_type="(each type)").describe(),
        "corpus_stats": corpus_stats(real, plan),
        "query_stats": query_stats(vectors, queries, truth - 1),
        "indices": indices,
        **measured,
    }


def drop_indices(es, names: list[str]) -> list[str]:
    """Delete this run's bench indices (only those named here; never anything else)."""
    dropped = [name for name in names if name.startswith(INDEX_PREFIX) and es.indices.exists(index=name)]
    for name in dropped:
        es.indices.delete(index=name)
    return dropped


# --- results ----------------------------------------------------------------------------------------


def candidates_of(sizes: list[dict[str, Any]], api_only: bool) -> list[Candidate]:
    """Per variant (and num_candidates unless api_only): worst recall over sizes, p50 at the largest."""
    largest = max(sizes, key=lambda s: s["size"])
    candidates = []
    for row in largest["rows"]:
        if api_only and not row["api_setting"]:
            continue
        same = [
            (entry["size"], other)
            for entry in sizes
            for other in entry["rows"]
            if other["variant"] == row["variant"] and other["num_candidates"] == row["num_candidates"]
        ]
        worst_size, worst = min(same, key=lambda pair: pair[1]["recall_mean"])
        memory = largest["indices"][row["index_type"]]["expected_offheap_per_vector"]["total"]
        name = row["variant"] if api_only else f"{row['variant']}, num_candidates {row['num_candidates']}"
        candidates.append(Candidate(name, worst["recall_mean"], worst_size, row["p50_ms"], memory))
    return candidates


def disturbances(sizes: list[dict[str, Any]]) -> list[str]:
    return [
        f"{entry['size']} vectors (others used {entry['cpu'].get('other_cores')} cores, sent "
        f"Elasticsearch {entry['other_es_ops']} requests)"
        for entry in sizes
        if entry["cpu"].get("other_cores", 0) > DISTURBED_CORES or entry["other_es_ops"] > DISTURBED_ES_OPS
    ]


def settings_of(args: argparse.Namespace, real_source: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "smoke": args.smoke,
        "sizes": args.sizes,
        "queries": args.queries,
        "types": args.types,
        "variants": [variant.name for variant in args.variants],
        "page_size": args.page_size,
        "k": args.k,
        "api_num_candidates": args.api_num_candidates,
        "num_candidates": args.num_candidates,
        "real_photos": args.real_photos,
        "real_vectors": real_source,
        "geometry": args.geometry,
        "geometry_description": GEOMETRIES[args.geometry],
        "weights": args.weights,
        "seed": args.seed,
        "model": model,
        "request": example_request(args),
        "queries_description": (
            f"{args.queries} held-out vectors per size: the corpus generator with seed "
            f"{args.seed + QUERY_SEED_OFFSET} (other products round the same real photos, other image "
            "noise), real photos' own vectors excluded, so no query is in the index"
        ),
        "truth": "exact top k by numpy dot product (float32) of the vectors as indexed (6 decimals)",
        "recommendation_rule": RULE,
        "docs": DOCS,
    }


def example_request(args: argparse.Namespace) -> dict[str, Any]:
    request = knn_request([0.0], args.page_size, args.k, args.api_num_candidates, Variant("bbq_hnsw", 3.0))
    request["knn"]["query_vector"] = f"<{DIMS} floats>"
    return request


def results_of(args, argv, sizes, settings, loads, version) -> dict[str, Any]:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    api = recommend(candidates_of(sizes, api_only=True))
    sweep = recommend(candidates_of(sizes, api_only=False))
    return {
        "benchmark": "recall",
        "command": f"{python} -m bench.recall {shlex.join(argv)}".rstrip(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "elasticsearch_version": version,
        "load_average": loads,
        "settings": settings,
        "sizes": sizes,
        "recommendation": api.as_dict(),
        "recommendation_any_num_candidates": sweep.as_dict(),
        "disturbed": disturbances(sizes),
    }


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def main_table(results: dict[str, Any]) -> list[str]:
    settings = results["settings"]
    lines = [
        f"At the API's k = {settings['k']} and num_candidates = {settings['api_num_candidates']} "
        f"(collapse off, size {settings['page_size']}):",
        "",
        "| vectors | variant | recall@10 | min | queries at 1.0 | p50 ms | p99 ms | ES took p50 ms | "
        "candidates | off-heap B/vector |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["sizes"]:
        for row in (row for row in entry["rows"] if row["api_setting"]):
            memory = entry["indices"][row["index_type"]]["expected_offheap_per_vector"]["total"]
            lines.append(
                f"| {entry['size']:,} | {row['variant']} | {row['recall_mean']:.3f} | "
                f"{row['recall_min']:.1f} | "
                f"{row['queries_recall_1']}/{row['queries']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{row['took_p50_ms']:.1f} | {row['effective_num_candidates']} | {memory:.0f} |"
            )
    return lines


def storage_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "Disk after the force-merge to one segment (MiB; knn_vectors = the feature field in "
        "_disk_usage?run_expensive_tasks=true) and off-heap memory per vector (bytes; expected = Elastic's "
        "sizing formula: the vectors kNN scores + 4*m of HNSW graph):",
        "",
        "| vectors | type | segments | store | feature knn_vectors (share) | knn_vectors B/vector | "
        "_source | expected off-heap B/vector |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["sizes"]:
        for index_type, facts in entry["indices"].items():
            usage = facts["disk_usage"]
            knn = usage.get("feature_knn_vectors_bytes")
            share = f" ({knn / facts['store_bytes']:.0%})" if knn is not None else ""
            per_vector = "-" if knn is None else f"{knn / facts['docs']:.0f}"
            lines.append(
                f"| {entry['size']:,} | {index_type} | {facts['segments']} | {mib(facts['store_bytes'])} | "
                f"{mib(knn)}{share} | {per_vector} | {mib(usage.get('source_bytes'))} | "
                f"{facts['expected_offheap_per_vector']['total']:.0f} |"
            )
    return [*lines, "", file_note(results)]


def file_note(results: dict[str, Any]) -> str:
    """Segment files by extension (the hot ones per type), or why there is no such breakdown."""
    parts = [
        f"{entry['size']:,} {index_type}: "
        + ", ".join(f".{ext} {mib(facts['file_sizes'].get(ext))} MiB" for ext in facts["hot_files"])
        + f" ({facts['hot_bytes_per_vector']} B/vector)"
        for entry in results["sizes"]
        for index_type, facts in entry["indices"].items()
        if not facts["compound_file"]
    ]
    if not parts:
        return (
            "Segment files by extension: none to show, every merged segment is a compound file (.cfs; "
            "Elasticsearch packs segments under index.compound_format, 1gb by default). Every type keeps "
            "the float32 vectors on disk (2048 B/vector at 512 dims) for rescoring and reindexing; the "
            "quantized types add their copy."
        )
    return "Hot segment files (graph + the vectors kNN scores): " + "; ".join(parts) + "."


def sweep_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "num_candidates sweep (candidates = what ES gathers: max(num_candidates, k * oversample)):",
        "",
        "| vectors | variant | num_candidates | candidates | recall@10 | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for entry in results["sizes"]:
        for row in entry["rows"]:
            lines.append(
                f"| {entry['size']:,} | {row['variant']} | {row['num_candidates']} | "
                f"{row['effective_num_candidates']} | {row['recall_mean']:.3f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} |"
            )
    return lines


def recommendation_lines(results: dict[str, Any]) -> list[str]:
    api, sweep = results["recommendation"], results["recommendation_any_num_candidates"]
    return [
        f"**Recommendation: {api['choice'] or 'none'}** (rule: {RULE}; at the API's num_candidates "
        f"{results['settings']['api_num_candidates']}).",
        "",
        *(f"- {reason}" for reason in api["reasons"]),
        "",
        f"Same rule over every num_candidates measured: **{sweep['choice'] or 'none'}**.",
    ]


def context_lines(results: dict[str, Any]) -> list[str]:
    settings, machine, loads = results["settings"], results["machine"], results["load_average"]
    mappings = {
        index_type: facts["feature_mapping"]["index_options"]
        for index_type, facts in results["sizes"][-1]["indices"].items()
    }
    corpus_lines = [
        f"- {entry['size']:,}: {entry['corpus']}. Sample: {entry['corpus_stats']}. "
        f"Queries: {entry['query_stats']}"
        for entry in results["sizes"]
    ]
    return [
        f"Machine: {machine['cpu_count']} x {machine['cpu_model']}, Python {machine['python']}; "
        f"Elasticsearch {results['elasticsearch_version']} (same machine). Load average (1/5/15 min) "
        f"before {loads['before']}, after {loads['after']}.",
        "",
        f"Photo vectors: {settings['real_photos']} photos, VGG16 weights={settings['weights']} seed "
        f"{settings['seed']}, {settings['real_vectors']}. Geometry `{settings.get('geometry', 'as-is')}`: "
        f"{settings.get('geometry_description', GEOMETRIES['as-is'])}. Corpus per size:",
        "",
        *corpus_lines,
        "",
        f"Queries: {settings['queries_description']}. Truth: {settings['truth']}.",
        "",
        f"Request (per query; recall from the first {settings['page_size']} hits): "
        f"`{json.dumps(settings['request'])}`. Mapping index_options as created: `{json.dumps(mappings)}`.",
        "",
        "Docs relied on: " + ", ".join(f"[{name}]({url})" for name, url in DOCS.items()) + ".",
    ]


def machine_use_lines(results: dict[str, Any]) -> list[str]:
    """Who used the cores while each size was measured (the build is not counted)."""
    return [
        f"- {entry['size']:,} vectors: cores own {entry['cpu'].get('own_cores')}, Elasticsearch "
        f"{entry['cpu'].get('elasticsearch_cores')}, others {entry['cpu'].get('other_cores')}, stolen "
        f"{entry['cpu'].get('stolen_cores')}; others' Elasticsearch requests {entry['other_es_ops']}; load "
        f"average before {entry['load_average']['before']}, after {entry['load_average']['after']}"
        for entry in results["sizes"]
    ]


def render_markdown(results: dict[str, Any]) -> str:
    disturbed = results["disturbed"]
    note = (
        f"**Disturbed**: {'; '.join(disturbed)}; latencies are not representative."
        if disturbed
        else f"Not disturbed: others used at most {DISTURBED_CORES} cores and sent Elasticsearch at most "
        f"{DISTURBED_ES_OPS} requests while each size was measured."
    )
    lines = [
        "# dense_vector index types: recall@10, kNN latency, disk and memory",
        "",
        f"`{results['command']}` (finished {results['finished_at']})",
        "",
        *main_table(results),
        "",
        *recommendation_lines(results),
        "",
        *storage_table(results),
        "",
        *sweep_table(results),
        "",
        *context_lines(results),
        "",
        "While measuring (the index builds are not counted):",
        "",
        *machine_use_lines(results),
        "",
        note,
        "",
    ]
    return "\n".join(lines)


def write_results(results: dict[str, Any], folder: Path, smoke: bool) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = "recall-smoke" if smoke else "recall"
    json_path = folder / f"{prefix}-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    markdown_path = folder / f"{prefix}-{stamp}.md"
    markdown_path.write_text(markdown)
    if not smoke:
        (folder / "recall-latest.md").write_text(markdown)
    return json_path, markdown_path


# --- command line -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recall",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what is measured")
    what.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check (< 2 min once the photo vectors are cached): "
        + ", ".join(f"{key.replace('_', '-')} {value}" for key, value in SMOKE.items())
        + " unless given; results go to recall-smoke-*",
    )
    what.add_argument("--sizes", help=f"vectors per index, comma separated (default {DEFAULTS['sizes']})")
    what.add_argument("--queries", type=int, help=f"held-out query vectors (default {DEFAULTS['queries']})")
    what.add_argument(
        "--types", default=",".join(TYPES), help=f"index_options.type values (default {','.join(TYPES)})"
    )
    what.add_argument(
        "--int8-oversample",
        default="0,2",
        help="rescore_vector.oversample values for int8_hnsw, 0 = no rescoring (default 0,2)",
    )
    what.add_argument(
        "--bbq-oversample",
        default="0,3,5",
        help="rescore_vector.oversample values for bbq_hnsw, 0 = no rescoring (default 0,3,5; "
        "3 is what ES 8.19 puts in a bbq_hnsw mapping)",
    )
    what.add_argument(
        "--num-candidates",
        help="num_candidates values, comma separated (default k, the API's, 2x and 4x the API's: "
        "55,110,220,440 today); the API's is always measured",
    )
    what.add_argument(
        "--page-size",
        type=int,
        default=10,
        help="results per page: recall@page-size, k as the API's (default 10)",
    )
    corpus_group = parser.add_argument_group("vectors")
    corpus_group.add_argument(
        "--real-photos",
        type=int,
        help=f"photos whose real VGG16 vectors seed the corpus (default {DEFAULTS['real_photos']})",
    )
    corpus_group.add_argument(
        "--weights",
        default=os.environ.get("VGG16_WEIGHTS", "random"),
        help="VGG16_WEIGHTS (default $VGG16_WEIGHTS or 'random')",
    )
    corpus_group.add_argument(
        "--seed", type=int, default=1234, help="VGG16_SEED and the corpus/photo seed (default 1234)"
    )
    corpus_group.add_argument(
        "--cache-dir",
        type=Path,
        default=CACHE_DIR,
        help=f"where photo vectors of {'/'.join(CACHEABLE_WEIGHTS)} weights are cached (default {CACHE_DIR})",
    )
    corpus_group.add_argument("--no-cache", action="store_true", help="compute the photo vectors again")
    corpus_group.add_argument(
        "--geometry",
        choices=sorted(GEOMETRIES),
        default="as-is",
        help="as-is: the photo vectors as the model gives them (random weights pack them at ~0.98 "
        "cosine); centred: minus their mean, clipped, unit (random pairs ~0.3, like trained features)",
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument(
        "--keep", action="store_true", help=f"keep the {INDEX_PREFIX}-* indices afterwards"
    )
    run_group.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"before measuring each size (its indices built), wait up to SECONDS for the 1-minute load "
        f"average to drop below {IDLE_LOAD}",
    )
    run_group.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where results are written (default bench/results)",
    )
    run_group.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(default WARNING)",
    )
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the smoke or full defaults; parse lists; derive k and num_candidates."""
    from searchapi import queries

    fill_defaults(args, SMOKE, DEFAULTS)
    args.sizes = parse_ints(args.sizes)
    args.types = [name.strip() for name in args.types.split(",") if name.strip()]
    oversamples = {
        "int8_hnsw": parse_floats(args.int8_oversample),
        "bbq_hnsw": parse_floats(args.bbq_oversample),
    }
    args.variants = variants_of(args.types, oversamples)
    args.k = queries.initial_k(args.page_size, 0)
    args.api_num_candidates = queries.num_candidates_for(args.k)
    api = args.api_num_candidates
    wanted = parse_ints(args.num_candidates) if args.num_candidates else [args.k, api, 2 * api, 4 * api]
    args.num_candidates = sorted({api, *(nc for nc in wanted if nc >= args.k)})
    return args


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from imgsearch import esclient, indices

    es = esclient.make_client(elastic_config(INDEX_PREFIX, TYPES[0]))
    version = indices.server_version(es)
    real, model, real_source = load_real_vectors(args)
    real = shaped(real, args.geometry)
    before = load_average()
    sizes = [run_size(es, args, real, model, size) for size in args.sizes]
    loads = {"before": before, "after": load_average()}
    return results_of(args, argv, sizes, settings_of(args, real_source, model), loads, version)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = resolve(build_parser().parse_args(argv))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run(args, argv)
    json_path, markdown_path = write_results(results, args.results_dir, args.smoke)
    print(render_markdown(results))
    choice = results["recommendation"]
    print(f"recommendation: {choice['choice'] or 'none'} ({choice['reasons'][-1]})")
    print(f"written: {json_path} and {markdown_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
