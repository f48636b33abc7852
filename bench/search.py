"""Search API latency in one run: upload vs the bare model, by id vs raw kNN, sustained load, layouts."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch

from bench import harness
from bench.corpus import CorpusPlan, drop_index, ensure_index, query_jpegs
from bench.harness import PhaseMeter, say
from devstack.kit import loadgen
from devstack.kit.apiserver import ApiServer, Layout, get_json, running_api
from devstack.kit.loadgen import http_worker, id_request, latency_stats, run_load, timed_call, upload_request
from devstack.kit.processes import rss_bytes
from imgsearch.esclient import connection_options, make_client
from imgsearch.imaging import decode_image
from imgsearch.indices import server_version
from searchapi import find_similar, queries

LAYOUT_ROUNDS = 3
ES_WARM_REQUESTS = 1000  # untimed get + kNN requests before anything is measured
COLD_JVM_SECONDS = 600  # an Elasticsearch started less than this before the run counts as a disturbance
PAUSE = 0.02  # between interleaved calls, so one process's idle TensorFlow threads stop spinning
# name: (comparison, limit); the value is the summary's figure of that name
TARGETS = {"upload_minus_model_ms": ("<=", 20.0), "id_p50_ms": ("<", 20.0), "api_overhead_ms": ("<", 5.0)}
TARGETS["soak_errors"] = ("<=", 0)
FIELDS = ["feature", "relation_id"]


def options() -> harness.Options:
    opts = harness.Options("search", "Search API latency: upload vs bare model, by id vs raw kNN.")
    opts.preset("--docs", int, 100_000, 2000, "documents in the bench index")
    opts.preset("--real-photos", int, 240, 24, "photos whose real VGG16 vectors seed the corpus")
    opts.preset("--id-requests", int, 200, 40, "requests per level for by id, raw get+kNN and raw kNN")
    opts.preset("--upload-requests", int, 40, 8, "uploads per level, and interleaved rounds at concurrency 1")
    opts.preset("--soak-seconds", float, 60.0, 10.0, "sustained mixed load, 0 skips it")
    opts.add("--levels", default="1,4,16", help="client concurrency levels (1 is always measured)")
    opts.add("--size", type=int, default=10, help="products per result page, ?size=")
    opts.add("--query-photos", type=int, default=12, help="distinct upload JPEGs")
    opts.add("--soak-concurrency", type=int, default=8, help="sustained load clients")
    opts.add("--soak-upload-share", type=float, default=0.2, help="uploads in the sustained load")
    opts.add("--layouts", action="store_true", help="also compare 1 worker x 8 threads with 2 workers x 4")
    opts.add("--layout-concurrency", type=int, default=4, help="client concurrency of --layouts")
    opts.add("--alias", help="bench alias (default bench-search-<docs>)")
    opts.add("--index-type", default=os.environ.get("ES_VECTOR_INDEX_TYPE", "int8_hnsw"), help="index type")
    opts.add("--rebuild", action="store_true", help="build the bench index even if a matching one exists")
    opts.add("--drop", action="store_true", help="delete the bench index after the run")
    opts.add("--drop-only", action="store_true", help="delete the bench index and exit")
    opts.add("--build-only", action="store_true", help="build the bench index (or find it reusable) and exit")
    opts.api()
    opts.model(1234, "VGG16_SEED and the corpus, photo and request seed")
    return opts


@dataclass
class Workload:
    """Everything the phases send, prepared before any clock starts."""

    jpegs: list[bytes]
    pixels: list[np.ndarray]
    ids: dict[int, list[str]]  # per concurrency level
    stored: dict[str, tuple[list[float], str]]  # id -> (vector, relation_id), for raw kNN
    soak_ids: list[str]

    @classmethod
    def prepare(cls, args, es, folder: Path) -> Workload:
        jpegs = query_jpegs(folder, args.query_photos, args.seed)
        rng = np.random.default_rng(args.seed)
        ids = {c: [str(i) for i in rng.integers(1, args.docs + 1, args.id_requests)] for c in args.levels}
        wanted, stored = sorted({i for level in ids.values() for i in level}), {}
        for start in range(0, len(wanted), 500):
            found = es.mget(index=args.alias, ids=wanted[start : start + 500], source=FIELDS)["docs"]
            stored |= {doc["_id"]: tuple(doc["_source"][field] for field in FIELDS) for doc in found}
        soak_ids = [str(i) for i in rng.integers(1, args.docs + 1, 5000)]
        return cls(jpegs, [decode_image(data) for data in jpegs], ids, stored, soak_ids)


class Run:
    """One run's clients and meters: the API servers, Elasticsearch, the workload."""

    def __init__(self, args, es, index: str, extractor, work: Workload) -> None:
        self.args, self.es, self.index, self.extractor, self.work = args, es, index, extractor, work
        self.es_pids, self.servers = harness.elasticsearch_pids(es), []

    def meter(self) -> PhaseMeter:
        api = [pid for server in self.servers for pid in server.pids()]
        return PhaseMeter(self.es, self.index, {"api": api, "elasticsearch": self.es_pids})

    def raw_worker(self, series: str):
        """Per-thread callers of the API's Elasticsearch work for a search by id, in this process:
        `raw get+kNN` fetches the stored vector first, `raw kNN` has it already."""
        es, alias, size, stored = self.es, self.args.alias, self.args.size, self.work.stored

        def search(image_id: str) -> int:
            if series == "raw get+kNN":
                found = es.get(index=alias, id=image_id, source=FIELDS)["_source"]
                vector, relation = found["feature"], found["relation_id"]
            else:
                vector, relation = stored[image_id]
            return len(find_similar(es, alias, vector, size=size, exclude_relation_id=relation).hits)

        return lambda: lambda image_id: timed_call(series, lambda: search(image_id))

    def phase(self, series: str, concurrency: int, server: ApiServer | None = None, label: str = "") -> dict:
        """One closed-loop load over a fixed list of jobs, each client warmed first: uploads
        (--upload-requests, at least one per client), searches by id or raw (--id-requests)."""
        args, work = self.args, self.work
        ids = work.ids.get(concurrency, work.soak_ids)[: args.id_requests]
        if series == "upload":
            count, warm = (
                max(args.upload_requests, concurrency),
                upload_request(work.jpegs[-1], args.size),
            )
            jobs = [upload_request(work.jpegs[n % len(work.jpegs)], args.size) for n in range(count)]
        elif series == "by id":
            jobs, warm = (
                [id_request(i, args.size) for i in ids],
                id_request(work.soak_ids[0], args.size),
            )
        else:
            jobs, warm = ids, ids[0]
        worker = http_worker(server.host, server.port) if server else self.raw_worker(series)
        with self.meter() as cpu:
            result = run_load(worker, jobs, concurrency, warm)
        stats = latency_stats(result.outcomes, result.wall, args.size)
        name = f"{series} c={concurrency}{label}"
        say(f"  {name}: p50 {stats.get('p50_ms', '-')} ms, {stats.get('per_second')} /s")
        phase = {"phase": name, "series": series, "concurrency": concurrency}
        phase |= {"layout": server.layout.name} if label else {}
        return phase | stats | {"reconnects": result.reconnects, "cpu": cpu.as_dict()}

    def interleaved(self, server: ApiServer) -> list[dict]:
        """Concurrency 1: model, decode+model and upload call by call, in rotating order, so the shared
        machine's slow minutes hit all three alike; the upload row adds the paired differences."""
        args, work, extract = self.args, self.work, self.extractor.extract_one
        send = loadgen.KeepAliveClient(server.host, server.port)
        calls = {"model": lambda n: timed_call("model", lambda: extract(work.pixels[n]).size)}
        decoded = lambda n: extract(decode_image(work.jpegs[n])).size  # noqa: E731
        calls["decode+model"] = lambda n: timed_call("decode+model", lambda: decoded(n))
        calls["upload"] = lambda n: send(upload_request(work.jpegs[n], args.size))
        outcomes: dict[str, list[loadgen.Outcome]] = {kind: [] for kind in calls}
        send(upload_request(work.jpegs[0], args.size))  # warm the connection
        with self.meter() as cpu:
            for number in range(args.upload_requests):
                for kind in [*calls][number % 3 :] + [*calls][: number % 3]:
                    outcomes[kind].append(calls[kind](number % len(work.jpegs)))
                    time.sleep(PAUSE)
        phases = [
            {"phase": f"{kind} c=1 (interleaved)", "series": kind, "concurrency": 1}
            | latency_stats(results, None, args.size if kind == "upload" else 0)
            for kind, results in outcomes.items()
        ]
        phases[-1]["paired_minus_model_ms"] = paired(outcomes["upload"], outcomes["model"])
        phases[-1]["paired_minus_decode_model_ms"] = paired(outcomes["upload"], outcomes["decode+model"])
        return [phase | {"cpu": cpu.as_dict()} for phase in phases]

    def sustained(self, server: ApiServer) -> dict[str, Any]:
        """Mixed by-id and upload load for a fixed time; every answer counted."""
        args, work = self.args, self.work
        shares = np.random.default_rng(args.seed + 3).random(1_000_000)

        def job(n: int):
            if shares[n % len(shares)] < args.soak_upload_share:
                return upload_request(work.jpegs[n % len(work.jpegs)], args.size)
            return id_request(work.soak_ids[n % len(work.soak_ids)], args.size)

        say(f"  soak: {args.soak_concurrency} clients for {args.soak_seconds:.0f} s ...")
        with self.meter() as cpu:
            worker, warm = (
                http_worker(server.host, server.port),
                id_request(work.soak_ids[0], args.size),
            )
            result = run_load(worker, job, args.soak_concurrency, warm, args.soak_seconds)
        outcomes, wall = result.outcomes, result.wall
        by_kind = {
            k: latency_stats([o for o in outcomes if o.kind == k], wall, args.size) for k in loadgen.KINDS
        }
        total = latency_stats(outcomes, wall, args.size) | {"reconnects": result.reconnects}
        mix = {"concurrency": args.soak_concurrency, "upload_share": args.soak_upload_share}
        return mix | {"all": total, "by_kind": by_kind, "cpu": cpu.as_dict()}


def paired(first: list[loadgen.Outcome], second: list[loadgen.Outcome]) -> float | None:
    """Median over rounds of first - second (ms): each pair ran within a second of each other."""
    pairs = zip(first, second, strict=True)
    differences = [(a.seconds - b.seconds) * 1000 for a, b in pairs if a.ok and b.ok]
    return round(float(np.median(differences)), 2) if differences else None


def layout_summary(phases: list[dict], names: list[str]) -> list[dict[str, Any]]:
    """Per layout and series its best round (highest requests/s: the one the shared machine slowed
    least), with the ratios to the first layout's best round (the documented one)."""
    rows = []
    for series, name in product(("upload", "by id"), names):
        mine = [p for p in phases if p.get("layout") == name and p["series"] == series and "p50_ms" in p]
        if mine:
            best = max(mine, key=lambda phase: phase["per_second"])
            row = {"layout": name, "series": series, "rounds": len(mine), "best_round": best["phase"]}
            row |= {key: best[key] for key in ("p50_ms", "p95_ms", "per_second")}
            row["per_second_rounds"] = [p["per_second"] for p in mine]
            rows.append(row | {"disturbed_rounds": sum(harness.is_disturbed(p["cpu"]) for p in mine)})
    for row in rows:
        base = next(r for r in rows if r["series"] == row["series"])
        row["p50_over_first"] = round(row["p50_ms"] / base["p50_ms"], 3)
        row["per_second_over_first"] = round(row["per_second"] / base["per_second"], 3)
    return rows


def measure(run: Run, env: dict[str, str], folder: Path) -> dict[str, Any]:
    """The API in the documented layout: concurrency 1 interleaved, every level, the sustained load;
    with --layouts the other layout next to it (idle servers cost no CPU), measured A B A B."""
    args, main, work = run.args, Layout.default(), run.work
    layouts, names, rss = [], [main.name], {}
    with running_api(env, folder, main, args.api_start_timeout) as server:
        run.servers = [server]
        # the API must compute in this process's precision and compile mode, or the model series
        # compare apples with pears
        theirs, ours = get_json(server.url + "/ready")[1].get("compute", {}), run.extractor.compute.as_meta()
        if (theirs.get("precision"), theirs.get("compile")) != (ours["precision"], ours["compile"]):
            raise RuntimeError(f"the API computes {theirs}, this process {ours}")
        loadgen.warm_api(server, work.jpegs[0], work.soak_ids[0], args.size)
        say("measuring concurrency 1 (model / decode+model / upload interleaved) ...")
        phases = run.interleaved(server)
        for level in args.levels:
            say(f"measuring concurrency {level} ...")
            phases += [run.phase("upload", level, server)] if level > 1 else []
            phases += [run.phase("by id", level, server), run.phase("raw get+kNN", level)]
            phases += [run.phase("raw kNN", level)]
        soak = run.sustained(server) if args.soak_seconds > 0 else None
        if args.layouts:
            other = Layout(2, 4) if main != Layout(2, 4) else Layout(1, 8)
            names.append(other.name)
            with running_api(env, folder, other, args.api_start_timeout) as second:
                run.servers = [server, second]
                loadgen.warm_api(second, work.jpegs[0], work.soak_ids[0], args.size)
                rounds = product(range(1, LAYOUT_ROUNDS + 1), ("upload", "by id"), (server, second))
                for number, series, each in rounds:
                    label = f" [{each.layout.name}, round {number}]"
                    layouts.append(run.phase(series, args.layout_concurrency, each, label))
                rss[other.name] = round(sum(map(rss_bytes, second.pids())) / 2**20, 1)
        rss[main.name] = round(sum(map(rss_bytes, server.pids())) / 2**20, 1)
    layout = {"names": names, "concurrency": args.layout_concurrency, "server_rss_mib": rss}
    layout |= {"summary": layout_summary(layouts, names), "phases": layouts}
    return {"phases": phases, "soak": soak, "layouts": layout, "server_rss_mib": rss[main.name]}


def summary_of(measured: dict[str, Any]) -> dict[str, Any]:
    """Each series' p50 at concurrency 1 and their differences: what the API adds to the model, to
    Elasticsearch."""
    one = [p for p in measured["phases"] if p["concurrency"] == 1 and "p50_ms" in p]
    p50 = {p["series"]: p["p50_ms"] for p in reversed(one)}  # the first phase of a series wins
    minus = lambda a, b: round(p50[a] - p50[b], 2) if a in p50 and b in p50 else None  # noqa: E731
    upload = next(p for p in measured["phases"] if p["series"] == "upload")
    soak = measured["soak"]["all"] if measured["soak"] else None
    names = {"model": "model", "decode_model": "decode+model", "upload": "upload"}
    summary = {f"{name}_p50_ms": p50.get(series) for name, series in names.items()}
    summary["upload_minus_model_ms"] = minus("upload", "model")
    summary["upload_minus_decode_model_ms"] = minus("upload", "decode+model")
    summary["upload_minus_model_paired_ms"] = upload.get("paired_minus_model_ms")
    summary["upload_minus_decode_model_paired_ms"] = upload.get("paired_minus_decode_model_ms")
    summary |= {"id_p50_ms": p50.get("by id"), "raw_knn_p50_ms": p50.get("raw kNN")}
    summary["raw_get_knn_p50_ms"] = p50.get("raw get+kNN")
    summary["api_overhead_ms"] = minus("by id", "raw kNN")
    summary["api_http_overhead_ms"] = minus("by id", "raw get+kNN")
    summary["soak_errors"] = soak["non_2xx"] + soak["connection_errors"] if soak else None
    return summary


def targets_of(summary: dict[str, Any]) -> dict[str, Any]:
    checks = {"<": lambda value, limit: value < limit, "<=": lambda value, limit: value <= limit}
    return {
        name: {"target": limit, "value": summary[name]}
        | {"met": None if summary[name] is None else checks[op](summary[name], limit)}
        for name, (op, limit) in TARGETS.items()
    }


def jvm_started_at(es) -> float | None:
    """When the Elasticsearch JVM started (epoch seconds): a change means it was restarted."""
    info = es.nodes.info(node_id="_local", metric="jvm", filter_path="nodes.*.jvm.start_time_in_millis").body
    millis = next(iter(info.get("nodes", {}).values()), {}).get("jvm", {}).get("start_time_in_millis")
    return int(millis) / 1000 if millis else None


def disturbed(measured: dict[str, Any], elastic: dict[str, Any]) -> list[str]:
    """Disturbed phases, and the whole run when Elasticsearch was restarted during it or was a cold JVM."""
    phases = measured["phases"] + measured["layouts"]["phases"]
    flagged = [phase["phase"] for phase in phases if harness.is_disturbed(phase["cpu"])]
    flagged += ["soak"] if measured["soak"] and harness.is_disturbed(measured["soak"]["cpu"]) else []
    uptime = elastic["uptime_at_start_s"]
    if elastic["restarted_during_run"]:
        flagged.append("the whole run (Elasticsearch was restarted during it)")
    elif uptime is not None and uptime < COLD_JVM_SECONDS:
        flagged.append(f"the whole run (Elasticsearch had been up only {uptime} s at the start: a cold JVM)")
    return flagged


def settings_of(args, plan: CorpusPlan, extractor) -> dict[str, Any]:
    k = queries.initial_k(args.size, 0)
    request = queries.similarity_search([0.0], size=args.size, from_=0, k=k, exclude_relation_id="<own>")
    request["knn"].pop("query_vector")
    names = "smoke docs alias index_type levels id_requests:id_requests_per_level upload_requests:"
    names += "upload_requests_per_level size:page_size soak_seconds soak_concurrency soak_upload_share"
    settings = harness.pick(args, names + " weights seed") | {"corpus": plan.describe()}
    settings |= {"server": f"{loadgen.SERVER}, {Layout.default().name} (gthread)", "es_request": request}
    settings["query_photos"] = f"{args.query_photos} JPEGs ~640x480 (600..680 wide, 25% portrait), q 85-92"
    model = {"model_device": extractor.device, "model_fingerprint": extractor.info.fingerprint}
    return settings | model | {"model_compute": extractor.compute.as_meta()}


def run(args) -> dict[str, Any] | None:
    """Build or reuse the index, prepare the workload, warm Elasticsearch, measure; results or None."""
    from imgsearch.features import FeatureExtractor

    config = harness.elastic_config(args.alias, args.index_type)
    es = make_client(config)
    plan = CorpusPlan(args.docs, args.seed, args.real_photos, config.vector_index_type)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as name:
        folder = Path(name)
        extractor = FeatureExtractor(args.weights, args.seed, args.precision, args.compile)
        extractor.warm_up()
        index = ensure_index(es, config, extractor, plan, folder / "photos", args.rebuild)
        if args.build_only:
            print(index)
            return None
        work = Workload.prepare(args, es, folder / "queries")
        before = harness.load_before(args.wait_idle)
        # a client like the API's (one retry), its pool large enough for the highest concurrency
        options = {"request_timeout": 30, "max_retries": 1, "retry_on_timeout": True}
        options |= connection_options(config)
        raw = Elasticsearch(config.url, connections_per_node=max(args.levels) + 4, **options)
        bench, started_at = Run(args, raw, index["index"], extractor, work), jvm_started_at(raw)
        warm = min(ES_WARM_REQUESTS, 5 * args.id_requests)  # untimed: a fresh JVM compiles its hot paths
        run_load(bench.raw_worker("raw get+kNN"), work.soak_ids[:warm], 2)
        env = {**os.environ, "ES_URL": config.url, "ES_INDEX": args.alias, "VGG16_SEED": str(args.seed)}
        env |= {f"VGG16_{name.upper()}": getattr(args, name) for name in ("weights", "precision", "compile")}
        measured = measure(bench, env, folder)
    elastic = {"version": server_version(raw)}
    elastic["uptime_at_start_s"] = round(time.time() - started_at) if started_at else None
    elastic |= {"restarted_during_run": jvm_started_at(raw) != started_at, "warm_up_requests": warm}
    summary = summary_of(measured)
    results = harness.envelope(args, before) | {"settings": settings_of(args, plan, extractor)}
    results["index"] = index
    results |= measured | {"summary": summary, "targets": targets_of(summary), "elasticsearch": elastic}
    return results | {"disturbed_phases": disturbed(measured, elastic)}


def context(results: dict[str, Any]) -> list[str]:
    settings, index = results["settings"], results["index"]
    built = "reused" if index["reused"] else f"built now ({index['seconds']} s)"
    return [
        f"Elasticsearch {results['elasticsearch']['version']}; model on {settings['model_device']}. Server: "
        f"{settings['server']}, {results['server_rss_mib']} MiB resident after the runs. Index "
        f"`{index['index']}` behind `{index['alias']}`: {index['docs']} documents, {settings['index_type']}, "
        f"{index['segments']} segment(s), {index['store_bytes'] / 2**20:.0f} MiB, {built}. Corpus: "
        f"{settings['corpus']}. Sample: {index['corpus']}.",
        f"Requests: {settings['query_photos']} for uploads, random ids for by id, page size "
        f"{settings['page_size']}; the API's Elasticsearch request: `{settings['es_request']}`.",
    ]


TABLES = ["targets", "summary", "phases"]
TABLES += [("sustained load", lambda r: r["soak"] and {"all": r["soak"]["all"]} | r["soak"]["by_kind"])]
TABLES += [("gunicorn layouts, best round each", lambda r: r["layouts"]["summary"])]
TABLES += [("layout rounds", lambda r: r["layouts"]["phases"])]
TITLE = "Search API latency: upload vs bare model, by id vs raw kNN, sustained load"
REPORT = harness.Report(TITLE, TABLES, context)


def main(argv: list[str] | None = None) -> int:
    args = options().parse(argv)
    args.levels = sorted({1, *(int(level) for level in str(args.levels).split(",") if level.strip())})
    args.alias = args.alias or f"bench-search-{args.docs}"
    if not args.drop_only and (results := run(args)):
        harness.write_results(results, REPORT, args)
    if args.drop_only or args.drop:
        es = make_client(harness.elastic_config(args.alias, args.index_type))
        say(f"deleted: {drop_index(es, args.alias) or 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
