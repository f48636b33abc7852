"""The secure node's analysis shim (deploy/elasticsearch/analysis-shim), built once per source hash.

A tiny classic plugin registering the three analysis-common components that the .security index's
`email` analyzer needs and the integ-test distribution lacks (tokenizer uax_url_email, token filters
pattern_capture and unique), so the secure node can store native users, roles and API keys. It is
compiled against the distribution's own lib/*.jar with a JDK 17+ (javac and jar: the node's Java's,
else those on PATH, else openjdk-17-jdk-headless from apt). 9.x's jars are Java 21 classes: without a
javac 21+ the Eclipse compiler (org.eclipse.jdt:ecj:ECJ_VERSION, fetched with Maven) compiles it,
running on the 9.x node's Java.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from devstack.distribution import maven_get
from devstack.host import Apt, StackError, log, output, run
from devstack.settings import REPO, Settings

NAME = "imgsearch-analysis-shim"
SOURCE = REPO / "deploy" / "elasticsearch" / "analysis-shim"
TEMPLATE = "plugin-descriptor.properties.in"
JAVAC_VERSION = re.compile(r"^javac (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Shim:
    """A built shim: its source hash and the plugin folder (jar + descriptor)."""

    source_hash: str
    folder: Path


def java_release(settings: Settings) -> int:
    """The Java release of the distribution's own classes: 8.x is built for 17, 9.x for 21."""
    return 17 if settings.es_major < 9 else 21


def java_sources(source: Path) -> list[Path]:
    return sorted(source.glob("src/**/*.java"), key=lambda path: str(path.relative_to(source)).encode())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_hash(settings: Settings, source: Path = SOURCE) -> str:
    """sha256 over the version, the Java sources and the descriptor template, 16 hex digits; the same
    value earlier releases computed with sha256sum, so a node they started is recognised."""
    text = f"elasticsearch {settings.es_version} java {java_release(settings)}\n"
    for path in [*java_sources(source), source / TEMPLATE]:
        text += f"{sha256_file(path)}  {path.relative_to(source)}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def descriptor(template: str, settings: Settings, digest: str) -> str:
    replacements = {
        "@ES_VERSION@": settings.es_version,
        "@JAVA_VERSION@": str(java_release(settings)),
        "@SOURCE_HASH@": digest,
    }
    for placeholder, value in replacements.items():
        template = template.replace(placeholder, value)
    return template


def jdk_tool(name: str, java_home: Path) -> str | None:
    """The node's Java's javac/jar, else the one on PATH."""
    own = java_home / "bin" / name
    return str(own) if own.is_file() else shutil.which(name)


def jdk_tools(java_home: Path) -> tuple[str, str]:
    javac, jar = jdk_tool("javac", java_home), jdk_tool("jar", java_home)
    if javac is None or jar is None:
        Apt.install("openjdk-17-jdk-headless")
        javac, jar = jdk_tool("javac", java_home), jdk_tool("jar", java_home)
    if javac is None or jar is None:
        raise StackError("no javac/jar found (install a JDK 17+ or set ES_JAVA_HOME to one)")
    return javac, jar


def ensure_ecj(settings: Settings) -> Path:
    version = settings.ecj_version
    jar = settings.maven_repo_local / "org" / "eclipse" / "jdt" / "ecj" / version / f"ecj-{version}.jar"
    if not jar.is_file() or jar.stat().st_size == 0:
        maven_get(f"org.eclipse.jdt:ecj:{version}", settings.maven_repo_local, jar)
    return jar


def compile_command(settings: Settings, javac: str, java_home: Path, classes: Path) -> list[str]:
    """javac when it targets the distribution's release, else ecj on the node's Java."""
    release, lib = java_release(settings), settings.es_home / "lib"
    common = ["-nowarn", "-encoding", "UTF-8", "-d", str(classes)]
    match = JAVAC_VERSION.search(output([javac, "-version"]))
    if match and int(match.group(1)) >= release:
        log(f"building the analysis shim with {javac} (against {lib})")
        return [javac, "--release", str(release), "-cp", f"{lib}/*", *common]
    ecj = ensure_ecj(settings)
    log(f"building the analysis shim with ecj {settings.ecj_version} on {java_home} (against {lib})")
    classpath = ":".join(str(path) for path in sorted(lib.glob("*.jar")))
    return [str(java_home / "bin" / "java"), "-jar", str(ecj), f"-{release}", "-cp", classpath, *common]


def build_into(settings: Settings, java_home: Path, staging: Path, digest: str) -> None:
    javac, jar = jdk_tools(java_home)
    classes, plugin = staging / "classes", staging / "plugin"
    classes.mkdir(parents=True)
    plugin.mkdir()
    command = compile_command(settings, javac, java_home, classes)
    if run([*command, *map(str, java_sources(SOURCE))]).returncode != 0:
        raise StackError(f"compiling {SOURCE} failed")
    if run([jar, "--create", "--file", str(plugin / f"{NAME}.jar"), "-C", str(classes), "."]).returncode != 0:
        raise StackError("jar failed")
    text = descriptor((SOURCE / TEMPLATE).read_text(), settings, digest)
    (plugin / "plugin-descriptor.properties").write_text(text)


def build(settings: Settings, java_home: Path) -> Shim:
    """The shim of this version and source, from the cache ($STACK_HOME/analysis-shim-<version>/<hash>)
    or built now; older builds are removed."""
    if not (SOURCE / "src").is_dir():
        raise StackError(f"analysis shim sources not found in {SOURCE}")
    digest = source_hash(settings)
    cache = settings.stack_home / f"analysis-shim-{settings.es_version}"
    built = cache / digest
    if (built / f"{NAME}.jar").is_file() and (built / "plugin-descriptor.properties").is_file():
        return Shim(digest, built)
    staging = cache / f".build-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build_into(settings, java_home, staging, digest)
        shutil.rmtree(built, ignore_errors=True)
        (staging / "plugin").rename(built)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in cache.iterdir():
        if old.is_dir() and old.name != digest and not old.name.startswith("."):
            shutil.rmtree(old)
    return Shim(digest, built)
