"""Row-level failures: a status, a short reason code for histograms, and a human message."""

from __future__ import annotations

from enum import StrEnum


class RowStatus(StrEnum):
    """Final status of one catalog row in a run."""

    INDEXED = "indexed"
    REUSED = "reused"
    INVALID_ROW = "invalid_row"
    DOWNLOAD_FAILED = "download_failed"
    DECODE_FAILED = "decode_failed"
    FEATURE_FAILED = "feature_failed"
    INDEX_FAILED = "index_failed"
    DELETED = "deleted"


SUCCESS_STATUSES = frozenset({RowStatus.INDEXED, RowStatus.REUSED})
FAILURE_STATUSES = frozenset(set(RowStatus) - SUCCESS_STATUSES - {RowStatus.DELETED})


class RowFailure(Exception):
    """Why one row could not be indexed; it fails that row, never the run."""

    def __init__(self, status: RowStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[RowFailure], tuple[RowStatus, str, str]]:
        """Picklable with its three fields (it crosses from decode worker processes)."""
        return RowFailure, (self.status, self.reason, self.message)

    def __str__(self) -> str:
        return f"{self.status}/{self.reason}: {self.message}"
