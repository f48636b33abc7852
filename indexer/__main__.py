"""Command line: `python -m indexer full|incremental|status|rollback` (argument parsing and dispatch)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from imgsearch.logsetup import configure_logging
from imgsearch.settings import ConfigError
from indexer.bulk import DEFAULT_BULK_STREAMS
from indexer.commands import EXIT_CONFIG, quiet_client_retries, run_rollback, run_status
from indexer.config import environment_help
from indexer.decoding import MIN_CORES_FOR_PROCESSES
from indexer.job import run_job
from indexer.partition import Partition
from indexer.stop import StopToken, stop_on_signals

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
    add_run_commands(commands, run_options_parser())
    add_alias_commands(commands)
    return parser


def add_run_commands(commands: argparse._SubParsersAction, run_options: argparse.ArgumentParser) -> None:
    """`full` and `incremental`."""
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


def add_alias_commands(commands: argparse._SubParsersAction) -> None:
    """`status` and `rollback`."""
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


def run_options_parser() -> argparse.ArgumentParser:
    """Options shared by `full` and `incremental`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per model call (default: by device and precision: 8 float32 CPU, 32 bf16 CPU, 64 GPU)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="download threads (default: 8, or twice the decode processes if that is more)",
    )
    parser.add_argument(
        "--decode-processes",
        type=processes,
        default=None,
        metavar="N",
        help="processes that decode images, 0 for none (the download threads decode); "
        f"default: one per core from {MIN_CORES_FOR_PROCESSES} cores, else 0",
    )
    parser.add_argument(
        "--bulk-streams",
        type=positive_int,
        default=DEFAULT_BULK_STREAMS,
        help=f"concurrent bulk requests to Elasticsearch (default {DEFAULT_BULK_STREAMS}; bench.ingest)",
    )
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


def processes(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


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


ALIAS_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "status": run_status,
    "rollback": run_rollback,
}


def dispatch(args: argparse.Namespace, stop: StopToken) -> int:
    """`status`/`rollback`, or a run (`full`/`incremental`) that `stop` can end cleanly."""
    if args.command in ALIAS_COMMANDS:
        return ALIAS_COMMANDS[args.command](args)
    return run_job(args, stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    quiet_client_retries(args.log_level)
    stop = StopToken()
    stop_on_signals(stop)
    try:
        return dispatch(args, stop)
    except ConfigError as exc:
        logging.getLogger("indexer").error("configuration error: %s", exc)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
