"""Command line: `python -m indexer full|incremental|status|rollback`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from imgsearch.logsetup import configure_logging
from imgsearch.settings import ConfigError, environ
from indexer.config import environment_help
from indexer.partition import Partition

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_CONFIG = 2
EXIT_VALIDATION = 3
EXIT_LOCKED = 4

ENVIRONMENT_HELP = f"""\
{environment_help()}

state: checkpoints and locks live in <ES_INDEX>-indexer-state, run reports in <ES_INDEX>-runs.

exit codes: 0 done, 1 run failed (alias untouched; the next run resumes), 2 bad configuration
(incl. incremental with weights other than the live index's: run full; Elasticsearch rejecting the
credentials (401), a missing privilege (403) or a failed TLS verification),
3 validation failed (full: new index kept for inspection, alias untouched; incremental: too many
failed rows), 4 another run holds the lock (nothing done). SIGTERM/SIGINT stop a run cleanly (exit 1,
lock released, report written); kill -9 is resumed too, after the lock expires or at once on the
same host."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m indexer",
        description="Index catalog images from MySQL into Elasticsearch for similarity search.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_options = run_options_parser()
    full = commands.add_parser(
        "full",
        parents=[run_options],
        help="rebuild: index every row into a new version, validate, swap the alias",
        description="Index every catalog row into a new versioned index, validate it, then "
        "atomically point the alias at it and delete versions beyond the retention count. "
        "Unchanged vectors are copied from the live index. An interrupted build is resumed "
        "from its checkpoint by the next `full`.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    full.add_argument(
        "--recompute",
        action="store_true",
        help="compute every vector again instead of reusing unchanged ones from the live index",
    )
    incremental = commands.add_parser(
        "incremental",
        parents=[run_options],
        help="apply catalog changes since the last run to the live index (the scheduled job)",
        description="Upsert rows changed since the checkpoint (ordered by updated_at, id), retry "
        "rows that failed before, and delete documents whose rows were deleted or soft-deleted, "
        "in the index the alias serves. Runs `full` instead when the alias does not exist yet.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    incremental.add_argument(
        "--recompute", action="store_true", help="compute the changed rows' vectors even if unchanged"
    )
    status = commands.add_parser(
        "status",
        help="show what the alias serves: versions, documents per status, model, last run",
        description="Show the alias, the index it points to, every retained version with its "
        "documents per status and model, the catalog row count (when MYSQL_URL is set) and the "
        "latest run report.",
    )
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    rollback = commands.add_parser(
        "rollback",
        help="point the alias back to the previous retained version",
        description="Atomically point the alias at the newest retained version older than the live "
        "one (or at --to INDEX). The API refuses an index built by other weights, so check `status`.",
    )
    rollback.add_argument("--to", metavar="INDEX", help="a specific retained version to serve")
    return parser


def run_options_parser() -> argparse.ArgumentParser:
    """Options shared by `full` and `incremental`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per model call (default: by device and precision: 8 float32 CPU, 32 bf16 CPU, 64 GPU)",
    )
    parser.add_argument("--workers", type=positive_int, default=8, help="download/decode threads (default 8)")
    parser.add_argument(
        "--page-size", type=positive_int, default=500, help="rows per keyset page (default 500)"
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="stop after this many rows")
    parser.add_argument(
        "--max-failure-ratio",
        type=ratio,
        default=0.01,
        help="largest share of failed rows before the run counts as failed validation (default 0.01)",
    )
    parser.add_argument(
        "--partition",
        type=partition,
        default=Partition(),
        metavar="I/N",
        help="take only rows with id %% N == I, so N processes share the work (default 0/1)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what the run would do; write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress log lines")
    return parser


def partition(text: str) -> Partition:
    try:
        return Partition.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def elasticsearch_failed(exc: Exception, config) -> int:
    """Log why Elasticsearch could not be used: credentials/privileges/TLS (exit 2) or unreachable (1)."""
    from imgsearch.esclient import failure_message

    log = logging.getLogger("indexer")
    message = failure_message(exc, config)
    if message:
        log.error("%s", message)
        return EXIT_CONFIG
    log.error("Elasticsearch at %s is not reachable: %s", config.url, exc)
    return EXIT_RUN_FAILED


def run_job(args: argparse.Namespace) -> int:
    """Check services, load the model, run `full` or `incremental`, report (stderr, JSON, runs index)."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from imgsearch.esclient import make_client
    from imgsearch.esversion import warn_if_unsupported
    from imgsearch.indices import server_version
    from indexer.config import load_indexer_config
    from indexer.source import CatalogSource

    log = logging.getLogger("indexer")
    config = load_indexer_config(environ())
    es = make_client(config.elastic)
    source = CatalogSource(config.mysql, page_size=args.page_size, partition=args.partition)
    try:
        version = server_version(es)
    except (TransportError, ApiError) as exc:
        return elasticsearch_failed(exc, config.elastic)
    warn_if_unsupported(version)
    try:
        total = source.count()
    except Exception as exc:  # noqa: BLE001 - mysql.connector raises many types
        log.error("catalog database %s:%s is not reachable: %s", config.mysql.host, config.mysql.port, exc)
        return EXIT_RUN_FAILED
    log.info(
        "Elasticsearch %s at %s; %d catalog rows in partition %s",
        version,
        config.elastic.url,
        total,
        args.partition,
    )
    try:
        extractor = load_extractor(config)
    except Exception as exc:  # noqa: BLE001 - e.g. weights not downloadable offline
        log.error("cannot load VGG16 weights %r: %s", config.model.weights, exc)
        return EXIT_CONFIG
    try:
        run = make_run(args, config, es, source, extractor, total)
        return execute(run, args, config)
    finally:
        source.close()


def load_extractor(config):
    from imgsearch.features import FeatureExtractor

    return FeatureExtractor.from_config(config.model)


def make_run(args, config, es, source, extractor, total: int):
    """The run object for the command; `incremental` on a missing alias becomes a `full` build."""
    from imgsearch.indices import aliased_indices
    from indexer.full import FullRebuild
    from indexer.incremental import IncrementalRun
    from indexer.pipeline import RunOptions
    from indexer.progress import make_progress

    options = RunOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        limit=args.limit,
        max_failure_ratio=args.max_failure_ratio,
        recompute=args.recompute,
        partition=args.partition,
    )
    command = args.command
    if command == "incremental" and not aliased_indices(es, config.elastic.alias):
        logging.getLogger("indexer").warning(
            "alias %s does not exist yet: running a full build instead", config.elastic.alias
        )
        command = "full"
    expected = min(total, args.limit) if args.limit else total
    progress = make_progress(None if command == "incremental" else expected, enabled=not args.no_progress)
    runner = FullRebuild if command == "full" else IncrementalRun
    return runner(config, es, source, extractor, options, progress)


def execute(run, args: argparse.Namespace, config) -> int:
    """Run (or plan), map the outcome to an exit code, and report it everywhere."""
    from imgsearch.esclient import failure_message, is_auth_failure
    from indexer.incremental import IncompatibleIndex, NoLiveIndex
    from indexer.pipeline import Interrupted, ValidationFailed
    from indexer.state import LockHeld

    log = logging.getLogger("indexer")
    # (exception, outcome, exit code, log template): the first match wins; anything else is a crash.
    known = [
        (LockHeld, "locked", EXIT_LOCKED, "refusing to start: %s"),
        (ValidationFailed, "validation_failed", EXIT_VALIDATION, "validation failed: %s"),
        (IncompatibleIndex, "failed", EXIT_CONFIG, "%s"),
        (NoLiveIndex, "failed", EXIT_RUN_FAILED, "%s"),
        (
            Interrupted,
            "interrupted",
            EXIT_RUN_FAILED,
            "stopped by %s; the next run resumes from the checkpoint",
        ),
    ]
    code = EXIT_OK
    try:
        if args.dry_run:
            return print_plan(run)
        run.run()
    except Exception as exc:
        match = next((entry for entry in known if isinstance(exc, entry[0])), None)
        if is_auth_failure(exc):
            message = failure_message(exc, config.elastic)
            log.error("%s", message)
            run.report.finish("failed", message)
            code = EXIT_CONFIG
        elif match is None:
            log.exception("run failed; the next run resumes from the last checkpoint")
            run.report.finish("failed", f"{type(exc).__name__}: {exc}")
            code = EXIT_RUN_FAILED
        else:
            _, outcome, code, template = match
            log.error(template, exc)
            run.report.finish(outcome, str(exc))
    publish_report(run, config)
    return code


def print_plan(run) -> int:
    import json

    from indexer.full import FullRebuild
    from indexer.plan import plan_full, plan_incremental

    plan = plan_full(run) if isinstance(run, FullRebuild) else plan_incremental(run)
    print(json.dumps({"mode": run.report.mode, "partition": str(run.partition), "dry_run": plan}, indent=2))
    return EXIT_OK


def publish_report(run, config) -> None:
    """Print the summary, write the JSON file, and index the report into `<alias>-runs`."""
    log = logging.getLogger("indexer")
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


def run_status(args: argparse.Namespace) -> int:
    """Print the alias state; exit 1 when Elasticsearch is unreachable."""
    import json

    from elastic_transport import TransportError
    from elasticsearch import AuthenticationException, AuthorizationException

    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import make_client
    from indexer.admin import alias_status

    env = environ()
    config = load_elastic_config(env)
    try:
        state = alias_status(make_client(config), config.alias)
    except (TransportError, AuthenticationException, AuthorizationException) as exc:
        return elasticsearch_failed(exc, config)
    state["catalog_rows"] = catalog_rows(env)
    if args.json:
        print(json.dumps(state, indent=2, default=str))
    else:
        print(format_status(state))
    return EXIT_OK


def catalog_rows(env) -> int | None:
    """Rows in the catalog table, or None when MYSQL_URL is not set or unreachable."""
    if not env.get("MYSQL_URL"):
        return None
    from indexer.config import load_mysql_config
    from indexer.source import CatalogSource

    source = CatalogSource(load_mysql_config(env))
    try:
        return source.count()
    except Exception:  # noqa: BLE001 - status is informative; a DB outage must not hide the index state
        return None
    finally:
        source.close()


def format_status(state: dict) -> str:
    lines = [f"alias {state['alias']} -> {', '.join(state['live']) or '(not set)'}"]
    if state["catalog_rows"] is not None:
        lines.append(f"catalog rows: {state['catalog_rows']}")
    for version in state["versions"]:
        marker = "*" if version["live"] else " "
        model = version["model"] or {}
        statuses = ", ".join(f"{k}={v}" for k, v in sorted(version["statuses"].items()))
        lines.append(
            f" {marker} {version['index']}  docs={version['documents']}  {statuses}  "
            f"model={model.get('weights')} {model.get('fingerprint')}"
        )
    for entry in state["state"]:
        details = {k: v for k, v in entry.items() if k not in ("id", "kind", "statuses", "done")}
        lines.append(f"state {entry['id']}: {details}")
    for run in state["last_runs"]:
        statuses = ", ".join(f"{k}={v}" for k, v in sorted((run.get("statuses") or {}).items())) or "-"
        lines.append(
            f"run {run['run_id']} {run['mode']} [{run.get('partition', '0/1')}] {run['outcome']} "
            f"{run['started_at']} -> {run.get('finished_at')}: {statuses}; "
            f"{run.get('images_per_second')} new vectors/s"
        )
    return "\n".join(lines)


def run_rollback(args: argparse.Namespace) -> int:
    from elastic_transport import TransportError
    from elasticsearch import AuthenticationException, AuthorizationException

    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import make_client
    from indexer.admin import RollbackImpossible, rollback

    log = logging.getLogger("indexer")
    config = load_elastic_config(environ())
    try:
        current, previous = rollback(make_client(config), config.alias, args.to)
    except RollbackImpossible as exc:
        log.error("rollback impossible: %s", exc)
        return EXIT_RUN_FAILED
    except (TransportError, AuthenticationException, AuthorizationException) as exc:
        return elasticsearch_failed(exc, config)
    print(f"alias {config.alias}: {current} -> {previous}")
    return EXIT_OK


COMMANDS = {"full": run_job, "incremental": run_job, "status": run_status, "rollback": run_rollback}


def stop_on_signals() -> None:
    """SIGTERM/SIGINT: stop at the next row (lock released, report stored); a second one exits at once."""

    def interrupt(signum: int, _frame: object) -> None:
        from indexer.pipeline import stop_requested

        name = signal.Signals(signum).name
        logging.getLogger("indexer").warning("%s received: stopping after the current batch", name)
        stop_requested(name)
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    stop_on_signals()
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        logging.getLogger("indexer").error("configuration error: %s", exc)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
