"""Closed-loop load on the API (benches and tests): its two requests, keep-alive clients, percentiles."""

from __future__ import annotations

import functools
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import urllib3

from devstack.kit.apiserver import ApiServer

REQUEST_TIMEOUT = 120.0
SERVER = "gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()'"
KINDS = ("by id", "upload")  # the API's two searches, as the load names them


@dataclass(frozen=True)
class HttpRequest:
    """One request of a load run; `kind` names the series it is counted in."""

    kind: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """One call: latency, HTTP status (0: no answer), hits (-1: not a search answer), error text, start
    (perf_counter) and the first bytes of a non-2xx answer."""

    kind: str
    seconds: float
    status: int = 200
    hits: int = -1
    error: str = ""
    start: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.error

    @property
    def failed(self) -> bool:
        return self.status == 0 or not 200 <= self.status < 300

    @property
    def end(self) -> float:
        return self.start + self.seconds


class KeepAliveClient:
    """One keep-alive connection (a urllib3 pool of one) reused for every request, opened again once when
    the server dropped it. Called with a job (a request, or what `request_of` makes one of), it is a load
    worker: the request timed as an Outcome."""

    def __init__(self, host: str, port: int, request_of: Callable[[Any], HttpRequest] | None = None) -> None:
        # a connection found dropped is opened again before sending; a request that failed or timed
        # out once sent is an error, never sent again (that would hide a failing API from the counts)
        retry = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=False)
        self.pool = urllib3.HTTPConnectionPool(host, port, maxsize=1, timeout=REQUEST_TIMEOUT, retries=retry)
        self.request_of = request_of or (lambda request: request)

    @property
    def reconnects(self) -> int:
        return max(self.pool.num_connections - 1, 0)

    def send(self, request: HttpRequest) -> tuple[int, bytes]:
        answer = self.pool.request(request.method, request.path, body=request.body, headers=request.headers)
        return answer.status, answer.data

    def close(self) -> None:
        self.pool.close()

    def __call__(self, job: Any) -> Outcome:
        return timed_http(self, self.request_of(job))


def hit_count(body: bytes) -> int:
    try:
        hits = json.loads(body).get("hits")
    except (ValueError, AttributeError):
        return -1
    return len(hits) if isinstance(hits, list) else -1


def failure(kind: str, start: float, exc: BaseException) -> Outcome:
    return Outcome(kind, time.perf_counter() - start, 0, error=f"{type(exc).__name__}: {exc}", start=start)


def timed_http(client: KeepAliveClient, request: HttpRequest) -> Outcome:
    """Send one request and time it until the whole answer is read; failures become outcomes."""
    start = time.perf_counter()
    try:
        status, body = client.send(request)
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        return failure(request.kind, start, getattr(exc, "reason", None) or exc)
    seconds = time.perf_counter() - start
    if 200 <= status < 300:
        return Outcome(request.kind, seconds, status, hit_count(body), start=start)
    return Outcome(request.kind, seconds, status, start=start, detail=body[:400].decode(errors="replace"))


def timed_call(kind: str, call: Callable[[], int]) -> Outcome:
    """Time an in-process call that returns a hit count; an exception becomes a failed outcome."""
    start = time.perf_counter()
    try:
        hits = call()
    except Exception as exc:  # noqa: BLE001 - a benchmark counts failures instead of stopping
        return failure(kind, start, exc)
    return Outcome(kind, time.perf_counter() - start, 200, hits, start=start)


def http_worker(host: str, port: int) -> Callable[[], KeepAliveClient]:
    return functools.partial(KeepAliveClient, host, port)


def upload_request(jpeg: bytes, size: int) -> HttpRequest:
    body, content_type = urllib3.encode_multipart_formdata({"image": ("query.jpg", jpeg, "image/jpeg")})
    return HttpRequest("upload", "POST", f"/search?size={size}", body, {"Content-Type": content_type})


def id_request(image_id: str, size: int) -> HttpRequest:
    return HttpRequest("by id", "GET", f"/images/{image_id}/similar?size={size}")


def warm_api(server: ApiServer, jpeg: bytes, image_id: str, size: int) -> None:
    """One search by upload and one by id before anything is timed; both must answer 200."""
    client = KeepAliveClient(server.host, server.port)
    try:
        for request in (upload_request(jpeg, size), id_request(image_id, size)):
            outcome = timed_http(client, request)
            if outcome.failed:
                raise RuntimeError(f"warm-up {request.kind} failed: {outcome}\n{server.log_tail()}")
    finally:
        client.close()


@dataclass
class LoadResult:
    """Every outcome of one load run, its wall time from the common start, and reconnects."""

    concurrency: int
    wall: float
    outcomes: list[Outcome]
    reconnects: int = 0


def run_load(
    make_worker: Callable[[], Callable[[Any], Outcome]],
    jobs: list[Any] | Callable[[int], Any],
    concurrency: int,
    warm_job: Any = None,
    seconds: float | None = None,
) -> LoadResult:
    """`concurrency` threads, each: build its caller, run `warm_job` untimed, then wait for the others;
    then all take jobs (a list, or a function of the job number; None stops) until none is left or
    `seconds` have passed. A caller's `reconnects` attribute, if any, is summed."""
    make_job = jobs if callable(jobs) else lambda number: jobs[number] if number < len(jobs) else None
    barrier, lock, numbers = threading.Barrier(concurrency + 1), threading.Lock(), itertools.count()
    deadline = [float("inf")]
    outcomes: list[list[Outcome]] = [[] for _ in range(concurrency)]
    reconnects = [0] * concurrency

    def take() -> Any:
        with lock:
            number = next(numbers)
        return make_job(number) if time.perf_counter() < deadline[0] else None

    def thread_main(number: int) -> None:
        call = make_worker()
        if warm_job is not None:
            call(warm_job)
        barrier.wait()
        while (job := take()) is not None:
            outcomes[number].append(call(job))
        reconnects[number] = getattr(call, "reconnects", 0)

    threads = [threading.Thread(target=thread_main, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    if seconds is not None:
        deadline[0] = started + seconds
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return LoadResult(concurrency, wall, [o for chunk in outcomes for o in chunk], sum(reconnects))


def latency_stats(outcomes: list[Outcome], wall: float | None = None, page_size: int = 10) -> dict[str, Any]:
    """Count, errors, p50/p95/p99/mean/max in ms (successful calls), and calls/s over `wall`;
    `short_pages` counts successful searches that returned fewer than `page_size` hits."""
    good = np.array([o.seconds for o in outcomes if o.ok]) * 1000.0
    stats: dict[str, Any] = {
        "requests": len(outcomes),
        "ok": int(good.size),
        "non_2xx": sum(1 for o in outcomes if o.status and not 200 <= o.status < 300),
        "5xx": sum(1 for o in outcomes if o.status >= 500),
        "connection_errors": sum(1 for o in outcomes if o.status == 0),
        "statuses": dict(sorted(Counter(str(o.status) for o in outcomes).items())),
        "short_pages": sum(1 for o in outcomes if o.ok and 0 <= o.hits < page_size),
    }
    if errors := Counter(o.error for o in outcomes if o.error):
        stats["errors"] = dict(errors.most_common(5))
    if good.size:
        values = [*np.percentile(good, [50, 95, 99]), good.mean(), good.max()]
        names = ("p50", "p95", "p99", "mean", "max")
        stats |= {f"{name}_ms": round(float(value), 2) for name, value in zip(names, values, strict=True)}
    if wall:
        stats |= {"per_second": round(len(outcomes) / wall, 2), "seconds": round(wall, 3)}
    return stats


class LoadRunner(threading.Thread):
    """The closed-loop clients in a background thread, each sending one kind of request (`clients`: a
    request per job number each); they share a request budget and stop together, at any moment."""

    def __init__(self, port: int, clients: list[Callable[[int], HttpRequest]], budget: int) -> None:
        super().__init__(name="api-load", daemon=True)
        self.stop, self.started, self.budget = threading.Event(), threading.Event(), budget
        self.started_at = self.closed_at = self.ended_at = 0.0
        self.result, self.error = LoadResult(0, 0.0, []), None
        kinds, self.count = iter(clients), len(clients)
        self.client = lambda: KeepAliveClient("127.0.0.1", port, next(kinds))

    def take(self, number: int) -> int | None:
        if not self.started.is_set():
            self.started_at = time.perf_counter()
            self.started.set()
        if self.stop.is_set() or number >= self.budget:
            self.closed_at = self.closed_at or time.perf_counter()
            return None
        return number

    def run(self) -> None:
        try:
            self.result = run_load(self.client, self.take, self.count, 0)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        self.ended_at = time.perf_counter()

    def halt(self) -> None:
        self.stop.set()
        self.join(timeout=180)
