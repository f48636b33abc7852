"""The secure node's TLS files: a self-signed CA and an HTTP certificate for localhost, made by openssl."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
from pathlib import Path

from devstack.host import StackError, log, need_command, run

FILES = ("ca.key", "ca.crt", "http.key", "http.crt", "http-leaf.crt")
DAY = 86400
LEAF_EXTENSIONS = (
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
    "basicConstraints=CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\n"
)


def valid_for_a_day(openssl: str, certificate: Path) -> bool:
    command = [openssl, "x509", "-checkend", str(DAY), "-noout", "-in", str(certificate)]
    return run(command, capture_output=True).returncode == 0


def current(openssl: str, certs: Path) -> bool:
    """Every file is there and neither certificate expires within a day."""
    if not all((certs / name).is_file() and (certs / name).stat().st_size for name in FILES[:4]):
        return False
    return valid_for_a_day(openssl, certs / "http.crt") and valid_for_a_day(openssl, certs / "ca.crt")


def openssl_steps(openssl: str, folder: Path) -> list[list[str]]:
    """CA, leaf key and request, leaf signed by the CA (random serial) with the extensions file."""
    f = {name: str(folder / name) for name in ("ca.key", "ca.crt", "http.key", "http.csr", "http.ext")}
    ca = ["-keyout", f["ca.key"], "-out", f["ca.crt"], "-subj", "/CN=imgsearch local test CA"]
    ca += ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    new_key = ["-newkey", "rsa:2048", "-nodes", "-sha256"]
    serial, leaf = "0x" + os.urandom(16).hex(), str(folder / "http-leaf.crt")
    sign = ["-CA", f["ca.crt"], "-CAkey", f["ca.key"], "-set_serial", serial, "-extfile", f["http.ext"]]
    return [
        [openssl, "req", "-x509", *new_key, "-days", "3650", *ca],
        [openssl, "req", *new_key, "-keyout", f["http.key"], "-out", f["http.csr"], "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-sha256", "-days", "825", "-in", f["http.csr"], *sign, "-out", leaf],
    ]


def ensure_certs(certs: Path) -> None:
    """A CA and an HTTP certificate for localhost/127.0.0.1 signed by it; regenerated when missing or
    expiring within a day. http.crt carries the chain (leaf, then CA) so clients may pin either."""
    openssl = need_command("openssl", "openssl")
    if current(openssl, certs):
        return
    log(f"generating a self-signed CA and an HTTP certificate in {certs}")
    staging = certs / f".gen-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        (staging / "http.ext").write_text(LEAF_EXTENSIONS)
        for step in openssl_steps(openssl, staging):
            if run(step, capture_output=True).returncode != 0:
                raise StackError(f"openssl failed: {' '.join(step[:3])}")
        chain = (staging / "http-leaf.crt").read_text() + (staging / "ca.crt").read_text()
        (staging / "http.crt").write_text(chain)
        for name in FILES:
            (staging / name).chmod(0o600 if name.endswith(".key") else 0o644)
            (staging / name).replace(certs / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fingerprint(pem_file: Path) -> str:
    """SHA-256 of the first certificate in a PEM file: lowercase hex, no colons."""
    text = pem_file.read_text()
    end = "-----END CERTIFICATE-----"
    first = text[: text.index(end) + len(end)] if end in text else text
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first.strip() + "\n")).hexdigest()
