"""Closed-loop load for benchmarks: N threads, one keep-alive connection each, latency percentiles."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A keep-alive connection the server closed while idle fails like this on its next request.
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
REQUEST_TIMEOUT = 120.0
Worker = Callable[[], tuple[Callable[[Any], "Outcome"], Callable[[], int]]]


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
    """One call: its latency, HTTP status (0: no answer), hits returned, error text, when it started
    (perf_counter) and the first bytes of the answer when it was not a 2xx."""

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


def multipart_image(data: bytes, filename: str = "query.jpg") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file field `image`, and its Content-Type header."""
    boundary = f"bench-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class KeepAliveClient:
    """One HTTP/1.1 connection reused for every request; reconnects once if the server dropped it."""

    def __init__(self, host: str, port: int) -> None:
        self.reconnects = 0
        self._connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)

    def send(self, request: HttpRequest) -> tuple[int, bytes]:
        try:
            return self._exchange(request)
        except STALE_CONNECTION_ERRORS:
            self.reconnects += 1
            self._connection.close()
            return self._exchange(request)

    def _exchange(self, request: HttpRequest) -> tuple[int, bytes]:
        self._connection.request(request.method, request.path, body=request.body, headers=request.headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._connection.close()


def hit_count(body: bytes) -> int:
    """len(hits) of a search answer (-1 when it is not one)."""
    try:
        hits = json.loads(body).get("hits")
    except (ValueError, AttributeError):
        return -1
    return len(hits) if isinstance(hits, list) else -1


def timed_http(client: KeepAliveClient, request: HttpRequest) -> Outcome:
    """Send one request and time it until the whole answer is read; failures become outcomes."""
    start = time.perf_counter()
    try:
        status, body = client.send(request)
    except (OSError, http.client.HTTPException) as exc:
        client.close()
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(request.kind, time.perf_counter() - start, 0, error=error, start=start)
    seconds = time.perf_counter() - start
    if 200 <= status < 300:
        return Outcome(request.kind, seconds, status, hit_count(body), start=start)
    return Outcome(request.kind, seconds, status, start=start, detail=body[:400].decode(errors="replace"))


def http_worker(host: str, port: int) -> Worker:
    """Factory of per-thread callers: each thread gets its own keep-alive connection."""

    def make() -> tuple[Callable[[Any], Outcome], Callable[[], int]]:
        client = KeepAliveClient(host, port)
        return (lambda request: timed_http(client, request)), lambda: client.reconnects

    return make


def timed_call(kind: str, call: Callable[[], int]) -> Outcome:
    """Time an in-process call that returns a hit count; an exception becomes a failed outcome."""
    start = time.perf_counter()
    try:
        hits = call()
    except Exception as exc:  # noqa: BLE001 - a benchmark counts failures instead of stopping
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(kind, time.perf_counter() - start, 0, error=error, start=start)
    return Outcome(kind, time.perf_counter() - start, 200, hits, start=start)


@dataclass
class LoadResult:
    """Every outcome of one load run, its wall time from the common start, and reconnects."""

    concurrency: int
    wall: float
    outcomes: list[Outcome]
    reconnects: int = 0


class JobFeed:
    """Hands jobs to the threads: a fixed list, or made by number until a deadline (or None from it)."""

    def __init__(self, jobs: list[Any] | None = None, make_job: Callable[[int], Any] | None = None):
        self._jobs, self._make_job = jobs, make_job
        self._next = 0
        self._deadline = float("inf")
        self._lock = threading.Lock()

    def start(self, seconds: float | None) -> None:
        if seconds is not None:
            self._deadline = time.perf_counter() + seconds

    def take(self) -> Any | None:
        with self._lock:
            number = self._next
            self._next += 1
        if self._jobs is not None:
            return self._jobs[number] if number < len(self._jobs) else None
        return self._make_job(number) if time.perf_counter() < self._deadline else None


def run_load(
    make_worker: Worker, feed: JobFeed, concurrency: int, warm_job: Any = None, seconds: float | None = None
) -> LoadResult:
    """`concurrency` threads, each: build its caller, run `warm_job` untimed, then wait for the others;
    then all take jobs from `feed` until it is empty (or `seconds` have passed)."""
    barrier = threading.Barrier(concurrency + 1)
    outcomes: list[list[Outcome]] = [[] for _ in range(concurrency)]
    reconnects = [0] * concurrency

    def thread_main(number: int) -> None:
        call, reconnected = make_worker()
        if warm_job is not None:
            call(warm_job)
        barrier.wait()
        while (job := feed.take()) is not None:
            outcomes[number].append(call(job))
        reconnects[number] = reconnected()

    threads = [threading.Thread(target=thread_main, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    feed.start(seconds)
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
    errors = Counter(o.error for o in outcomes if o.error)
    if errors:
        stats["errors"] = dict(errors.most_common(5))
    if good.size:
        values = [*np.percentile(good, [50, 95, 99]), good.mean(), good.max()]
        names = ("p50", "p95", "p99", "mean", "max")
        stats |= {f"{name}_ms": round(float(value), 2) for name, value in zip(names, values, strict=True)}
    if wall:
        stats["per_second"] = round(len(outcomes) / wall, 2)
        stats["seconds"] = round(wall, 3)
    return stats
