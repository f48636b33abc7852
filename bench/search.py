"""Search API latency side by side in one run: upload vs the bare model, by id vs raw kNN, sustained load."""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.apiserver import GUNICORN_CONF, ApiServer, Layout, api_compute, running_api
from bench.catalog import fill_defaults
from bench.ceilings import add_compute_arguments
from bench.loadgen import (
    HttpRequest,
    JobFeed,
    LoadResult,
    Outcome,
    http_worker,
    latency_stats,
    multipart_image,
    run_load,
    timed_call,
)
from bench.machine import CpuMeter, load_average, machine_facts, rss_bytes, wait_for_load_below
from bench.photos import write_photos
from bench.searchindex import BenchIndex, CorpusPlan, drop_index, ensure_index

log = logging.getLogger("bench.search")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
IDLE_LOAD = 0.5
DISTURBED_CORES = 0.1  # others' cores above which a phase is flagged
DISTURBED_ES_OPS = 10  # requests other users sent Elasticsearch during a phase, above which it is flagged
LAYOUT_ROUNDS = 3
ES_WARM_REQUESTS = 1000  # untimed get + kNN requests before anything is measured
COLD_JVM_SECONDS = 600  # an Elasticsearch started less than this before the run counts as a disturbance
PAUSE = 0.02  # between interleaved calls, so one process's idle TensorFlow threads stop spinning
QUERY_SIZE = ((600, 450), (680, 510))  # query photos: "640x480-ish" JPEGs
TARGETS = {"upload_minus_model_ms": 20.0, "id_p50_ms": 20.0, "api_overhead_ms": 5.0, "soak_errors": 0}
SMOKE = {
    "docs": 2000,
    "real_photos": 24,
    "id_requests": 40,
    "upload_requests": 8,
    "soak_seconds": 10.0,
}
DEFAULTS = {
    "docs": 100_000,
    "real_photos": 240,
    "id_requests": 200,
    "upload_requests": 40,
    "soak_seconds": 60.0,
}

DESCRIPTION = """\
Measure the search API served by its production server (gunicorn -c searchapi/gunicorn.conf.py
'searchapi:create_app()', a child process on a free port) against a bench index of --docs documents,
side by side in one run:
  model         FeatureExtractor.extract_one on a pre-decoded 224x224 image, in this process
  decode+model  imgsearch.imaging.decode_image (JPEG bytes) + extract_one, in this process
  upload        POST /search, multipart `image`, a 640x480-ish JPEG
                (at concurrency 1 interleaved call by call with the two above, so all three share the
                same minutes of the shared machine)
  by id         GET /images/<id>/similar?size=N, random ids
  raw get+kNN   from this process, the Elasticsearch work the API does for a search by id: es.get of the
                stored vector, then searchapi.search.find_similar (the API's own request: kNN k and
                num_candidates, relation_id pre-filter, collapse)
  raw kNN       find_similar alone, with the stored vectors fetched beforehand
at each --levels concurrency (keep-alive HTTP clients in threads, one connection each; fixed numbers
of requests), then a sustained mixed load (--soak-concurrency clients, --soak-upload-share uploads,
the rest by id, for --soak-seconds) counting non-2xx answers and connection errors, and with
--layouts gunicorn 1 worker x 8 threads against 2 workers x 4 threads.

Reported: p50/p95/p99 and requests/s per series and level; upload p50 - model p50 (target <= 20 ms),
upload p50 - decode+model p50, by-id p50 (target < 20 ms), API overhead = by-id p50 - raw kNN p50
(target < 5 ms; by-id - raw get+kNN is the HTTP/Flask part alone), soak errors (target 0).

The bench index lives behind the alias --alias (default bench-search-<docs>), built with the project's
index definition (indexer.sink: create_build_index, finish_build_index, force-merge, swap_alias) and
_meta.model = the model fingerprint, so the API's model check passes. It is kept for the next run and
reused when its parameters match (--rebuild forces a new one; --drop deletes it after the run).
Vectors: VGG16 (VGG16_WEIGHTS=--weights, VGG16_SEED=--seed, the same for the API) of --real-photos
generated photos, plus synthetic products of 1-5 images clustered round them (see the results).

Needs ES_URL (eval "$(bash scripts/stack.sh env)"). Results: tables on stdout,
bench/results/search-<UTC time>.json and .md (search-latest.md too; --smoke writes search-smoke-*).
The machine is shared: each phase records the cores used by this process, the API server,
Elasticsearch, everything else and the hypervisor (stolen), and the requests others sent
Elasticsearch; phases where others used more than 0.1 cores or sent more than 10 requests are
flagged as disturbed, and so is the whole run when Elasticsearch was restarted during it or less
than 10 minutes before (a cold JVM; 1000 untimed get + kNN requests warm it before every run).
--wait-idle waits for a quiet machine first."""


@dataclass
class Phase:
    """One measured series at one concurrency, and who used the CPU meanwhile."""

    name: str
    series: str
    concurrency: int
    stats: dict[str, Any]
    cpu: dict[str, float] = field(default_factory=dict)
    layout: str = ""

    def as_dict(self) -> dict[str, Any]:
        layout = {"layout": self.layout} if self.layout else {}
        return {
            "phase": self.name,
            "series": self.series,
            "concurrency": self.concurrency,
            **layout,
            **self.stats,
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_argument_group("what is measured")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check (< 2 min once the model is cached): "
        + ", ".join(f"{key.replace('_', '-')} {value}" for key, value in SMOKE.items())
        + " unless given; results go to search-smoke-*",
    )
    size.add_argument("--docs", type=int, help=f"documents in the bench index (default {DEFAULTS['docs']})")
    size.add_argument(
        "--real-photos",
        type=int,
        help=f"photos whose real VGG16 vectors seed the corpus (default {DEFAULTS['real_photos']})",
    )
    size.add_argument(
        "--id-requests",
        type=int,
        help=f"requests per level for by id, raw get+kNN and raw kNN (default {DEFAULTS['id_requests']})",
    )
    size.add_argument(
        "--upload-requests",
        type=int,
        help=f"uploads per level; also the number of interleaved model / decode+model / upload rounds "
        f"at concurrency 1 (default {DEFAULTS['upload_requests']}; each is a ~230 ms model call)",
    )
    size.add_argument(
        "--levels",
        default="1,4,16",
        help="client concurrency levels, comma separated (default 1,4,16; 1 is always measured)",
    )
    size.add_argument("--size", type=int, default=10, help="products per result page, ?size= (default 10)")
    size.add_argument("--query-photos", type=int, default=12, help="distinct upload JPEGs (default 12)")
    size.add_argument(
        "--soak-seconds",
        type=float,
        help=f"sustained mixed load duration, 0 to skip (default {DEFAULTS['soak_seconds']:.0f})",
    )
    size.add_argument("--soak-concurrency", type=int, default=8, help="sustained load clients (default 8)")
    size.add_argument(
        "--soak-upload-share",
        type=float,
        default=0.2,
        help="share of uploads in the sustained load, the rest by id (default 0.2)",
    )
    size.add_argument(
        "--layouts",
        action="store_true",
        help="also compare gunicorn 1 worker x 8 threads with 2 workers x 4 threads (upload and by id)",
    )
    size.add_argument(
        "--layout-concurrency", type=int, default=4, help="client concurrency of --layouts (default 4)"
    )
    index = parser.add_argument_group("bench index")
    index.add_argument("--alias", help="bench alias (default bench-search-<docs>)")
    index.add_argument(
        "--index-type",
        default=os.environ.get("ES_VECTOR_INDEX_TYPE", "int8_hnsw"),
        help="dense_vector index_options.type (default $ES_VECTOR_INDEX_TYPE or int8_hnsw, the project's)",
    )
    index.add_argument("--rebuild", action="store_true", help="build the bench index even if a match exists")
    index.add_argument("--drop", action="store_true", help="delete the bench index after the run")
    index.add_argument("--drop-only", action="store_true", help="delete the bench index and exit")
    index.add_argument(
        "--build-only", action="store_true", help="build the bench index (or find it reusable) and exit"
    )
    model = parser.add_argument_group("model and machine")
    model.add_argument(
        "--weights",
        default=os.environ.get("VGG16_WEIGHTS", "random"),
        help="VGG16_WEIGHTS for this process and the API (default $VGG16_WEIGHTS or 'random')",
    )
    model.add_argument(
        "--seed", type=int, default=1234, help="VGG16_SEED and the corpus/photo/request seed (default 1234)"
    )
    add_compute_arguments(model)
    model.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"before measuring, wait up to SECONDS for the 1-minute load average to drop below {IDLE_LOAD}",
    )
    model.add_argument(
        "--api-start-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the API to answer /health and settle (default 300; a failed start is "
        "retried twice, a minute apart)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where results are written (default bench/results)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of this process (default WARNING; the API logs to a file in a temporary folder)",
    )
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left unset from the smoke or full defaults; parse the levels."""
    fill_defaults(args, SMOKE, DEFAULTS)
    args.levels = sorted({1, *(int(level) for level in str(args.levels).split(",") if level.strip())})
    args.alias = args.alias or f"bench-search-{args.docs}"
    return args


# --- set-up -----------------------------------------------------------------------------------------


def elastic_config(args: argparse.Namespace):
    from imgsearch.config import load_elastic_config

    if not os.environ.get("ES_URL"):
        raise SystemExit('ES_URL not set: run eval "$(bash scripts/stack.sh env)" first')
    env = {
        "ES_URL": os.environ["ES_URL"],
        "ES_INDEX": args.alias,
        "ES_NUMBER_OF_REPLICAS": "0",
        "ES_VECTOR_INDEX_TYPE": args.index_type,
    }
    return load_elastic_config(env)


def raw_client(config, connections: int):
    """A client like the API's (one retry), with a pool large enough for the highest concurrency."""
    from elasticsearch import Elasticsearch

    return Elasticsearch(
        config.url, request_timeout=30, max_retries=1, retry_on_timeout=True, connections_per_node=connections
    )


def elasticsearch_pids(es) -> list[int]:
    """The local Elasticsearch process, for CPU accounting (none when it runs elsewhere)."""
    nodes = es.nodes.info(node_id="_local", metric="process", filter_path="nodes.*.process.id").body
    pid = next(iter(nodes.get("nodes", {}).values()), {}).get("process", {}).get("id")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [int(pid)] if b"elasticsearch" in handle.read() else []
    except (OSError, TypeError, ValueError):
        return []


def elasticsearch_started_at(es) -> float | None:
    """When the Elasticsearch JVM started (epoch seconds): a change means it was restarted."""
    info = es.nodes.info(node_id="_local", metric="jvm", filter_path="nodes.*.jvm.start_time_in_millis").body
    millis = next(iter(info.get("nodes", {}).values()), {}).get("jvm", {}).get("start_time_in_millis")
    return int(millis) / 1000 if millis else None


def warm_elasticsearch(args, es, work: Workload) -> int:
    """Untimed get + kNN requests, so a freshly (re)started JVM has compiled its hot paths."""
    count = min(ES_WARM_REQUESTS, 5 * args.id_requests)
    worker = raw_knn_worker(es, args.alias, args.size, work.stored, with_get=True)
    run_load(worker, JobFeed(work.soak_ids[:count]), 2)
    return count


def default_layout() -> Layout:
    """workers x threads as searchapi/gunicorn.conf.py sets them (the documented production layout)."""
    conf = runpy.run_path(str(GUNICORN_CONF))
    return Layout(int(conf["workers"]), int(conf["threads"]))


@dataclass
class Workload:
    """Everything the phases send, prepared before any clock starts."""

    query_jpegs: list[bytes]
    query_pixels: list[np.ndarray]
    ids_per_level: dict[int, list[str]]
    stored: dict[str, tuple[list[float], str]]  # id -> (vector, relation_id), for raw kNN
    soak_ids: list[str]


def prepare_workload(args: argparse.Namespace, es, alias: str, folder: Path) -> Workload:
    from imgsearch.imaging import decode_image

    photos = write_photos(folder / "queries", args.query_photos, args.seed + 7, *QUERY_SIZE)
    jpegs = [path.read_bytes() for path in photos]
    rng = np.random.default_rng(args.seed)
    ids = {c: [str(i) for i in rng.integers(1, args.docs + 1, args.id_requests)] for c in args.levels}
    wanted = sorted({i for level in ids.values() for i in level})
    stored: dict[str, tuple[list[float], str]] = {}
    for start in range(0, len(wanted), 500):
        docs = es.mget(index=alias, ids=wanted[start : start + 500], source=["feature", "relation_id"])
        for doc in docs["docs"]:
            stored[doc["_id"]] = (doc["_source"]["feature"], doc["_source"]["relation_id"])
    soak_ids = [str(i) for i in rng.integers(1, args.docs + 1, 5000)]
    return Workload(jpegs, [decode_image(data) for data in jpegs], ids, stored, soak_ids)


def api_environment(args: argparse.Namespace, config) -> dict[str, str]:
    return {
        **os.environ,
        "ES_URL": config.url,
        "ES_INDEX": args.alias,
        "VGG16_WEIGHTS": args.weights,
        "VGG16_SEED": str(args.seed),
        "VGG16_PRECISION": args.precision,
        "VGG16_COMPILE": args.compile,
    }


# --- requests ---------------------------------------------------------------------------------------


def upload_request(jpeg: bytes, size: int) -> HttpRequest:
    body, headers = multipart_image(jpeg)
    return HttpRequest("upload", "POST", f"/search?size={size}", body, headers)


def id_request(image_id: str, size: int) -> HttpRequest:
    return HttpRequest("by id", "GET", f"/images/{image_id}/similar?size={size}")


def raw_knn_worker(es, alias: str, size: int, stored, with_get: bool):
    """Per-thread caller of the API's Elasticsearch work, in this process."""
    from searchapi.search import find_similar

    def search(image_id: str) -> int:
        if with_get:
            found = es.get(index=alias, id=image_id, source=["feature", "relation_id"])
            vector, relation = found["_source"]["feature"], found["_source"]["relation_id"]
        else:
            vector, relation = stored[image_id]
        return len(find_similar(es, alias, vector, size=size, exclude_relation_id=relation).hits)

    kind = "raw get+kNN" if with_get else "raw kNN"
    return lambda: ((lambda image_id: timed_call(kind, lambda: search(image_id))), lambda: 0)


def request_description(args: argparse.Namespace) -> dict[str, Any]:
    """The kNN request the API sends for a page (query vector left out), for the results."""
    from searchapi import queries

    try:
        k = queries.initial_k(args.size, 0)
        request = queries.similarity_search([0.0], size=args.size, from_=0, k=k, exclude_relation_id="<own>")
    except TypeError as exc:  # the API's builders changed shape: describe what we can
        return {"error": str(exc)}
    request["knn"] = {key: value for key, value in request["knn"].items() if key != "query_vector"}
    return request


# --- phases -----------------------------------------------------------------------------------------


def elasticsearch_ops(es, exclude: str) -> dict[str, int]:
    """Searches + index/delete operations Elasticsearch has served, per index other than `exclude`."""
    stats = es.indices.stats(metric="search,indexing", filter_path="indices.*.total").body
    return {
        name: index["total"]["search"]["query_total"]
        + index["total"]["indexing"]["index_total"]
        + index["total"]["indexing"]["delete_total"]
        for name, index in stats.get("indices", {}).items()
        if name != exclude
    }


def ops_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Operations served in between (indices created meanwhile count whole, deleted ones not at all)."""
    return sum(max(count - before.get(name, 0), 0) for name, count in after.items())


class PhaseMeter:
    """Cores per process group (CpuMeter) plus the requests other users sent Elasticsearch meanwhile."""

    def __init__(self, cpu: CpuMeter, es, index: str) -> None:
        self.cpu, self.es, self.index = cpu, es, index
        self.other_es_ops = 0

    def __enter__(self) -> PhaseMeter:
        self._ops = elasticsearch_ops(self.es, self.index)
        self.cpu.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu.__exit__(*exc)
        self.other_es_ops = ops_between(self._ops, elasticsearch_ops(self.es, self.index))

    def as_dict(self) -> dict[str, float]:
        cores = {key: value for key, value in self.cpu.as_dict().items() if key != "image_server_cores"}
        return cores | {"other_es_ops": self.other_es_ops}


class Meter:
    """Makes a PhaseMeter for this run's processes (the API server's, Elasticsearch's) and index."""

    def __init__(self, es, index: str) -> None:
        self.es, self.index = es, index
        self.es_pids = elasticsearch_pids(es)
        self.servers: list[ApiServer] = []

    def __call__(self) -> PhaseMeter:
        api = [pid for server in self.servers for pid in server.pids()]
        groups = {"api": api, "elasticsearch": self.es_pids}
        return PhaseMeter(CpuMeter(named_pids=groups), self.es, self.index)


def cpu_of(meter: PhaseMeter) -> dict[str, float]:
    return meter.as_dict()


def load_phase(name: str, series: str, meter: Meter, run, size: int) -> Phase:
    """Run one closed-loop load and turn it into a Phase."""
    with meter() as cpu:
        result: LoadResult = run()
    stats = latency_stats(result.outcomes, result.wall, size)
    stats["reconnects"] = result.reconnects
    print(f"  {name}: p50 {stats.get('p50_ms', '-')} ms, {stats.get('per_second')} /s", file=sys.stderr)
    return Phase(name, series, result.concurrency, stats, cpu_of(cpu))


def interleaved_rounds(args, extractor, server: ApiServer, work: Workload, meter: Meter) -> list[Phase]:
    """Concurrency 1: model, decode+model and upload call by call, in rotating order."""
    from imgsearch.imaging import decode_image

    worker, _ = http_worker(server.host, server.port)()
    outcomes: dict[str, list[Outcome]] = {"model": [], "decode+model": [], "upload": []}
    calls = {
        "model": lambda n: timed_call("model", lambda: extractor.extract_one(work.query_pixels[n]).size),
        "decode+model": lambda n: timed_call(
            "decode+model", lambda: extractor.extract_one(decode_image(work.query_jpegs[n])).size
        ),
        "upload": lambda n: worker(upload_request(work.query_jpegs[n], args.size)),
    }
    order = list(calls)
    worker(upload_request(work.query_jpegs[0], args.size))  # warm the connection
    with meter() as cpu:
        for number in range(args.upload_requests):
            photo = number % len(work.query_jpegs)
            for kind in order[number % 3 :] + order[: number % 3]:
                outcomes[kind].append(calls[kind](photo))
                time.sleep(PAUSE)
    phases = []
    for kind, results in outcomes.items():
        stats = latency_stats(results, None, args.size if kind == "upload" else 0)
        phases.append(Phase(f"{kind} c=1 (interleaved)", kind, 1, stats, cpu_of(cpu)))
        print(f"  {kind} c=1: p50 {stats.get('p50_ms', '-')} ms", file=sys.stderr)
    phases[-1].stats |= {
        "paired_minus_model_ms": paired_difference(outcomes["upload"], outcomes["model"]),
        "paired_minus_decode_model_ms": paired_difference(outcomes["upload"], outcomes["decode+model"]),
    }
    return phases


def paired_difference(first: list[Outcome], second: list[Outcome]) -> float | None:
    """Median over rounds of first - second (ms): each pair ran within a second of each other, so slow
    minutes of the shared machine cancel out."""
    differences = [
        (a.seconds - b.seconds) * 1000 for a, b in zip(first, second, strict=True) if a.ok and b.ok
    ]
    return round(float(np.median(differences)), 2) if differences else None


def upload_phase(args, server: ApiServer, work: Workload, meter: Meter, concurrency: int, label="") -> Phase:
    count = max(args.upload_requests, concurrency)
    jobs = [upload_request(work.query_jpegs[n % len(work.query_jpegs)], args.size) for n in range(count)]
    warm = upload_request(work.query_jpegs[-1], args.size)
    run = lambda: run_load(http_worker(server.host, server.port), JobFeed(jobs), concurrency, warm)  # noqa: E731
    return load_phase(f"upload c={concurrency}{label}", "upload", meter, run, args.size)


def id_phase(args, server: ApiServer, work: Workload, meter: Meter, concurrency: int, label="") -> Phase:
    ids = work.ids_per_level.get(concurrency, work.soak_ids)
    jobs = [id_request(image_id, args.size) for image_id in ids[: args.id_requests]]
    warm = id_request(work.soak_ids[0], args.size)
    run = lambda: run_load(http_worker(server.host, server.port), JobFeed(jobs), concurrency, warm)  # noqa: E731
    return load_phase(f"by id c={concurrency}{label}", "by id", meter, run, args.size)


def raw_phase(args, es, work: Workload, meter: Meter, concurrency: int, with_get: bool) -> Phase:
    worker = raw_knn_worker(es, args.alias, args.size, work.stored, with_get)
    ids = work.ids_per_level[concurrency]
    run = lambda: run_load(worker, JobFeed(list(ids)), concurrency, ids[0])  # noqa: E731
    series = "raw get+kNN" if with_get else "raw kNN"
    return load_phase(f"{series} c={concurrency}", series, meter, run, args.size)


def soak_phase(args, server: ApiServer, work: Workload, meter: Meter) -> dict[str, Any]:
    """Mixed by-id and upload load for a fixed time; every answer counted."""
    shares = np.random.default_rng(args.seed + 3).random(1_000_000)

    def job(number: int) -> HttpRequest:
        if shares[number % len(shares)] < args.soak_upload_share:
            return upload_request(work.query_jpegs[number % len(work.query_jpegs)], args.size)
        return id_request(work.soak_ids[number % len(work.soak_ids)], args.size)

    print(f"  soak: {args.soak_concurrency} clients for {args.soak_seconds:.0f} s ...", file=sys.stderr)
    with meter() as cpu:
        result = run_load(
            http_worker(server.host, server.port),
            JobFeed(make_job=job),
            args.soak_concurrency,
            id_request(work.soak_ids[0], args.size),
            seconds=args.soak_seconds,
        )
    by_kind = {
        kind: latency_stats([o for o in result.outcomes if o.kind == kind], result.wall, args.size)
        for kind in ("by id", "upload")
    }
    total = latency_stats(result.outcomes, result.wall, args.size)
    total["reconnects"] = result.reconnects
    return {
        "concurrency": args.soak_concurrency,
        "upload_share": args.soak_upload_share,
        "all": total,
        "by_kind": by_kind,
        "cpu": cpu_of(cpu),
    }


def measure_levels(args, es, server: ApiServer, work: Workload, meter: Meter, extractor) -> list[Phase]:
    print("measuring concurrency 1 (model / decode+model / upload interleaved) ...", file=sys.stderr)
    phases = interleaved_rounds(args, extractor, server, work, meter)
    for concurrency in args.levels:
        print(f"measuring concurrency {concurrency} ...", file=sys.stderr)
        if concurrency > 1:
            phases.append(upload_phase(args, server, work, meter, concurrency))
        phases.append(id_phase(args, server, work, meter, concurrency))
        phases.append(raw_phase(args, es, work, meter, concurrency, with_get=True))
        phases.append(raw_phase(args, es, work, meter, concurrency, with_get=False))
    return phases


def measure_layouts(args, servers: list[ApiServer], work: Workload, meter: Meter) -> list[Phase]:
    """Upload and by id at --layout-concurrency on each server in turn, LAYOUT_ROUNDS times (A B A B ..),
    so slow minutes of the shared machine hit both layouts alike."""
    phases = []
    for number in range(1, LAYOUT_ROUNDS + 1):
        for measure in (upload_phase, id_phase):
            for server in servers:
                label = f" [{server.layout.name}, round {number}]"
                print(f"layout {server.layout.name}, round {number} ...", file=sys.stderr)
                phase = measure(args, server, work, meter, args.layout_concurrency, label)
                phase.layout = server.layout.name
                phases.append(phase)
    return phases


def layout_summary(phases: list[Phase], names: list[str]) -> list[dict[str, Any]]:
    """Per layout and series, its best round (highest requests/s: the one the shared machine slowed
    least), with the ratios to the first layout's best round (the documented one)."""
    rows = []
    for series in ("upload", "by id"):
        for name in names:
            mine = [p for p in phases if p.layout == name and p.series == series and "p50_ms" in p.stats]
            if not mine:
                continue
            best = max(mine, key=lambda phase: phase.stats["per_second"])
            rows.append(
                {
                    "layout": name,
                    "series": series,
                    "rounds": len(mine),
                    "best_round": best.name,
                    "p50_ms": best.stats["p50_ms"],
                    "p95_ms": best.stats["p95_ms"],
                    "per_second": best.stats["per_second"],
                    "per_second_rounds": [p.stats["per_second"] for p in mine],
                    "disturbed_rounds": sum(1 for p in mine if is_disturbed(p.cpu)),
                }
            )
    for row in rows:
        base = next(r for r in rows if r["series"] == row["series"])
        row["p50_over_first"] = round(row["p50_ms"] / base["p50_ms"], 3)
        row["per_second_over_first"] = round(row["per_second"] / base["per_second"], 3)
    return rows


def same_compute(server: ApiServer, extractor) -> None:
    """The API computes in the bench process's precision and compile mode, or the model series lie."""
    theirs = api_compute(server)
    ours = extractor.compute.as_meta()
    if (theirs.get("precision"), theirs.get("compile")) != (ours["precision"], ours["compile"]):
        raise RuntimeError(f"the API computes {theirs}, this process {ours}")


def warm_api(server: ApiServer, work: Workload, size: int) -> None:
    """One search by upload and one by id before anything is timed; both must answer 200."""
    worker, _ = http_worker(server.host, server.port)()
    for request in (upload_request(work.query_jpegs[0], size), id_request(work.soak_ids[0], size)):
        outcome = worker(request)
        if not outcome.ok:
            raise RuntimeError(f"warm-up {request.kind} failed: {outcome}\n{server.log_tail()}")


@dataclass
class Measured:
    phases: list[Phase]
    soak: dict[str, Any] | None
    layouts: list[Phase]
    layout_names: list[str]
    server_rss_mib: dict[str, float] = field(default_factory=dict)
    elasticsearch: dict[str, Any] = field(default_factory=dict)


def measure_all(args, config, extractor, work: Workload, folder: Path, index: str) -> Measured:
    """Start the API (the documented layout), measure every phase; with --layouts start the other
    layout next to it (idle servers cost no CPU) and alternate between the two."""
    from imgsearch.esclient import make_client
    from imgsearch.indices import server_version

    es = raw_client(config, max(args.levels) + 4)
    meter = Meter(make_client(config), index)
    started_at = elasticsearch_started_at(es)
    warm_requests = warm_elasticsearch(args, es, work)
    env = api_environment(args, config)
    main_layout = default_layout()
    layouts: list[Phase] = []
    names = [main_layout.name]
    rss: dict[str, float] = {}
    with running_api(env, main_layout, folder, args.api_start_timeout) as server:
        meter.servers = [server]
        same_compute(server, extractor)
        warm_api(server, work, args.size)
        phases = measure_levels(args, es, server, work, meter, extractor)
        soak = soak_phase(args, server, work, meter) if args.soak_seconds > 0 else None
        if args.layouts:
            other = Layout(2, 4) if main_layout != Layout(2, 4) else Layout(1, 8)
            names.append(other.name)
            with running_api(env, other, folder, args.api_start_timeout) as second:
                meter.servers = [server, second]
                warm_api(second, work, args.size)
                layouts = measure_layouts(args, [server, second], work, meter)
                rss[other.name] = server_rss_mib(second)
        rss[main_layout.name] = server_rss_mib(server)
    elastic = {
        "version": server_version(es),
        "uptime_at_start_s": round(time.time() - started_at) if started_at else None,
        "restarted_during_run": elasticsearch_started_at(es) != started_at,
        "warm_up_requests": warm_requests,
    }
    return Measured(phases, soak, layouts, names, rss, elastic)


def server_rss_mib(server: ApiServer) -> float:
    """Resident memory of the gunicorn master and its workers, after the measurements."""
    return round(sum(rss_bytes(pid) for pid in server.pids()) / 2**20, 1)


# --- results ----------------------------------------------------------------------------------------


def p50(phases: list[Phase], series: str, concurrency: int) -> float | None:
    for phase in phases:
        if phase.series == series and phase.concurrency == concurrency and "p50_ms" in phase.stats:
            return phase.stats["p50_ms"]
    return None


def difference(a: float | None, b: float | None) -> float | None:
    return round(a - b, 2) if a is not None and b is not None else None


def paired_of(phases: list[Phase]) -> dict[str, Any]:
    """The paired medians of the interleaved concurrency-1 rounds (upload phase's stats)."""
    for phase in phases:
        if phase.series == "upload" and "paired_minus_model_ms" in phase.stats:
            return {
                "upload_minus_model_paired_ms": phase.stats["paired_minus_model_ms"],
                "upload_minus_decode_model_paired_ms": phase.stats["paired_minus_decode_model_ms"],
            }
    return {"upload_minus_model_paired_ms": None, "upload_minus_decode_model_paired_ms": None}


def summary_of(measured: Measured) -> dict[str, Any]:
    phases = measured.phases
    upload, model = p50(phases, "upload", 1), p50(phases, "model", 1)
    by_id, raw, raw_get = p50(phases, "by id", 1), p50(phases, "raw kNN", 1), p50(phases, "raw get+kNN", 1)
    soak = measured.soak["all"] if measured.soak else None
    return {
        "model_p50_ms": model,
        "decode_model_p50_ms": p50(phases, "decode+model", 1),
        "upload_p50_ms": upload,
        "upload_minus_model_ms": difference(upload, model),
        "upload_minus_decode_model_ms": difference(upload, p50(phases, "decode+model", 1)),
        **paired_of(phases),
        "id_p50_ms": by_id,
        "raw_knn_p50_ms": raw,
        "raw_get_knn_p50_ms": raw_get,
        "api_overhead_ms": difference(by_id, raw),
        "api_http_overhead_ms": difference(by_id, raw_get),
        "soak_errors": soak["non_2xx"] + soak["connection_errors"] if soak else None,
    }


def targets_of(summary: dict[str, Any]) -> dict[str, Any]:
    checks = {
        "upload_minus_model_ms": lambda v: v <= TARGETS["upload_minus_model_ms"],
        "id_p50_ms": lambda v: v < TARGETS["id_p50_ms"],
        "api_overhead_ms": lambda v: v < TARGETS["api_overhead_ms"],
        "soak_errors": lambda v: v <= TARGETS["soak_errors"],
    }
    return {
        name: {
            "target": TARGETS[name],
            "value": summary[name],
            "met": None if summary[name] is None else check(summary[name]),
        }
        for name, check in checks.items()
    }


def is_disturbed(cpu: dict[str, float]) -> bool:
    return cpu.get("other_cores", 0.0) > DISTURBED_CORES or cpu.get("other_es_ops", 0) > DISTURBED_ES_OPS


def elasticsearch_disturbance(elastic: dict[str, Any]) -> list[str]:
    """A restart during the run, or a JVM younger than COLD_JVM_SECONDS at the start (still compiling)."""
    if elastic.get("restarted_during_run"):
        return ["the whole run (Elasticsearch was restarted during it)"]
    uptime = elastic.get("uptime_at_start_s")
    if uptime is not None and uptime < COLD_JVM_SECONDS:
        return [f"the whole run (Elasticsearch had been up only {uptime} s at the start: a cold JVM)"]
    return []


def disturbed(phases: list[Phase], soak: dict | None) -> list[str]:
    flagged = [phase.name for phase in phases if is_disturbed(phase.cpu)]
    if soak and is_disturbed(soak["cpu"]):
        flagged.append("soak")
    return flagged


def results_of(args, argv, index: BenchIndex, measured: Measured, loads, settings) -> dict[str, Any]:
    summary = summary_of(measured)
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    return {
        "benchmark": "search",
        "command": f"{python} -m bench.search {shlex.join(argv)}".rstrip(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "load_average": loads,
        "settings": settings,
        "index": index.as_dict(),
        "phases": [phase.as_dict() | {"cpu": phase.cpu} for phase in measured.phases],
        "soak": measured.soak,
        "layouts": {
            "names": measured.layout_names,
            "concurrency": args.layout_concurrency,
            "server_rss_mib": measured.server_rss_mib,
            "summary": layout_summary(measured.layouts, measured.layout_names),
            "phases": [phase.as_dict() | {"cpu": phase.cpu} for phase in measured.layouts],
        },
        "server_rss_mib": measured.server_rss_mib.get(measured.layout_names[0]),
        "summary": summary,
        "targets": targets_of(summary),
        "elasticsearch": measured.elasticsearch,
        "disturbed_phases": disturbed(measured.phases + measured.layouts, measured.soak)
        + elasticsearch_disturbance(measured.elasticsearch),
    }


def settings_of(args: argparse.Namespace, plan: CorpusPlan, extractor, layout: Layout) -> dict[str, Any]:
    return {
        "smoke": args.smoke,
        "docs": args.docs,
        "alias": args.alias,
        "index_type": args.index_type,
        "corpus": plan.describe(),
        "levels": args.levels,
        "id_requests_per_level": args.id_requests,
        "upload_requests_per_level": args.upload_requests,
        "page_size": args.size,
        "query_photos": f"{args.query_photos} JPEGs ~640x480 (600..680 wide, 25% portrait), quality 85-92",
        "soak_seconds": args.soak_seconds,
        "soak_concurrency": args.soak_concurrency,
        "soak_upload_share": args.soak_upload_share,
        "server": f"gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()', {layout.name} (gthread)",
        "weights": args.weights,
        "seed": args.seed,
        "model_device": extractor.device,
        "model_fingerprint": extractor.info.fingerprint,
        "model_compute": extractor.compute.as_meta(),
        "es_request": request_description(args),
    }


def cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def cores(cpu: dict[str, float]) -> str:
    used = " / ".join(
        str(cpu.get(f"{name}_cores", "-")) for name in ("own", "api", "elasticsearch", "other", "stolen")
    )
    return f"{used} / {cpu.get('other_es_ops', '-')}"


def phase_row(phase: dict[str, Any]) -> str:
    failures = f"{phase['non_2xx']} / {phase['connection_errors']}"
    return (
        f"| {phase['series']} | {phase['concurrency']} | {phase['requests']} | {cell(phase.get('p50_ms'))} | "
        f"{cell(phase.get('p95_ms'))} | {cell(phase.get('p99_ms'))} | {cell(phase.get('per_second'))} | "
        f"{failures} | {cores(phase['cpu'])} |"
    )


LATENCY_HEAD = [
    "| series | concurrency | requests | p50 ms | p95 ms | p99 ms | req/s | non-2xx / conn. errors | "
    "cores: own / API / ES / others / stolen / others' ES requests |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
]


def summary_lines(results: dict[str, Any]) -> list[str]:
    summary, targets = results["summary"], results["targets"]

    def verdict(name: str) -> str:
        met = targets[name]["met"]
        return "-" if met is None else ("met" if met else "**missed**")

    return [
        "| comparison (p50, concurrency 1) | value | target | |",
        "|---|---:|---:|---|",
        f"| upload - bare model | {cell(summary['upload_minus_model_ms'], ' ms')} | ≤ "
        f"{TARGETS['upload_minus_model_ms']:.0f} ms | {verdict('upload_minus_model_ms')} |",
        f"| upload - (decode + model) | {cell(summary['upload_minus_decode_model_ms'], ' ms')} | | |",
        f"| same two, median of per-round differences (paired) | "
        f"{cell(summary['upload_minus_model_paired_ms'], ' ms')}, "
        f"{cell(summary['upload_minus_decode_model_paired_ms'], ' ms')} | | |",
        f"| search by id | {cell(summary['id_p50_ms'], ' ms')} | < {TARGETS['id_p50_ms']:.0f} ms | "
        f"{verdict('id_p50_ms')} |",
        f"| API overhead: by id - raw kNN | {cell(summary['api_overhead_ms'], ' ms')} | < "
        f"{TARGETS['api_overhead_ms']:.0f} ms | {verdict('api_overhead_ms')} |",
        f"| HTTP/Flask part: by id - raw get+kNN | {cell(summary['api_http_overhead_ms'], ' ms')} | | |",
        f"| sustained load: non-2xx + connection errors | {cell(summary['soak_errors'])} | 0 | "
        f"{verdict('soak_errors')} |",
    ]


def soak_lines(soak: dict[str, Any] | None) -> list[str]:
    if not soak:
        return []
    lines = [
        "",
        f"Sustained load: {soak['concurrency']} clients, {soak['upload_share']:.0%} uploads, "
        f"{soak['all'].get('seconds', 0):.0f} s; statuses {soak['all']['statuses']}, "
        f"{soak['all']['reconnects']} reconnects; cores own / API / ES / others / stolen / others' ES "
        f"requests: {cores(soak['cpu'])}.",
        "",
        "| sustained | requests | p50 ms | p95 ms | p99 ms | req/s | non-2xx | 5xx | conn. errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, stats in [("all", soak["all"]), *soak["by_kind"].items()]:
        lines.append(
            f"| {name} | {stats['requests']} | {cell(stats.get('p50_ms'))} | {cell(stats.get('p95_ms'))} | "
            f"{cell(stats.get('p99_ms'))} | {cell(stats.get('per_second'))} | {stats['non_2xx']} | "
            f"{stats['5xx']} | {stats['connection_errors']} |"
        )
    return lines


def layout_lines(layouts: dict[str, Any]) -> list[str]:
    if not layouts["phases"]:
        return []
    lines = [
        "",
        f"gunicorn layouts at concurrency {layouts['concurrency']}: both servers up, measured in turn "
        f"(A B A B ..), {layouts['names'][0]} is searchapi/gunicorn.conf.py's default; each layout's best "
        "round (highest req/s, the one the shared machine slowed least):",
        "",
        "| layout | series | p50 ms | p95 ms | req/s | req/s per round | disturbed rounds | "
        "p50 / default | req/s / default |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in layouts["summary"]:
        rounds = ", ".join(f"{value:.1f}" for value in row["per_second_rounds"])
        lines.append(
            f"| {row['layout']} | {row['series']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
            f"{row['per_second']:.2f} | {rounds} | {row['disturbed_rounds']} / {row['rounds']} | "
            f"{row['p50_over_first']:.2f} | {row['per_second_over_first']:.2f} |"
        )
    rss = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in layouts.get("server_rss_mib", {}).items())
    lines += ["", f"Resident memory of the server processes after the runs: {rss}.", "", *LATENCY_HEAD]
    for phase in layouts["phases"]:
        label = phase["phase"].split("[", 1)[1].rstrip("]")
        lines.append(phase_row(phase).replace(f"| {phase['series']} |", f"| {phase['series']}, {label} |", 1))
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    machine, settings, index, loads = (
        results["machine"],
        results["settings"],
        results["index"],
        results["load_average"],
    )
    built = "reused" if index["reused"] else f"built now ({index['seconds']} s)"
    lines = [
        "# Search API latency: upload vs bare model, by id vs raw kNN, sustained load",
        "",
        f"`{results['command']}` (finished {results['finished_at']})",
        "",
        f"Machine: {machine['cpu_count']} x {machine['cpu_model']}, TensorFlow {machine['tensorflow']}, "
        f"GPUs seen: {', '.join(machine['gpus']) or 'none'}; model on {settings['model_device']}. "
        f"Load average (1/5/15 min) before {loads['before']}, after {loads['after']}.",
        "",
        f"Elasticsearch {results['elasticsearch'].get('version', '?')}. "
        f"Server: {settings['server']}, {results['server_rss_mib']} MiB resident after the runs. "
        f"Index `{index['index']}` behind `{index['alias']}`: {index['docs']} "
        f"documents, {settings['index_type']}, {index['segments']} segment(s), "
        f"{index['store_bytes'] / 2**20:.0f} MiB, {built}. Corpus: {settings['corpus']}. "
        f"Corpus sample: {index['corpus']}.",
        "",
        f"Requests: {settings['query_photos']} for uploads; random ids for by id; page size "
        f"{settings['page_size']}; the API's Elasticsearch request: `{json.dumps(settings['es_request'])}`.",
        "",
        *summary_lines(results),
        "",
        *LATENCY_HEAD,
        *(phase_row(phase) for phase in results["phases"]),
        *soak_lines(results["soak"]),
        *layout_lines(results["layouts"]),
        "",
        disturbance_note(results["disturbed_phases"]),
        "",
    ]
    return "\n".join(lines)


def disturbance_note(phases: list[str]) -> str:
    rule = (
        f"other processes used at most {DISTURBED_CORES} cores and sent Elasticsearch at most "
        f"{DISTURBED_ES_OPS} requests"
    )
    if not phases:
        return f"No phase was disturbed: {rule} per phase, and Elasticsearch was warm and not restarted."
    return (
        f"**Disturbed**: {'; '.join(phases)}. Undisturbed phases are those where {rule}; these numbers "
        "are not representative, run again on a quiet machine."
    )


def write_results(results: dict[str, Any], folder: Path, smoke: bool) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = "search-smoke" if smoke else "search"
    json_path = folder / f"{prefix}-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    markdown_path = folder / f"{prefix}-{stamp}.md"
    markdown_path.write_text(markdown)
    if not smoke:
        (folder / "search-latest.md").write_text(markdown)
    return json_path, markdown_path


# --- main -------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from imgsearch.esclient import make_client
    from imgsearch.features import FeatureExtractor

    config = elastic_config(args)
    es = make_client(config)
    plan = CorpusPlan(args.docs, args.seed, args.real_photos, config.vector_index_type)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as name:
        folder = Path(name)
        extractor = FeatureExtractor(args.weights, args.seed, args.precision, args.compile)
        extractor.warm_up()
        index = ensure_index(es, config, extractor, plan, folder / "photos", args.rebuild)
        if args.build_only:
            return {"index": index.as_dict()}
        work = prepare_workload(args, es, args.alias, folder)
        before = wait_for_load_below(IDLE_LOAD, args.wait_idle) if args.wait_idle else load_average()
        if before[0] >= IDLE_LOAD:
            print(f"warning: 1-minute load average {before[0]} at the start; numbers may be disturbed")
        measured = measure_all(args, config, extractor, work, folder, index.index)
    loads = {"before": before, "after": load_average()}
    settings = settings_of(args, plan, extractor, default_layout())
    return results_of(args, argv, index, measured, loads, settings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = resolve(build_parser().parse_args(argv))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.drop_only:
        from imgsearch.esclient import make_client

        print(f"deleted: {drop_index(make_client(elastic_config(args)), args.alias) or 'nothing'}")
        return 0
    results = run(args, argv)
    if args.build_only:
        print(json.dumps(results["index"], indent=2))
        return 0
    json_path, markdown_path = write_results(results, args.results_dir, args.smoke)
    print(render_markdown(results))
    print(f"written: {json_path} and {markdown_path}")
    if args.drop:
        from imgsearch.esclient import make_client

        print(f"deleted: {drop_index(make_client(elastic_config(args)), args.alias)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
