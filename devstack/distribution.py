"""Elasticsearch's integ-test zip: fetched by Maven coordinates, checked against its checksum, unpacked.

The checksum. `mvn dependency:get` checks the checksums it downloads, but only warns on a mismatch under
Maven's default checksum policy, and says nothing about a zip already in the local repository. So the
zip is checked here, before it is unpacked, against the strongest published checksum found: a
`.sha512`/`.sha256`/`.sha1` file next to it in the local repository (Maven's resolver stores the `.sha1`
it downloaded there, so this works offline from the cache), else one that Maven fetches by the zip's
coordinates with the checksum's extension (`...:zip.sha512`) into the same place. A mismatch stops
the stack. Where no checksum is published or reachable (offline with a zip that came without one),
the stack warns and relies on the CRC-32 of every zip member, which the unpacking checks: a truncated
or corrupted download still fails, a substituted one would not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from devstack.host import Apt, StackError, log, run
from devstack.settings import Settings

ALGORITHMS = ("sha512", "sha256", "sha1")
GROUP_PATH = "org/elasticsearch/distribution/integ-test-zip/elasticsearch"
_reported: set[Path] = set()


def artifact(version: str) -> str:
    return f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


def zip_path(settings: Settings) -> Path:
    version = settings.es_version
    return settings.maven_repo_local / GROUP_PATH / version / f"elasticsearch-{version}.zip"


def maven_get(coordinates: str, repository: Path, expected: Path) -> None:
    """`mvn dependency:get` of one artifact into the local repository (Maven from apt if missing)."""
    if shutil.which("mvn") is None:
        Apt.install("maven")
    log(f"fetching {coordinates} with Maven")
    command = ["mvn", "-q", "-B", "dependency:get", f"-Dartifact={coordinates}", "-Dtransitive=false"]
    run([*command, f"-Dmaven.repo.local={repository}"])
    if not expected.is_file() or expected.stat().st_size == 0:
        raise StackError(f"Maven did not produce {expected}")


def checksum_text(text: str) -> str | None:
    """The hex digest of a checksum file ('<hex>' or '<hex>  <file name>')."""
    words = text.split()
    digest = words[0].lower() if words else ""
    return digest if digest and all(c in "0123456789abcdef" for c in digest) else None


def fetch_remote_checksum(coordinates: str, algorithm: str, repository: Path) -> bool:
    """Ask Maven for the `<algorithm>` checksum file of an artifact (quietly; False when it has none)."""
    if shutil.which("mvn") is None:
        return False
    command = ["mvn", "-q", "-B", "dependency:get", f"-Dartifact={coordinates}.{algorithm}"]
    done = run([*command, "-Dtransitive=false", f"-Dmaven.repo.local={repository}"], capture_output=True)
    return done.returncode == 0


def published_checksum(zip_file: Path, coordinates: str, repository: Path) -> tuple[str, str] | None:
    """(algorithm, hex digest): from a checksum file next to the zip, else one Maven fetches there."""
    for fetch in (False, True):
        for algorithm in ALGORITHMS:
            local = zip_file.with_name(f"{zip_file.name}.{algorithm}")
            if fetch and not fetch_remote_checksum(coordinates, algorithm, repository):
                continue
            if local.is_file() and (digest := checksum_text(local.read_text(errors="replace"))):
                return algorithm, digest
    return None


def file_digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def verify(zip_file: Path, coordinates: str, repository: Path) -> None:
    """Stop on a checksum mismatch; warn where no checksum could be found."""
    published = published_checksum(zip_file, coordinates, repository)
    if published is None:
        log(f"WARNING: no published checksum found for {zip_file} (offline?); relying on its CRC-32s")
        return
    algorithm, expected = published
    actual = file_digest(zip_file, algorithm)
    if actual != expected:
        raise StackError(
            f"{zip_file} has {algorithm} {actual}, but {expected} is published: "
            "delete it (and its checksum files) to fetch it again"
        )
    log(f"{zip_file.name}: {algorithm} checksum verified")


def extract(zip_file: Path, target: Path) -> None:
    """Unpack with each member's Unix mode (zipfile drops them); every member's CRC-32 is checked."""
    with zipfile.ZipFile(zip_file) as archive:
        for member in archive.infolist():
            path = Path(archive.extract(member, target))
            mode = member.external_attr >> 16 & 0o777
            if mode:
                os.chmod(path, mode)


def ensure_unpacked(settings: Settings) -> Path:
    """The unpacked distribution of ES_VERSION (fetched, verified and unpacked when missing)."""
    home = settings.es_home
    if (home / "bin" / "elasticsearch").is_file():
        if home not in _reported:
            log(f"reusing unpacked Elasticsearch {settings.es_version} in {home}")
        _reported.add(home)
        return home
    zip_file = zip_path(settings)
    if zip_file.is_file():
        log(f"reusing cached zip {zip_file}")
    else:
        maven_get(artifact(settings.es_version), settings.maven_repo_local, zip_file)
    verify(zip_file, artifact(settings.es_version), settings.maven_repo_local)
    staging = settings.stack_home / f".unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    log(f"unpacking into {home}")
    try:
        extract(zip_file, staging)
    except (zipfile.BadZipFile, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise StackError(f"cannot unpack {zip_file}: {error} (delete it to fetch it again)") from error
    unpacked = staging / f"elasticsearch-{settings.es_version}"
    if not (unpacked / "bin" / "elasticsearch").is_file():
        raise StackError(f"unexpected zip layout in {zip_file}")
    unpacked.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    _reported.add(home)
    return home
