"""Commands `full` and `incremental`: check the services, load the model, run or plan, report the outcome."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from imgsearch.esclient import failure_message, is_auth_failure, make_client
from imgsearch.esversion import warn_if_unsupported
from imgsearch.features import FeatureExtractor
from imgsearch.indices import aliased_indices, server_version
from imgsearch.retry import is_elasticsearch_transient
from imgsearch.settings import environ
from indexer.commands import (
    ELASTICSEARCH_ERRORS,
    EXIT_CONFIG,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_VALIDATION,
    describe_es_failure,
    elasticsearch_failed,
)
from indexer.config import IndexerConfig, load_indexer_config
from indexer.full import FullRebuild
from indexer.incremental import IncompatibleIndex, IncrementalRun, NoLiveIndex
from indexer.lockedrun import LockedRun, ValidationFailed
from indexer.pipeline import RunOptions
from indexer.plan import plan_full, plan_incremental
from indexer.progress import make_progress
from indexer.source import CatalogSource
from indexer.state import LockHeld
from indexer.stop import Interrupted, StopToken

log = logging.getLogger("indexer")

RESUMES = "the next run resumes from the last checkpoint"


@dataclass(frozen=True)
class Outcome:
    """How a run that raised ends: the report's outcome, the exit code, the log template."""

    kind: type[BaseException]
    outcome: str
    code: int
    template: str


# The first match wins; anything else is a crash (logged with its traceback).
KNOWN_FAILURES = (
    Outcome(LockHeld, "locked", EXIT_LOCKED, "refusing to start: %s"),
    Outcome(ValidationFailed, "validation_failed", EXIT_VALIDATION, "validation failed: %s"),
    Outcome(IncompatibleIndex, "failed", EXIT_CONFIG, "%s"),
    Outcome(NoLiveIndex, "failed", EXIT_RUN_FAILED, "%s"),
    Outcome(
        Interrupted, "interrupted", EXIT_RUN_FAILED, "stopped by %s; the next run resumes from the checkpoint"
    ),
)


@dataclass(frozen=True)
class Failed:
    """A service was unusable at the start (already logged): exit with `code`."""

    code: int


def run_job(args: argparse.Namespace, stop: StopToken) -> int:
    """Check services, load the model, run `full` or `incremental`, report (stderr, JSON, runs index)."""
    config = load_indexer_config(environ())
    es = make_client(config.elastic)
    source = CatalogSource(config.mysql, page_size=args.page_size, partition=args.partition)
    total = check_services(config, es, source, args)
    if isinstance(total, Failed):
        return total.code
    try:
        extractor = FeatureExtractor.from_config(config.model)
    except Exception as exc:  # noqa: BLE001 - e.g. weights not downloadable offline
        log.error("cannot load VGG16 weights %r: %s", config.model.weights, exc)
        return EXIT_CONFIG
    try:
        run = make_run(args, config, es, source, extractor, total, stop)
        return execute(run, args, config)
    finally:
        source.close()


def check_services(
    config: IndexerConfig, es: Elasticsearch, source: CatalogSource, args: argparse.Namespace
) -> int | Failed:
    """The catalog's row count once both Elasticsearch and the catalog answer; else how it failed."""
    try:
        version = server_version(es)
    except ELASTICSEARCH_ERRORS as exc:
        return Failed(elasticsearch_failed(exc, config.elastic))
    warn_if_unsupported(version)
    try:
        total = source.count()
    except Exception as exc:  # noqa: BLE001 - mysql.connector raises many types
        log.error("catalog database %s:%s is not reachable: %s", config.mysql.host, config.mysql.port, exc)
        log.debug("the failed catalog query", exc_info=exc)
        return Failed(EXIT_RUN_FAILED)
    log.info(
        "Elasticsearch %s at %s; %d catalog rows in partition %s",
        version,
        config.elastic.url,
        total,
        args.partition,
    )
    return total


def make_run(
    args: argparse.Namespace,
    config: IndexerConfig,
    es: Elasticsearch,
    source: CatalogSource,
    extractor: FeatureExtractor,
    total: int,
    stop: StopToken,
) -> LockedRun:
    """The run object for the command; `incremental` on a missing alias becomes a `full` build."""
    options = RunOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        decode_processes=args.decode_processes,
        bulk_streams=args.bulk_streams,
        limit=args.limit,
        max_failure_ratio=args.max_failure_ratio,
        recompute=args.recompute,
        partition=args.partition,
    )
    command = args.command
    if command == "incremental" and not aliased_indices(es, config.elastic.alias):
        log.warning("alias %s does not exist yet: running a full build instead", config.elastic.alias)
        command = "full"
    expected = min(total, args.limit) if args.limit else total
    progress = make_progress(None if command == "incremental" else expected, enabled=not args.no_progress)
    runner = FullRebuild if command == "full" else IncrementalRun
    return runner(config, es, source, extractor, options, progress, stop)


def execute(run: LockedRun, args: argparse.Namespace, config: IndexerConfig) -> int:
    """Run (or plan), map the outcome to an exit code, and report it everywhere."""
    code = EXIT_OK
    try:
        if args.dry_run:
            return print_plan(run)
        run.run()
    except Exception as exc:  # noqa: BLE001 - logged and reported by record_failure
        code = record_failure(run, exc, config)
    publish_report(run, config)
    return code


def record_failure(run: LockedRun, exc: Exception, config: IndexerConfig) -> int:
    """Log why the run stopped (one line for known causes) and finish its report; the exit code."""
    known = next((entry for entry in KNOWN_FAILURES if isinstance(exc, entry.kind)), None)
    unavailable = elasticsearch_cause(exc)
    if is_auth_failure(exc):
        message = failure_message(exc, config.elastic)
        log.error("%s", message)
        run.report.finish("failed", message)
        return EXIT_CONFIG
    if known is not None:
        log.error(known.template, exc)
        run.report.finish(known.outcome, str(exc))
        return known.code
    if unavailable is not None:
        log.error("run failed: %s; %s", describe_es_failure(unavailable, config.elastic.url), RESUMES)
        log.debug("the failed run", exc_info=exc)
    else:
        log.exception("run failed; %s", RESUMES)
    run.report.finish("failed", f"{type(exc).__name__}: {exc}")
    return EXIT_RUN_FAILED


def elasticsearch_cause(exc: BaseException | None) -> BaseException | None:
    """The transient Elasticsearch error behind exc (itself, or what it was raised from), if any."""
    while exc is not None:
        if is_elasticsearch_transient(exc):
            return exc
        exc = exc.__cause__
    return None


def print_plan(run: LockedRun) -> int:
    plan = plan_full(run) if isinstance(run, FullRebuild) else plan_incremental(run)
    print(json.dumps({"mode": run.report.mode, "partition": str(run.partition), "dry_run": plan}, indent=2))
    return EXIT_OK


def publish_report(run: LockedRun, config: IndexerConfig) -> None:
    """Print the summary, write the JSON file, and index the report into `<alias>-runs`."""
    report = run.report
    print(report.summary(), file=sys.stderr)
    try:
        log.info("report written to %s", report.write_json(config.report_dir))
    except OSError as exc:
        log.error("could not write the report file into INDEXER_REPORT_DIR=%s: %s", config.report_dir, exc)
    try:
        run.store.ensure().record_run(report.as_dict())
    except Exception as exc:  # noqa: BLE001 - the run's outcome stands even if its report cannot be stored
        log.error("could not store the run report in Elasticsearch: %s", exc)
