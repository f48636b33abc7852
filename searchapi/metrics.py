"""Prometheus metrics: request latency per endpoint and time per stage (fetch, decode, model, ES)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES = ("fetch", "decode", "model", "elasticsearch")
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """One registry per app; with several gunicorn workers set PROMETHEUS_MULTIPROC_DIR."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "imgsearch_http_request_duration_seconds",
            "HTTP request latency by route template, method and status code",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "imgsearch_stage_duration_seconds",
            "Time spent per request stage: fetch (image_url download), decode, model, elasticsearch",
            ["stage", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text format for GET /metrics (aggregated over worker processes in multiprocess mode)."""
        registry = self.registry
        if os.environ.get(MULTIPROCESS_VARIABLE):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def endpoint_label() -> str:
    """The route template (`/images/<image_id>`), never the raw path, so label values stay bounded."""
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a stage of the current request: into the histogram and into the response's timings."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        timings: dict[str, float] = g.setdefault("stage_seconds", {})
        timings[name] = timings.get(name, 0.0) + seconds
        metrics: Metrics = g.metrics
        metrics.stages.labels(name, endpoint_label()).observe(seconds)


def stage_timings_ms() -> dict[str, float]:
    """Milliseconds per stage of the current request (for the JSON body)."""
    return {name: round(seconds * 1000, 1) for name, seconds in g.get("stage_seconds", {}).items()}


def server_timing_header() -> str:
    """`Server-Timing` so browser dev tools show where a request spent its time."""
    return ", ".join(f"{name};dur={ms}" for name, ms in stage_timings_ms().items())


def init_metrics(app: Flask) -> Metrics:
    """Observe every request's latency and attach stage timings to the response headers."""
    metrics = Metrics()

    @app.before_request
    def start_timer() -> None:
        g.metrics = metrics
        g.request_started = time.perf_counter()

    @app.after_request
    def observe(response):
        started = g.get("request_started")
        if started is not None:
            seconds = time.perf_counter() - started
            metrics.requests.labels(endpoint_label(), request.method, str(response.status_code)).observe(
                seconds
            )
        timing = server_timing_header()
        if timing:
            response.headers["Server-Timing"] = timing
        return response

    return metrics
