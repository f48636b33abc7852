"""What differs between the Elasticsearch majors this project runs on (8.19 and 9.x), by server version."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

Version = tuple[int, int, int]

# Tested: 8.19.21 (default) and 9.5.4 (scripts/versions.env). The 8.19 Python client talks to both
# (a 9.x server answers its `compatible-with=8` headers); a 9.x client is refused by an 8.x server.
SUPPORTED_MAJORS = (8, 9)
# From 9.2 a new index leaves dense_vector values out of `_source` unless the index says otherwise.
VECTORS_LEFT_OUT_OF_SOURCE_FROM: Version = (9, 2, 0)
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> Version:
    """(major, minor, patch) of a server version such as '9.5.4' or '8.19.21-SNAPSHOT'."""
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not an Elasticsearch version: {text!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def is_supported(version: Version) -> bool:
    return version[0] in SUPPORTED_MAJORS


def warn_if_unsupported(text: str) -> None:
    """Log a warning for a server major this project was not tested against."""
    if not is_supported(parse_version(text)):
        log.warning(
            "Elasticsearch %s is not a tested major (tested: %s); expect differences",
            text,
            ", ".join(f"{major}.x" for major in SUPPORTED_MAJORS),
        )


def index_settings_for(version: Version) -> dict[str, object]:
    """Index settings that keep an index of ours behaving alike on every supported version.

    9.2+ would keep `feature` out of `_source`: vector reuse, `GET /images/<id>`, search by id and the
    failed-row retry read it back, so it stays in (as on 8.x) at the cost of its JSON in `_source`.
    """
    if version >= VECTORS_LEFT_OUT_OF_SOURCE_FROM:
        return {"mapping": {"exclude_source_vectors": False}}
    return {}
