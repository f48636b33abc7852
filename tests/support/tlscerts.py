"""A throwaway CA and a server certificate for one host name, made with the openssl command line."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA to trust (e.g. via SSL_CERT_FILE) and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


CA_ARGS = "-x509 -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem"
CA_EXTENSIONS = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
EC_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
SIGN_ARGS = "-req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out server.pem"
SERVER_EXTENSIONS = (
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature",
    "extendedKeyUsage=serverAuth",
)


def make_tls_files(folder: Path, hostname: str) -> TlsFiles:
    """A CA (ca.pem) and a certificate for `hostname` signed by it (server.pem, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_extensions = [arg for extension in CA_EXTENSIONS for arg in ("-addext", extension)]
    openssl("req", *CA_ARGS.split(), *EC_KEY.split(), *ca_extensions, cwd=folder)
    csr = f"-new -keyout server.key -out server.csr -subj /CN={hostname}"
    openssl("req", *csr.split(), *EC_KEY.split(), cwd=folder)
    (folder / "server.ext").write_text("\n".join((f"subjectAltName=DNS:{hostname}", *SERVER_EXTENSIONS, "")))
    openssl("x509", *SIGN_ARGS.split(), "-extfile", "server.ext", cwd=folder)
    return TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
