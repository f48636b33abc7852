"""The one retry policy (tenacity): what is transient per service, deadlines, backoff with jitter."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import elastic_transport
from elasticsearch import ApiError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from imgsearch.download import DownloadFailure

log = logging.getLogger(__name__)

T = TypeVar("T")
Announce = Callable[[str], None]

# Elasticsearch: unreachable, timed out, overloaded (429) or restarting behind a proxy (502/503/504).
ELASTICSEARCH_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# MySQL client error codes: 2002/2003 can't connect, 2005 unknown host, 2006 server gone away,
# 2013 lost connection, 2055 lost (SSL); server codes while stopping: 1053 shutdown, 1927 connection killed.
MYSQL_RECONNECTABLE_ERRNOS = frozenset({2002, 2003, 2005, 2006, 2013, 2055})
MYSQL_RESTARTING_ERRNOS = frozenset({1053, 1927})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `first` seconds, doubling up to `cap`, each wait stretched by up to `jitter`."""

    first: float
    cap: float
    jitter: float = 0.5

    def delay(self, retry_number: int) -> float:
        """Seconds before retry `retry_number` (0 for the first retry)."""
        return min(self.first * 2**retry_number * random.uniform(1.0, 1.0 + self.jitter), self.cap)


ELASTICSEARCH_BACKOFF = Backoff(0.5, 10.0)
BULK_BACKOFF = Backoff(1.0, 15.0)
MYSQL_BACKOFF = Backoff(0.5, 10.0)
KIBANA_BACKOFF_FIRST = 1.0


class wait_backoff(wait_base):  # named like tenacity's own wait strategies
    """Waits by a Backoff, or as long as the failure itself asks (`at_least`, e.g. Retry-After)."""

    def __init__(
        self, backoff: Backoff, at_least: Callable[[BaseException], float | None] | None = None
    ) -> None:
        self.backoff = backoff
        self.at_least = at_least

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = self.backoff.delay(retry_state.attempt_number - 1)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        asked = self.at_least(failure) if self.at_least and failure is not None else None
        return max(delay, asked or 0.0)


class stop_at(stop_base):  # named like tenacity's own stop conditions
    """Stop when the next attempt would start at or after a time.monotonic() deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


def policy(
    transient: Callable[[BaseException], bool],
    wait: wait_base,
    stop: stop_base,
    announce: Callable[[BaseException, float], None] | None = None,
) -> Retrying:
    """Retry the exceptions `transient` accepts; the last failure is re-raised as it was."""

    def before_sleep(state: RetryCallState) -> None:
        if announce is not None and state.outcome is not None:
            announce(state.outcome.exception(), state.upcoming_sleep)

    return Retrying(
        retry=retry_if_exception(transient), wait=wait, stop=stop, before_sleep=before_sleep, reraise=True
    )


# --- Elasticsearch ------------------------------------------------------------------------------------


def is_elasticsearch_transient(exc: BaseException) -> bool:
    """An Elasticsearch error worth waiting out: unreachable, timed out, overloaded, restarting."""
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        return True
    return isinstance(exc, ApiError) and exc.meta.status in ELASTICSEARCH_TRANSIENT_STATUSES


def elasticsearch_retrying(
    what: str,
    deadline_seconds: float,
    backoff: Backoff = ELASTICSEARCH_BACKOFF,
    waiting: Callable[[], str] | None = None,
) -> Retrying:
    """Transient Elasticsearch errors waited out for up to deadline_seconds, each wait logged as
    `<what>: Elasticsearch unavailable (<error>)[; <waiting()>]; retrying in <s> s`."""

    def announce(exc: BaseException, seconds: float) -> None:
        extra = f"; {waiting()}" if waiting is not None else ""
        log.warning("%s: Elasticsearch unavailable (%s)%s; retrying in %.1f s", what, exc, extra, seconds)

    stop = stop_before_delay(deadline_seconds)
    return policy(is_elasticsearch_transient, wait_backoff(backoff), stop, announce)


def retry_elasticsearch(call: Callable[[], T], what: str, deadline_seconds: float) -> T:
    """call(), with transient Elasticsearch errors waited out for up to deadline_seconds."""
    return elasticsearch_retrying(what, deadline_seconds)(call)


# --- MySQL / MariaDB ----------------------------------------------------------------------------------


def is_mysql_reconnectable(exc: BaseException) -> bool:
    """A lost or refused connection (worth waiting out); not an SQL or permission error."""
    # Imported here, so that importing the core (shared with the API) never loads the MySQL driver.
    from mysql.connector import errors as mysql_errors

    if isinstance(exc, (mysql_errors.OperationalError, mysql_errors.InterfaceError)):
        return True
    reconnectable = MYSQL_RECONNECTABLE_ERRNOS | MYSQL_RESTARTING_ERRNOS
    return isinstance(exc, mysql_errors.Error) and exc.errno in reconnectable


def mysql_retrying(deadline_seconds: float) -> Retrying:
    """A lost catalog connection waited out for up to deadline_seconds, each wait logged."""

    def announce(exc: BaseException, seconds: float) -> None:
        log.warning("catalog database unavailable (%s); reconnecting in %.1f s", exc, seconds)

    stop = stop_before_delay(deadline_seconds)
    return policy(is_mysql_reconnectable, wait_backoff(MYSQL_BACKOFF), stop, announce)


# --- image downloads (HTTP) ---------------------------------------------------------------------------


def is_download_transient(exc: BaseException) -> bool:
    """Timeouts, resets, refused connections and 408/429/5xx (imgsearch.download.TRANSIENT_REASONS)."""
    return isinstance(exc, DownloadFailure) and exc.transient


def retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, DownloadFailure) else None


def download_retrying(retries: int, backoff: Backoff, deadline: float) -> Retrying:
    """At most `retries` more attempts, none starting at or after `deadline` (time.monotonic());
    each wait is the backoff or the failure's Retry-After, whichever is longer. Waits are not logged:
    a failed row records its attempts."""
    stop = stop_after_attempt(retries + 1) | stop_at(deadline)
    return policy(is_download_transient, wait_backoff(backoff, at_least=retry_after_of), stop)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent/invalid."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(moment.timestamp() - time.time(), 0.0)


# --- Kibana set-up ------------------------------------------------------------------------------------


class NotReady(Exception):
    """A service answered but cannot serve yet (e.g. HTTP 503 while starting); keeps its answer."""

    def __init__(self, problem: str, answer: object) -> None:
        super().__init__(problem)
        self.answer = answer


def is_kibana_transient(exc: BaseException) -> bool:
    """Kibana unreachable (a socket or URL error) or still starting (NotReady)."""
    return isinstance(exc, (OSError, NotReady))


def kibana_retrying(wait_seconds: float, interval_cap: float, announce: Announce) -> Retrying:
    """Retry while Kibana is unreachable or not ready, for up to wait_seconds (0: one attempt)."""

    def before_sleep(exc: BaseException, seconds: float) -> None:
        problem = getattr(exc, "reason", None) or exc
        announce(f"Kibana not ready ({problem}); retrying in {seconds:.1f} s")

    wait = wait_backoff(Backoff(min(KIBANA_BACKOFF_FIRST, interval_cap), interval_cap))
    return policy(is_kibana_transient, wait, stop_before_delay(wait_seconds), before_sleep)
