"""Typed readers for environment variables that fail with the variable's name."""

from __future__ import annotations

import os
from collections.abc import Mapping


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    """Return a non-empty string variable, or the default, or raise naming the variable."""
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is required but not set (see env.example)")
    return default


def env_int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    """Return an integer variable within [minimum, maximum]."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ConfigError(f"{name} must be >= {minimum}{upper}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """Return a float variable >= minimum."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """Return a variable restricted to a fixed set of values."""
    value = env_str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def env_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Return a comma-separated variable as a tuple of stripped, non-empty items."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def environ() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ
