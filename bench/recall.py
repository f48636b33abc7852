"""Recall@10, kNN latency, disk and memory of the dense_vector index types against exact numpy kNN."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import ApiError

from bench import harness
from bench.corpus import DIMS, CorpusPlan, build_version, corpus, corpus_stats, real_vectors, unit_rows
from bench.harness import PhaseMeter, elasticsearch_pids, say
from imgsearch import esclient, indices
from searchapi import queries

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-search-bench"
INDEX_PREFIX = "bench-recall"
TYPES = ("hnsw", "int8_hnsw", "bbq_hnsw")
RECALL_TARGET = 0.95
LATENCY_TOLERANCE = 0.20  # p50 within this share of the fastest qualifying variant counts as a tie,
LATENCY_SLACK_MS = 1.0  # or within this many ms when that is more (client-side noise on a shared machine)
QUERY_SEED_OFFSET = 1000  # held-out queries: the corpus generator with seed + this
BLOCK = 20  # queries per interleaved block: every variant runs one block before the next block starts
WARM_QUERIES = 20  # untimed searches per variant and num_candidates before any clock starts
USAGE_TIMEOUT = 1800
CACHEABLE_WEIGHTS = ("random", "imagenet")  # deterministic weights: their photo vectors can be cached
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
    "more) of the fastest; of these, the lowest expected off-heap bytes per vector (ties: lower p50)"
)
GEOMETRIES = {
    "as-is": "the photo vectors as the model gives them",
    "centred": "each photo vector minus the mean photo vector, negatives clipped, unit length",
}


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        raise ValueError("percentile of no values")
    return float(np.percentile(values, q))


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
    return max(num_candidates, math.ceil(k * oversample)) if oversample else num_candidates


def offheap_bytes_per_vector(index_type: str, dims: int, m: int) -> dict[str, float]:
    """Expected page-cache bytes per vector kNN search keeps hot (Elastic's sizing guide): the vectors
    it scores (float 4*dims, int8 dims+4, int4 dims/2+4, bbq dims/8+14) plus the HNSW graph (4*m)."""
    sizes = {"float": 4.0 * dims, "int8": dims + 4.0, "int4": dims / 2 + 4.0, "bbq": dims / 8 + 14.0}
    vectors, graph = sizes[quantization_of(index_type)], 4.0 * m if index_type.endswith("hnsw") else 0.0
    return {"vectors": vectors, "graph": graph, "total": vectors + graph}


def quantization_of(index_type: str) -> str:
    prefix = index_type.split("_", 1)[0]
    return prefix if prefix in ("int8", "int4", "bbq") else "float"


@dataclass(frozen=True)
class Candidate:
    """One variant as the recommendation rule sees it."""

    name: str
    recall: float  # the lowest mean recall@10 over the sizes
    recall_size: int  # where it was lowest
    p50_ms: float  # at the largest size
    bytes_per_vector: float


def latency_limit(fastest_ms: float, tolerance: float, slack_ms: float) -> float:
    """The slowest p50 that still ties with the fastest: `tolerance` over it or `slack_ms`, the larger."""
    return max(fastest_ms * (1 + tolerance), fastest_ms + slack_ms)


@dataclass(frozen=True)
class Recommendation:
    choice: str | None
    reasons: list[str]


def recommend(candidates: Sequence[Candidate], target: float = RECALL_TARGET) -> Recommendation:
    """Recall >= target everywhere, then p50 tied with the fastest, then the least memory."""
    passed = [c for c in candidates if c.recall >= target]
    low = [c for c in candidates if c not in passed]
    reasons = [
        f"{c.name}: dropped, recall@10 {c.recall:.3f} at {c.recall_size:,} vectors < {target}" for c in low
    ]
    if not passed:
        best = max(candidates, key=lambda c: c.recall, default=None)
        best_text = f"; best: {best.name} with {best.recall:.3f}" if best else ""
        return Recommendation(None, [*reasons, f"no variant reaches recall@10 {target}{best_text}"])
    fastest = min(passed, key=lambda c: c.p50_ms)
    limit = latency_limit(fastest.p50_ms, LATENCY_TOLERANCE, LATENCY_SLACK_MS)
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


def candidates_of(sizes: list[dict[str, Any]], api_only: bool) -> list[Candidate]:
    """Per variant (and num_candidates unless api_only): worst recall over sizes, p50 at the largest."""
    largest = max(sizes, key=lambda s: s["size"])
    candidates = []
    for row in (row for row in largest["rows"] if row["api_setting"] or not api_only):
        key = (row["variant"], row["num_candidates"])
        same = [
            (e["size"], o) for e in sizes for o in e["rows"] if (o["variant"], o["num_candidates"]) == key
        ]
        worst_size, worst = min(same, key=lambda pair: pair[1]["recall_mean"])
        memory = largest["indices"][row["index_type"]]["expected_offheap_per_vector"]["total"]
        name = row["variant"] if api_only else f"{row['variant']}, num_candidates {row['num_candidates']}"
        candidates.append(Candidate(name, worst["recall_mean"], worst_size, row["p50_ms"], memory))
    return candidates


@dataclass(frozen=True)
class Variant:
    """An index type and the rescore_vector oversample sent with each query (None: not sent)."""

    index_type: str
    oversample: float | None = None

    @property
    def name(self) -> str:
        if self.oversample is None:
            return self.index_type
        return f"{self.index_type}, {f'rescore x{self.oversample:g}' if self.oversample else 'no rescore'}"

    def rescore_vector(self) -> dict[str, float] | None:
        return None if self.oversample is None else {"oversample": self.oversample}


def variants_of(types: Sequence[str], oversamples: dict[str, list[float]]) -> list[Variant]:
    """One variant per type, or one per oversample for the types given oversamples."""
    return [Variant(kind, oversample) for kind in types for oversample in oversamples.get(kind) or [None]]


def knn_request(vector: list[float], top: int, k: int, num_candidates: int, variant: Variant) -> dict:
    """The API's request (searchapi.queries.similarity_search) with collapse off, our num_candidates
    and the variant's rescore_vector."""
    request = queries.similarity_search(vector, size=top, from_=0, k=k, collapse=False)
    request["knn"]["num_candidates"] = num_candidates
    if (rescore := variant.rescore_vector()) is not None:
        request["knn"]["rescore_vector"] = rescore
    return request


def options() -> harness.Options:
    opts = harness.Options("recall", "Recall@10, latency, disk and memory per dense_vector index type.")
    opts.preset("--sizes", str, "10000,100000", "2000", "vectors per index, comma separated")
    opts.preset("--queries", int, 200, 100, "held-out query vectors")
    opts.preset("--real-photos", int, 240, 24, "photos whose real VGG16 vectors seed the corpus")
    opts.add("--types", default=",".join(TYPES), help="index_options.type values")
    opts.add("--int8-oversample", default="0,2", help="rescore_vector.oversample of int8_hnsw (0: none)")
    opts.add("--bbq-oversample", default="0,3,5", help="the same for bbq_hnsw (ES 8.19 maps 3 by default)")
    opts.add("--num-candidates", help="num_candidates values (default: k, the API's, 2x and 4x the API's)")
    opts.add("--page-size", type=int, default=10, help="results per page: recall@page-size, k as the API's")
    opts.add("--cache-dir", type=Path, default=CACHE_DIR, help="cache of random/imagenet photo vectors")
    opts.add("--no-cache", action="store_true", help="compute the photo vectors again")
    geometry = "as-is: the model's photo vectors (~0.98 apart with random weights); centred: minus their mean"
    opts.add("--geometry", choices=sorted(GEOMETRIES), default="as-is", help=geometry)
    opts.add("--keep", action="store_true", help=f"keep the {INDEX_PREFIX}-* indices afterwards")
    opts.model(1234, "VGG16_SEED and the corpus/photo seed")
    return opts


def resolve(args):
    """Parse the lists; derive the variants, k and num_candidates from the API's own builders."""

    def numbers(text: str, kind=int) -> list:
        return [kind(part) for part in str(text).split(",") if part.strip()]

    args.sizes, args.types = numbers(args.sizes), numbers(args.types, str.strip)
    oversamples = {
        "int8_hnsw": numbers(args.int8_oversample, float),
        "bbq_hnsw": numbers(args.bbq_oversample, float),
    }
    args.variants = variants_of(args.types, oversamples)
    args.k = queries.initial_k(args.page_size, 0)
    api = args.api_num_candidates = queries.num_candidates_for(args.k)
    wanted = numbers(args.num_candidates) if args.num_candidates else [args.k, api, 2 * api, 4 * api]
    args.num_candidates = sorted({api, *(nc for nc in wanted if nc >= args.k)})
    return args


def load_real_vectors(args) -> tuple[np.ndarray, dict[str, Any], str]:
    """VGG16 vectors of the generated photos (cached), the model's _meta, and where they came from."""
    cacheable = not args.no_cache and args.weights in CACHEABLE_WEIGHTS
    path = args.cache_dir / f"photo-vectors-{args.weights}-seed{args.seed}-n{args.real_photos}.npz"
    if cacheable and path.exists():
        with np.load(path) as data:
            return data["vectors"], json.loads(str(data["model"])), f"cache {path}"
    from imgsearch.features import FeatureExtractor

    started = time.perf_counter()
    say(f"computing VGG16 vectors of {args.real_photos} photos ...")
    extractor = FeatureExtractor(args.weights, seed=args.seed)
    extractor.warm_up()
    with tempfile.TemporaryDirectory(prefix="bench-recall-") as folder:
        real = real_vectors(extractor, Path(folder), args.real_photos, args.seed)
    model = extractor.info.as_meta()
    if cacheable:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=real, model=json.dumps(model))
    return real, model, f"computed in {time.perf_counter() - started:.0f} s on {extractor.device}"


def corpus_matrix(real: np.ndarray, plan: CorpusPlan) -> np.ndarray:
    """The vectors as Elasticsearch holds them (6 decimals as sent, float32); row i is document i + 1."""
    return np.round(np.stack([vector for _, _, vector in corpus(real, plan)]), 6).astype(np.float32)


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
    figures = {"nearest_cosine_mean": first.mean(), "nearest_cosine_max": first.max()}
    figures |= {"tenth_cosine_mean": last.mean(), "gap_1st_10th_mean": (first - last).mean()}
    return {"queries": len(queries)} | {key: round(float(value), 4) for key, value in figures.items()}


def build_index(es, plan: CorpusPlan, real: np.ndarray, model: dict, name: str) -> dict[str, Any]:
    """`name` from the project's definition with only index_options.type swapped, loaded, force-merged,
    and what it holds: store, segments, files by extension, _disk_usage, memory per vector."""
    meta = {"model": model, "created_at": datetime.now(UTC).isoformat(), "created_by": "bench.recall"}
    config = harness.elastic_config(name, plan.vector_index_type)
    body = indices.load_index_definition(config, meta | {"bench": asdict(plan)})
    es.options(ignore_status=404).indices.delete(index=name)  # a leftover of an interrupted run
    seconds = build_version(es, name, body, real, plan)
    mapping = es.indices.get_mapping(index=name).body[name]["mappings"]["properties"]["feature"]
    stats = es.indices.stats(index=name, metric="docs,store,segments", include_segment_file_sizes=True)
    primaries = stats.body["indices"][name]["primaries"]
    files = primaries["segments"].get("file_sizes", {})
    sizes = {ext: info["size_in_bytes"] for ext, info in files.items()}
    hot, compound = HOT_FILES[quantization_of(plan.vector_index_type)], "cfs" in sizes
    facts = {"index": name, "index_type": plan.vector_index_type, "seconds": seconds}
    facts["feature_mapping"] = mapping
    facts |= {"docs": primaries["docs"]["count"], "segments": primaries["segments"]["count"]}
    facts |= {"store_bytes": primaries["store"]["size_in_bytes"], "file_sizes": sizes}
    facts["file_descriptions"] = {ext: info.get("description", "") for ext, info in files.items()}
    facts |= {"compound_file": compound, "hot_files": list(hot)}
    hot_bytes = None if compound else round(sum(sizes.get(e, 0) for e in hot) / plan.docs, 1)
    facts["hot_bytes_per_vector"] = hot_bytes
    m = mapping["index_options"].get("m", 16)
    expected = offheap_bytes_per_vector(config.vector_index_type, DIMS, m)
    return facts | {"disk_usage": disk_usage(es, name), "expected_offheap_per_vector": expected}


def disk_usage(es, name: str) -> dict[str, Any]:
    """knn_vectors bytes of the vector field and _source bytes."""
    slow = es.options(request_timeout=USAGE_TIMEOUT)  # the analysis reads the whole index
    try:
        usage = slow.indices.disk_usage(index=name, run_expensive_tasks=True)
    except ApiError as exc:
        return {"error": str(exc)}
    fields, feature = usage.body[name]["fields"], usage.body[name]["fields"]["feature"]
    usage = {"total_bytes": usage.body[name]["all_fields"]["total_in_bytes"]}
    usage |= {"feature_knn_vectors_bytes": feature["knn_vectors_in_bytes"]}
    usage |= {"feature_total_bytes": feature["total_in_bytes"]}
    return usage | {"source_bytes": fields.get("_source", {}).get("total_in_bytes", 0)}


@dataclass
class Series:
    """One variant at one num_candidates on one index: what was sent and what came back."""

    variant: Variant
    num_candidates: int
    index: str
    seconds: list[float] = field(default_factory=list)
    took_ms: list[float] = field(default_factory=list)
    found: list[list[int]] = field(default_factory=list)

    def search(self, es, vector: list[float], args, record: bool = True) -> None:
        request = knn_request(vector, args.page_size, args.k, self.num_candidates, self.variant)
        started = time.perf_counter()
        response = es.search(index=self.index, **request)
        if record:
            self.seconds.append(time.perf_counter() - started)
            self.took_ms.append(float(response["took"]))
            self.found.append([int(hit["_id"]) for hit in response["hits"]["hits"][: args.page_size]])

    def row(self, truth: np.ndarray, args) -> dict[str, Any]:
        recalls = recall_per_query(self.found, truth.tolist(), args.page_size)
        millis, oversample = [seconds * 1000 for seconds in self.seconds], self.variant.oversample
        row = {"variant": self.variant.name, "index_type": self.variant.index_type, "oversample": oversample}
        row |= {"k": args.k, "num_candidates": self.num_candidates}
        row["effective_num_candidates"] = effective_num_candidates(args.k, self.num_candidates, oversample)
        row |= {"api_setting": self.num_candidates == args.api_num_candidates, "queries": len(recalls)}
        row |= {"recall_mean": round(float(np.mean(recalls)), 4), "recall_min": round(min(recalls), 2)}
        row["queries_recall_1"] = sum(1 for value in recalls if value == 1.0)
        row |= {f"p{q}_ms": round(percentile(millis, q), 2) for q in (50, 90, 99)}
        row |= {"mean_ms": round(float(np.mean(millis)), 2), "max_ms": round(max(millis), 2)}
        return row | {f"took_p{q}_ms": round(percentile(self.took_ms, q), 1) for q in (50, 99)}


def measure(es, args, names: dict[str, str], queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Every query once per index (untimed, so their files are in the page cache), a warm-up per series,
    then every variant at every num_candidates, interleaved block of queries by block."""
    vectors = [query.tolist() for query in queries]
    load = harness.load_before(args.wait_idle)
    for index_type, name in names.items():
        for vector in vectors:
            Series(Variant(index_type), args.api_num_candidates, name).search(es, vector, args, record=False)
    all_series = [Series(v, nc, names[v.index_type]) for v in args.variants for nc in args.num_candidates]
    with PhaseMeter(es, INDEX_PREFIX, {"elasticsearch": elasticsearch_pids(es)}) as meter:
        for series in all_series:
            for vector in vectors[:WARM_QUERIES]:
                series.search(es, vector, args, record=False)
        for start in range(0, len(vectors), BLOCK):
            for series in all_series:
                for vector in vectors[start : start + BLOCK]:
                    series.search(es, vector, args)
    cpu = meter.as_dict()
    others = cpu.pop("other_es_ops")
    rows = [series.row(truth, args) for series in all_series]
    loads = {"before": load, "after": harness.load_average()}
    return {"rows": rows, "load_average": loads, "cpu": cpu, "other_es_ops": others}


def run_size(es, args, real: np.ndarray, model: dict[str, Any], size: int) -> dict[str, Any]:
    """Build one index per type with `size` vectors, measure every variant, drop the indices."""
    plan = CorpusPlan(size, args.seed, len(real), "")
    say(f"{size} vectors: generating the corpus and exact neighbours ...")
    vectors = corpus_matrix(real, plan)
    queries = held_out_queries(real, plan, args.queries)
    truth = exact_top_k(vectors, queries, args.page_size) + 1  # document ids are row + 1
    names = {index_type: f"{INDEX_PREFIX}-{size}-{index_type.replace('_', '-')}" for index_type in args.types}
    try:
        built = {}
        for kind, name in names.items():
            built[kind] = build_index(es, replace(plan, vector_index_type=kind), real, model, name)
        say(f"{size} vectors: measuring {len(args.variants)} variants ...")
        measured = measure(es, args, names, queries, truth)
    finally:
        for name in [] if args.keep else names.values():
            es.options(ignore_status=404).indices.delete(index=name)
    described = {"size": size, "corpus": replace(plan, vector_index_type="(each type)").describe()}
    described["corpus_stats"] = corpus_stats(real, plan)
    described["query_stats"] = query_stats(vectors, queries, truth - 1)
    return described | {"indices": built, **measured}


def settings_of(args, real_source: str, model: dict[str, Any]) -> dict[str, Any]:
    names = "smoke sizes queries types page_size k api_num_candidates num_candidates real_photos geometry"
    settings = harness.pick(args, names + " weights seed") | {"variants": [v.name for v in args.variants]}
    request = knn_request([0.0], args.page_size, args.k, args.api_num_candidates, Variant("bbq_hnsw", 3.0))
    request["knn"]["query_vector"] = f"<{DIMS} floats>"
    settings |= {"real_vectors": real_source, "geometry_description": GEOMETRIES[args.geometry]}
    settings |= {"model": model, "request": request, "recommendation_rule": RULE, "docs": DOCS}
    settings["queries_description"] = (
        f"{args.queries} held-out vectors per size: the corpus generator with seed "
        f"{args.seed + QUERY_SEED_OFFSET} (other products round the same real photos, other image noise), "
        "real photos' own vectors excluded, so no query is in the index"
    )
    settings["truth"] = "exact top k by numpy dot product (float32) of the vectors as indexed (6 decimals)"
    return settings


def run(args) -> dict[str, Any]:
    es = esclient.make_client(harness.elastic_config(INDEX_PREFIX, TYPES[0]))
    real, model, real_source = load_real_vectors(args)
    if args.geometry == "centred":  # random weights put every photo ~0.98 cosine from every other; minus
        # their shared mean, clipped and unit length, random pairs spread to ~0.3 cosine, the range of
        # trained CNN features of unrelated images (an assumption)
        real = unit_rows(real - real.mean(axis=0, keepdims=True))
    before = harness.load_average()
    sizes = [run_size(es, args, real, model, size) for size in args.sizes]
    results = harness.envelope(args, before) | {"elasticsearch_version": indices.server_version(es)}
    results |= {"settings": settings_of(args, real_source, model), "sizes": sizes}
    results["recommendation"] = asdict(recommend(candidates_of(sizes, api_only=True)))
    results["recommendation_any_num_candidates"] = asdict(recommend(candidates_of(sizes, api_only=False)))
    results["disturbed"] = [
        f"{entry['size']} vectors (others used {entry['cpu'].get('other_cores')} cores, sent Elasticsearch "
        f"{entry['other_es_ops']} requests)"
        for entry in sizes
        if harness.is_disturbed(entry["cpu"] | {"other_es_ops": entry["other_es_ops"]})
    ]
    return results


def rows(api_only: bool) -> Callable[[dict], list[dict]]:
    chosen = lambda row: row["api_setting"] or not api_only  # noqa: E731
    return lambda res: [{"vectors": e["size"]} | r for e in res["sizes"] for r in e["rows"] if chosen(r)]


def storage(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Disk after the force-merge and expected off-heap memory per vector."""
    keys = "segments store_bytes compound_file hot_bytes_per_vector disk_usage expected_offheap_per_vector"
    return [
        {"vectors": entry["size"], "type": kind} | {key: facts[key] for key in keys.split()}
        for entry in results["sizes"]
        for kind, facts in entry["indices"].items()
    ]


def context(results: dict[str, Any]) -> list[str]:
    settings, api = results["settings"], results["recommendation"]
    sweep = results["recommendation_any_num_candidates"]
    return [
        f"Elasticsearch {results['elasticsearch_version']}. Geometry `{settings['geometry']}`: "
        f"{settings['geometry_description']}; photo vectors {settings['real_vectors']}. Queries: "
        f"{settings['queries_description']}. Truth: {settings['truth']}.",
        f"Request (recall from the first {settings['page_size']} hits): `{json.dumps(settings['request'])}`.",
        f"**Recommendation: {api['choice'] or 'none'}** (rule: {RULE}; at the API's num_candidates "
        f"{settings['api_num_candidates']}); over every num_candidates: **{sweep['choice'] or 'none'}**.",
        "\n".join(f"- {reason}" for reason in api["reasons"]),
        "Docs relied on: " + ", ".join(f"[{name}]({url})" for name, url in DOCS.items()) + ".",
    ]


USE = ("size", "cpu", "other_es_ops", "load_average", "corpus_stats", "query_stats")
TABLES = [("at the API's k and num_candidates", rows(True)), ("storage", storage)]
TABLES += [("num_candidates sweep", rows(False))]
# who used the cores while each size was measured (the index builds are not counted)
TABLES += [("machine use while measuring", lambda res: [{key: e[key] for key in USE} for e in res["sizes"]])]
REPORT = harness.Report("dense_vector index types: recall@10, kNN latency, disk and memory", TABLES, context)


def main(argv: list[str] | None = None) -> int:
    args = resolve(options().parse(argv))
    results = run(args)
    harness.write_results(results, REPORT, args)
    chosen = results["recommendation"]
    print(f"recommendation: {chosen['choice'] or 'none'} ({chosen['reasons'][-1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
