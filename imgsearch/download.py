"""Download failures of a row, and reading a streamed HTTP body under a byte cap and a deadline."""

from __future__ import annotations

import time

import urllib3

from imgsearch.errors import RowFailure, RowStatus

CHUNK_BYTES = 64 * 1024
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_REASONS = frozenset(
    {"timeout", "connection_reset", "connection_closed", "connection_refused", "connection_failed"}
    | {f"http_{status}" for status in RETRY_STATUSES}
)


class DownloadFailure(RowFailure):
    """A download_failed row failure; transient ones are retried, after at least `retry_after` seconds."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(RowStatus.DOWNLOAD_FAILED, reason, message)
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS


def download_failure(reason: str, message: str, retry_after: float | None = None) -> DownloadFailure:
    return DownloadFailure(reason, message, retry_after)


def read_capped(response: urllib3.BaseHTTPResponse, max_bytes: int, deadline: float) -> bytes:
    """Read a streamed body, failing past `max_bytes` or past the overall deadline.

    `read1` returns whatever one socket read brings, so a server that drips bytes just fast enough to
    dodge the socket timeout still meets the deadline (a plain `read(n)` would wait for all n bytes).
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise download_failure("too_large", f"Content-Length {declared} exceeds the cap of {max_bytes} bytes")
    chunks: list[bytes] = []
    received = 0
    while True:
        if time.monotonic() > deadline:
            raise download_failure(
                "timeout", f"download took longer than the deadline ({received} bytes read)"
            )
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > max_bytes:
            raise download_failure("too_large", f"body exceeds the cap of {max_bytes} bytes")
        chunks.append(chunk)
