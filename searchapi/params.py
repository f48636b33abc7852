"""Validation of request parameters (pure): every bad value becomes a 400 naming the parameter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from searchapi.errors import ApiError

MAX_SIZE = 100
MAX_FROM = 900
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_LENGTH = 1024
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {message}")


def int_parameter(params: Mapping[str, object], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise bad_parameter(name, f"must be an integer, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise bad_parameter(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_parameter(name, f"must be between {low} and {high}, got {value}")
    return value


def score_parameter(params: Mapping[str, object]) -> float | None:
    raw = params.get("min_score")
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise bad_parameter("min_score", f"must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise bad_parameter("min_score", f"must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise bad_parameter("min_score", f"must be between 0 and 1, got {value}")
    return value


def bool_parameter(params: Mapping[str, object], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise bad_parameter(name, f"must be true or false, got {raw!r}")


def filter_values(name: str, raw: object) -> list[str]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or len(values) > MAX_FILTER_VALUES:
        raise bad_parameter(f"filter.{name}", f"needs 1 to {MAX_FILTER_VALUES} values")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_FILTER_VALUE_LENGTH:
            raise bad_parameter(
                f"filter.{name}",
                f"values must be non-empty strings of at most {MAX_FILTER_VALUE_LENGTH} chars",
            )
    return values


def filter_parameter(params: Mapping[str, object], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """`filter`: an object (or its JSON text in a form/query field) of field -> value or values."""
    raw = params.get("filter")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise bad_parameter("filter", 'must be a JSON object like {"relation_id": ["p1"]}') from None
    if not isinstance(raw, dict):
        raise bad_parameter("filter", "must be an object of field -> value or list of values")
    unknown = sorted(name for name in raw if name not in allowed)
    if unknown:
        raise bad_parameter("filter", f"cannot filter on {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return {name: filter_values(name, value) for name, value in raw.items()}


@dataclass(frozen=True)
class SearchOptions:
    """Validated paging, cut-off, filter and collapse options of a similarity search."""

    size: int = 10
    from_: int = 0
    min_score: float | None = None
    collapse: bool = True
    filters: dict[str, list[str]] = field(default_factory=dict)


def search_options(params: Mapping[str, object], filter_fields: tuple[str, ...]) -> SearchOptions:
    return SearchOptions(
        size=int_parameter(params, "size", 10, 1, MAX_SIZE),
        from_=int_parameter(params, "from", 0, 0, MAX_FROM),
        min_score=score_parameter(params),
        collapse=bool_parameter(params, "collapse", True),
        filters=filter_parameter(params, filter_fields),
    )
