"""Sustained API load while `indexer full` rebuilds and swaps the alias: errors, latency round swaps."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness
from bench.corpus import query_jpegs, write_photos
from bench.harness import CpuMeter, elasticsearch_pids, say
from devstack.kit import loadgen
from devstack.kit.apiserver import REPO, Layout, running_api
from devstack.kit.loadgen import KINDS, LoadRunner, latency_stats
from devstack.kit.loadgen import Outcome as Sample
from imgsearch.config import load_elastic_config
from imgsearch.esclient import make_client
from imgsearch.indices import version_pattern

MODEL_SEED = "1234"  # VGG16_SEED of the indexer runs and the API alike
# the `indexer full` runs: kind -> (name, extra arguments)
REBUILDS = {"reuse": ("full (reuse)", []), "recompute": ("full --recompute", ["--recompute"])}
REBUILDS["initial"] = ("initial full", [])
ERROR_EXAMPLES = 5
REPORT_KEYS = "run_id index outcome message elapsed_seconds rows_seen statuses errors previous_indices "
REPORT_KEYS += "deleted_indices stage_seconds"


def options() -> harness.Options:
    opts = harness.Options("soak", "Sustained API load while `indexer full` rebuilds and swaps the alias.")
    opts.preset("--seconds", float, 120.0, 30.0, "load duration (longer if the rebuilds are)")
    opts.preset("--images", int, 30, 18, "catalog rows / photos, 3 per product")
    opts.preset("--baseline-seconds", float, 20.0, 5.0, "load before the first rebuild starts")
    opts.preset("--max-requests", int, 100_000, 20_000, "stop the load after this many requests")
    opts.add("--concurrency", type=int, default=8, help="closed-loop clients")
    opts.add("--upload-share", type=float, default=0.25, help="clients that upload, the others search by id")
    opts.add("--tail-seconds", type=float, default=5.0, help="load kept after the last rebuild")
    opts.add("--swap-window", type=float, default=2.0, help="half width of the window round a swap, seconds")
    rebuilds = {"nargs": "+", "choices": ["recompute", "reuse"], "default": ["reuse", "recompute"]}
    opts.add("--rebuilds", **rebuilds, help="`indexer full` runs during the load, in order")
    opts.add("--keep-versions", type=int, default=1, help="INDEXER_KEEP_VERSIONS of the runs")
    opts.add("--poll-interval", type=float, default=0.1, help="seconds between alias polls")
    opts.add("--size", type=int, default=5, help="results per search")
    opts.add("--query-photos", type=int, default=12, help="distinct upload JPEGs")
    opts.add("--weights", default=os.environ.get("VGG16_WEIGHTS") or "random", help="VGG16_WEIGHTS")
    opts.add("--seed", type=int, default=0, help="seed of the photos and the request mix")
    opts.add("--rebuild-timeout", type=float, default=900.0, help="seconds before a rebuild is stopped")
    opts.api()
    return opts


class AliasWatcher(threading.Thread):
    """Polls `<alias>-*/_alias` every `interval` s and records every change (AliasEvent)."""

    def __init__(self, es, alias: str, interval: float) -> None:
        super().__init__(name="soak-alias", daemon=True)
        self.es, self.alias, self.interval, self.pattern = es, alias, interval, version_pattern(alias)
        self.events: list[AliasEvent] = []
        self.polls, self.poll_errors, self.halt = 0, [], threading.Event()
        self.state = self.poll()

    def poll(self) -> dict[str, bool]:
        found = self.es.indices.get_alias(index=f"{self.alias}-*").body
        live = {name: self.alias in body.get("aliases", {}) for name, body in found.items()}
        return {name: pointed for name, pointed in live.items() if self.pattern.match(name)}

    def run(self) -> None:
        since = time.perf_counter()
        while not self.halt.wait(self.interval):
            try:
                state = self.poll()
            except Exception as exc:  # noqa: BLE001 - a failed poll is recorded, the next one retried
                self.poll_errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            seen, self.polls = time.perf_counter(), self.polls + 1
            self.events += alias_events(self.state, state, since, seen)
            self.state, since = state, seen

    def __enter__(self) -> AliasWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(timeout=10)


def run_indexer(kind: str, env: dict[str, str], folder: Path, rows: int, timeout: float, groups) -> dict:
    """`python -m indexer full --no-progress [...]` as a subprocess, its log in a file, CPU meanwhile (the
    indexer, a reaped child, counted apart from the others); what it reported and what was wrong."""
    (name, extra), slug = REBUILDS[kind], f"{kind}-{uuid.uuid4().hex[:6]}"
    reports, log_path = folder / "reports" / slug, folder / f"indexer-{slug}.log"
    command = [sys.executable, "-m", "indexer", "full", "--no-progress", *extra]
    say(f"  {time.strftime('%H:%M:%S')} {name}: starting")
    with open(log_path, "wb") as log, CpuMeter(groups, "indexer") as meter:
        start, env = time.perf_counter(), {**env, "INDEXER_REPORT_DIR": str(reports)}
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            process.terminate()  # the indexer stops cleanly and releases its lock; SIGKILL after 30 s
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        end = time.perf_counter()
    found = sorted(reports.glob("report-*.json"))
    report = json.loads(found[-1].read_text()) if found else None
    problems = run_problems(code, report, "reused" if kind == "reuse" else "indexed", rows)
    problems += [] if code is not None else [f"timed out after {timeout} s"]
    say(f"  {time.strftime('%H:%M:%S')} {name}: exit {code} in {end - start:.1f} s {problems or ''}")
    times = {"start_s": start, "end_s": end, "wall_s": round(end - start, 3), "exit_code": code}
    run = {"name": name, "command": shlex.join(command), **times, "ok": not problems, "problems": problems}
    run["report"] = {key: (report or {}).get(key) for key in REPORT_KEYS.split()}
    run["cpu"] = meter.as_dict()
    return run | {"log_tail": "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])}


def client_split(concurrency: int, upload_share: float) -> tuple[int, int]:
    """(by-id clients, upload clients): round(concurrency x share) upload, at least one when the share
    is above 0 and at least one client left for by id when it is below 1."""
    uploads = max(round(concurrency * upload_share), 1 if upload_share > 0 else 0)
    uploads = min(uploads, concurrency - 1) if upload_share < 1 else uploads
    return concurrency - uploads, uploads


@dataclass(frozen=True)
class AliasEvent:
    """A change seen between two polls: `since` the last poll before it, `seen` the first poll after."""

    kind: str  # created | swap | deleted
    index: str  # the index created, deleted, or the alias's new target
    since: float
    seen: float
    previous: str = ""  # swap: the alias's old target

    @property
    def at(self) -> float:
        return (self.since + self.seen) / 2

    def shifted(self, zero: float) -> AliasEvent:
        return replace(self, since=self.since - zero, seen=self.seen - zero)


def alias_events(before: dict[str, bool], after: dict[str, bool], since: float, seen: float) -> list:
    """What changed between two polls of {version index: whether the alias points at it}."""
    events = [AliasEvent("created", name, since, seen) for name in sorted(after.keys() - before.keys())]
    old = ",".join(sorted(name for name, live in before.items() if live))
    new = ",".join(sorted(name for name, live in after.items() if live))
    events += [AliasEvent("swap", new, since, seen, old)] if old != new else []
    return events + [AliasEvent("deleted", name, since, seen) for name in sorted(before.keys() - after)]


def run_problems(code: int | None, report: dict[str, Any] | None, status: str, rows: int) -> list[str]:
    """Why a run does not count as a success (empty when it does)."""
    problems = [] if code == 0 else [f"exit code {code}"]
    if report is None:
        return [*problems, "no run report written"]
    if report.get("outcome") != "succeeded":
        problems.append(f"outcome {report.get('outcome')}: {report.get('message')}")
    statuses = report.get("statuses") or {}
    if statuses.get(status, 0) != rows or sum(statuses.values()) != rows:
        problems.append(f"expected {rows} rows {status}, got {statuses}")
    return problems


def watch_problems(report: dict[str, Any] | None, events: list[AliasEvent]) -> list[str]:
    """What the run report claims about the alias that the watcher did not see: the swap to its index,
    the deletion of the versions it says it deleted."""
    if not report or report.get("outcome") != "succeeded":
        return []
    swapped_to = {event.index for event in events if event.kind == "swap"}
    deleted = {event.index for event in events if event.kind == "deleted"}
    problems = [] if report.get("index") in swapped_to else [f"swap to {report.get('index')} not seen"]
    missing = sorted(set(report.get("deleted_indices") or []) - deleted)
    return problems + ([f"deletion of {', '.join(missing)} not seen"] if missing else [])


def in_window(samples: list[Sample], lo: float, hi: float, overlap: bool = False) -> list[Sample]:
    """Requests that started in [lo, hi), or with `overlap` those in flight at any moment of it."""
    return [s for s in samples if (s.start < hi and s.end > lo if overlap else lo <= s.start < hi)]


def window_stats(samples: list[Sample], lo: float, hi: float, page_size: int, overlap: bool = False) -> dict:
    """Requests, errors, requests/s and latency percentiles in one window, in all and per kind."""
    chosen, span = in_window(samples, lo, hi, overlap), max(hi - lo, 0.0)
    stats = {"from_s": round(lo, 3), "to_s": round(hi, 3), "span_s": round(span, 3)}
    stats["selection"] = "in flight" if overlap else "started"
    stats["errors"] = sum(1 for s in chosen if s.failed)
    kinds = {"all": chosen} | {kind: [s for s in chosen if s.kind == kind] for kind in KINDS}
    return stats | {kind: latency_stats(some, span or None, page_size) for kind, some in kinds.items()}


def phase_windows(load_end: float, runs: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """(name, from, to) relative to the load start: before, during the rebuilds (all, each), after, all;
    `runs` are (name, start, end) of the rebuilds in order; windows are clipped to [0, load_end]."""

    def clip(name: str, lo: float, hi: float) -> tuple[str, float, float]:
        lo = min(max(lo, 0.0), load_end)
        return name, lo, min(max(hi, lo), load_end)

    if not runs:
        return [clip("whole run", 0.0, load_end)]
    first, last = runs[0][1], runs[-1][2]
    windows = [clip("before rebuilds", 0.0, first), clip("during rebuilds", first, last)]
    windows += [clip(f"during {name}", start, end) for name, start, end in runs] if len(runs) > 1 else []
    return [*windows, clip("after rebuilds", last, load_end), clip("whole run", 0.0, load_end)]


def swap_windows(swaps: list[float], half: float) -> list[tuple[str, float, float]]:
    return [(f"swap {n} ±{half:g} s", at - half, at + half) for n, at in enumerate(swaps, start=1)]


def nearest_swap(at: float, swaps: list[float]) -> float | None:
    """Seconds from the closest swap to `at` (negative: before it), None without swaps."""
    return min((at - swap for swap in swaps), key=abs, default=None)


def error_examples(samples: list[Sample], swaps: list[float], limit: int = ERROR_EXAMPLES) -> list[dict]:
    """The first `limit` failed requests, with the time to the nearest swap."""
    examples = []
    for sample in sorted((s for s in samples if s.failed), key=lambda s: s.start)[:limit]:
        offset = nearest_swap(sample.start, swaps)
        example = {"start_s": round(sample.start, 3), "seconds": round(sample.seconds, 3)}
        example |= {"kind": sample.kind, "status": sample.status, "error": sample.error or sample.detail}
        examples.append(example | {"from_nearest_swap_s": None if offset is None else round(offset, 3)})
    return examples


def timeline(samples: list[Sample], end: float) -> list[dict[str, Any]]:
    """Per second of the load (by start time): requests, errors, p50 and max ms per kind."""
    seconds = max(int(np.ceil(end)), 1)
    buckets: list[list[Sample]] = [[] for _ in range(seconds)]
    for sample in samples:
        buckets[min(max(int(sample.start), 0), seconds - 1)].append(sample)
    rows = []
    for second, bucket in enumerate(buckets):
        rows.append({"second": second, "errors": sum(1 for s in bucket if s.failed)})
        for kind in KINDS:
            good = [s.seconds * 1000 for s in bucket if s.kind == kind and not s.failed]
            rows[-1][kind] = {"requests": sum(1 for s in bucket if s.kind == kind)}
            rows[-1][kind]["p50_ms"] = round(float(np.median(good)), 1) if good else None
            rows[-1][kind]["max_ms"] = round(max(good), 1) if good else None
    return rows


def swaps_under_load(swaps: list[float], load_end: float) -> int:
    return sum(1 for at in swaps if 0.0 <= at <= load_end)


def verdict(errors: int, runs_ok: list[bool], swaps_loaded: int, rebuilds: int) -> list[str]:
    """Why the run failed (empty: exit 0)."""
    failed = sum(1 for ok in runs_ok if not ok)
    reasons = [f"{errors} requests failed"] if errors else []
    reasons += [f"{failed} indexer run(s) failed"] if failed else []
    swaps = f"{swaps_loaded} alias swap(s) under load, expected {rebuilds}"
    return reasons + ([swaps] if swaps_loaded < rebuilds else [])


@dataclass
class Collected:
    """Raw material of the results, in perf_counter time."""

    alias: str = ""
    table: str = ""
    load: LoadRunner | None = None
    initial: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    watcher: AliasWatcher | None = None
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    cleanup: dict[str, Any] = field(default_factory=dict)
    extended_s: float = 0.0


def drive(args, env, load: LoadRunner, groups: dict[str, list[int]], folder: Path, got: Collected) -> None:
    """Baseline load, the rebuilds one after the other, then the tail."""
    if not load.started.wait(timeout=120):
        raise RuntimeError(f"the load did not start: {load.error}")
    deadline = load.started_at + args.seconds
    with CpuMeter(groups, "indexer") as meter:
        load.join(max(load.started_at + args.baseline_seconds - time.perf_counter(), 0.0))
    got.cpu["before rebuilds"] = meter.as_dict()
    for kind in args.rebuilds:
        got.runs.append(run_indexer(kind, env, folder, args.images, args.rebuild_timeout, groups))
        got.cpu[f"during {got.runs[-1]['name']}"] = got.runs[-1]["cpu"]
    stop_at = max(deadline, time.perf_counter() + args.tail_seconds)
    got.extended_s = max(stop_at - deadline, 0.0)
    with CpuMeter(groups, "indexer") as meter:
        load.join(max(stop_at - time.perf_counter(), 0.0))
    got.cpu["after rebuilds"] = meter.as_dict()


def measure(args, folder: Path, got: Collected) -> None:
    """Photos served over HTTP, the throwaway table, the initial `full` run; the API, watcher and load
    started, the rebuilds driven; everything stopped and removed afterwards."""
    say(f"writing {args.images} catalog photos and {args.query_photos} query photos ...")
    photos = write_photos(where := folder / "photos", args.images, args.seed)
    jpegs = query_jpegs(folder / "queries", args.query_photos, args.seed)
    extra = {"VGG16_SEED": MODEL_SEED, "INDEXER_KEEP_VERSIONS": str(args.keep_versions)}
    extra |= {"INDEXER_CHECKPOINT_SECONDS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with ExitStack() as stack:
        catalog = harness.throwaway_catalog(where, "bench-soak", args.weights, photos, got.cleanup, **extra)
        env, _ = stack.enter_context(catalog)
        got.alias, got.table = env["ES_INDEX"], env["MYSQL_TABLE"]
        got.initial = initial = run_indexer("initial", env, folder, args.images, args.rebuild_timeout, {})
        if not initial["ok"]:
            failed = f"{initial['problems']}\n{initial['log_tail']}"
            raise RuntimeError(f"the initial `indexer full` failed: {failed}")
        api_env = {key: env[key] for key in env if not key.startswith(("INDEXER_", "MYSQL_", "IMAGE_"))}
        say("starting the API (gunicorn) ...")
        api = stack.enter_context(running_api(api_env, folder, Layout.default(), args.api_start_timeout))
        loadgen.warm_api(api, jpegs[0], "1", args.size)
        es = make_client(load_elastic_config(env), max_retries=1)
        groups = {"api": api.pids(), "elasticsearch": elasticsearch_pids(es)}
        got.watcher = stack.enter_context(AliasWatcher(es, got.alias, args.poll_interval))
        say(f"load: {args.concurrency} clients, {args.seconds:.0f} s ...")
        ids = [str(i) for i in np.random.default_rng(args.seed + 3).integers(1, args.images + 1, 100_000)]
        by_id, uploads = client_split(args.concurrency, args.upload_share)
        clients = [lambda n: loadgen.id_request(ids[n % len(ids)], args.size)] * by_id
        clients += [lambda n: loadgen.upload_request(jpegs[n % len(jpegs)], args.size)] * uploads
        got.load = load = LoadRunner(api.port, clients, args.max_requests)
        load.start()
        try:
            drive(args, env, load, groups, folder, got)
        finally:
            load.halt()
            got.watcher.__exit__()
        if load.error:
            raise RuntimeError(f"the load generator failed: {load.error!r}")


def swap_rows(events: list[AliasEvent], runs: list[dict[str, Any]], windows: list[dict]) -> list[dict]:
    """Each swap: when, from and to, how precisely seen, the old index's deletion, its run, its window."""
    deletions, rows = {e.index: e for e in events if e.kind == "deleted"}, []
    for number, swap in enumerate((e for e in events if e.kind == "swap"), start=1):
        deleted = deletions.get(swap.previous)
        run = next((r["name"] for r in runs if r["start_s"] <= swap.at <= r["end_s"] + 1), None)
        row = {"swap": number, "at_s": round(swap.at, 3)}
        row["seen_within_ms"] = round((swap.seen - swap.since) * 500, 1)
        row |= {"from": swap.previous, "to": swap.index, "run": run}
        row["old_index_deleted_at_s"] = round(deleted.at, 3) if deleted else None
        row["deleted_after_swap_ms"] = round((deleted.at - swap.at) * 1000, 1) if deleted else None
        rows.append(row | {"window": windows[number - 1] if number <= len(windows) else {}})
    return rows


def shifted(run: dict[str, Any], zero: float, events: list[AliasEvent]) -> dict[str, Any]:
    """A run with times from the load start, and what the watcher did not see of its report's claims."""
    problems = run["problems"] + watch_problems(run["report"], events)
    times = {"start_s": round(run["start_s"] - zero, 3), "end_s": round(run["end_s"] - zero, 3)}
    return run | times | {"ok": not problems, "problems": problems}


def analyse(args, got: Collected) -> dict[str, Any]:
    """Windows before, during and after the rebuilds and round each swap; the verdict; everything else."""
    load, watcher = got.load, got.watcher
    zero, load_end = load.started_at, (load.closed_at or load.ended_at) - load.started_at
    samples = sorted((replace(s, start=s.start - zero) for s in load.result.outcomes), key=lambda s: s.start)
    events = [event.shifted(zero) for event in watcher.events]
    runs = [shifted(run, zero, watcher.events) for run in got.runs]
    swaps = [e.at for e in events if e.kind == "swap"]
    spans = phase_windows(load_end, [(run["name"], run["start_s"], run["end_s"]) for run in runs])
    windows = {name: window_stats(samples, lo, hi, args.size) for name, lo, hi in spans}
    spans = swap_windows(swaps, args.swap_window)
    around = {name: window_stats(samples, lo, hi, args.size, True) for name, lo, hi in spans}
    total, loaded = windows["whole run"]["all"], swaps_under_load(swaps, load_end)
    errors = sum(1 for s in samples if s.failed)
    reasons = verdict(errors, [run["ok"] for run in runs], loaded, len(args.rebuilds))
    summary = {"requests": len(samples), "errors": errors}
    summary |= {key: total[key] for key in ("non_2xx", "connection_errors", "statuses")}
    summary |= {"reconnects": load.result.reconnects, "short_pages": total["short_pages"]}
    summary["per_second"] = round(len(samples) / load_end, 2) if load_end > 0 else None
    summary |= {"load_seconds": round(load_end, 3), "load_extended_s": round(got.extended_s, 3)}
    summary |= {"max_requests_reached": len(samples) >= args.max_requests, "swaps": len(swaps)}
    summary["swaps_under_load"] = loaded
    summary["indexer_runs_ok"] = all(run["ok"] for run in runs) and len(runs) == len(args.rebuilds)
    changes = [
        {"event": e.kind, "index": e.index, "at_s": round(e.at, 3), "previous": e.previous} for e in events
    ]
    return {
        "summary": summary | {"passed": not reasons, "failure_reasons": reasons},
        "windows": windows | around,
        "swaps": swap_rows(events, runs, list(around.values())),
        "alias_events": changes,
        "alias_polls": watcher.polls,
        "alias_poll_errors": watcher.poll_errors[:20],
        "indexer_runs": runs,
        "initial_run": shifted(got.initial, zero, []) if got.initial else None,
        "error_examples": error_examples(samples, swaps),
        "cpu": got.cpu,
        "disturbed_phases": [name for name, cpu in got.cpu.items() if harness.is_disturbed(cpu)],
        "timeline": timeline(samples, load_end),
        "cleanup": got.cleanup,
        "samples": samples,
    }


def settings_of(args, got: Collected) -> dict[str, Any]:
    names = "smoke seconds max_requests concurrency upload_share images baseline_seconds tail_seconds "
    names += "swap_window:swap_window_s keep_versions poll_interval:poll_interval_s size:page_size weights"
    settings = harness.pick(args, names) | {"alias": got.alias, "table": got.table}
    settings["clients"] = dict(zip(KINDS, client_split(args.concurrency, args.upload_share), strict=True))
    settings["products"] = (args.images + 2) // 3
    settings["rebuilds"] = [REBUILDS[kind][0] for kind in args.rebuilds]
    settings["query_photos"] = f"{args.query_photos} JPEGs ~640x480 (600..680 wide), quality 85-92"
    settings["catalog_photos"] = "JPEG 800x600..1600x1200 (25% portrait), quality 85-92, 3 per product"
    return settings | {"server": f"{loadgen.SERVER}, {Layout.default().name}"}


def write_requests(samples: list[Sample], stem: Path) -> Path:
    """Every request: start and end (s from the load start), kind, status, hits, error or body."""
    with gzip.open(path := Path(f"{stem}-requests.csv.gz"), "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start_s", "end_s", "kind", "status", "hits", "error"])
        for s in samples:
            writer.writerow([f"{s.start:.4f}", f"{s.end:.4f}", s.kind, s.status, s.hits, s.error or s.detail])
    return path


def context(results: dict[str, Any]) -> list[str]:
    summary, run, cleaned = results["summary"], results["settings"], results["cleanup"]
    failed = f"**FAILED**: {'; '.join(summary['failure_reasons'])}"
    verdict_text = "**passed**" if summary["passed"] else failed
    return [
        f"Server: {run['server']}. Catalog: {run['images']} rows ({run['catalog_photos']}), weights "
        f"`{run['weights']}`. Load: {run['clients']} closed-loop clients on loopback, uploads of "
        f"{run['query_photos']}, size {run['page_size']}; rebuilds after {run['baseline_seconds']:.0f} s: "
        f"{', '.join(run['rebuilds'])}, INDEXER_KEEP_VERSIONS={run['keep_versions']}.",
        f"Verdict: {verdict_text}. Cleaned up: indices {cleaned.get('deleted_indices')}, table "
        f"{cleaned.get('dropped_table')}; left over: {cleaned.get('left_over')}.",
    ]


def windows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per window and kind: requests that started in it (swap windows: in flight at any moment of it)."""
    keys = ("requests", "per_second", "non_2xx", "connection_errors", "p50_ms", "p95_ms", "p99_ms", "max_ms")
    return [
        {"window": name, "from_s": window["from_s"], "to_s": window["to_s"], "kind": kind}
        | {key: window[kind].get(key) for key in keys}
        for name, window in results["windows"].items()
        for kind in KINDS
    ]


def runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("name", "exit_code", "wall_s", "problems")
    every = [results["initial_run"], *results["indexer_runs"]]
    return [{key: run[key] for key in keys} | run["report"] for run in every if run]


TABLES = ["summary", ("latency of successful requests per window", windows)]
TABLES += [("swaps", lambda res: [{k: v for k, v in swap.items() if k != "window"} for swap in res["swaps"]])]
TABLES += [("indexer runs", runs), "cpu", "error_examples"]
TITLE = "Search API under sustained load while `indexer full` rebuilds and swaps the alias"
REPORT = harness.Report(TITLE, TABLES, context)


def main(argv: list[str] | None = None) -> int:
    args = options().parse(argv)
    if args.images < 1 or args.concurrency < 1 or args.max_requests < 1:
        raise SystemExit("--images, --concurrency and --max-requests must be at least 1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM raises KeyboardInterrupt too
    got = Collected()
    try:
        before = harness.load_before(args.wait_idle)
        with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder:
            measure(args, Path(folder), got)
    except KeyboardInterrupt:
        say("interrupted: servers stopped, indices and table removed")
        return 130
    analysed = analyse(args, got)
    samples = analysed.pop("samples")
    started = datetime.now(UTC) - timedelta(seconds=time.perf_counter() - got.load.started_at)
    results = harness.envelope(args, before) | {"load_started_at": started.isoformat(timespec="milliseconds")}
    results |= {"settings": settings_of(args, got), **analysed}
    harness.write_results(results, REPORT, args, requests_file=lambda stem: write_requests(samples, stem))
    return 0 if results["summary"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
