"""Locate a row's photo (URL or file) and download it with a timeout, a byte cap and retries."""

from __future__ import annotations

import os
import time
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.util import Retry, Timeout

from indexer.config import FetchConfig
from indexer.errors import RowFailure, RowStatus

CHUNK_BYTES = 64 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_REDIRECTS = 5


def download_failure(reason: str, message: str) -> RowFailure:
    return RowFailure(RowStatus.DOWNLOAD_FAILED, reason, message)


def is_http_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def resolve_photo(photo: str, base_url: str) -> str:
    """Turn a row's `photo` into an http(s) URL or an absolute file path."""
    photo = photo.strip()
    if not photo:
        raise RowFailure(RowStatus.INVALID_ROW, "empty_photo", "the photo column is empty")
    if is_http_url(photo):
        return photo
    if photo.startswith("file://"):
        return urlsplit(photo).path
    if os.path.isabs(photo) and not base_url:
        return photo
    if not base_url:
        raise RowFailure(
            RowStatus.INVALID_ROW, "no_base_url", f"relative photo {photo!r} but IMAGE_BASE_URL is not set"
        )
    if is_http_url(base_url):
        return urljoin(base_url.rstrip("/") + "/", photo.lstrip("/"))
    return _path_under(base_url.removeprefix("file://"), photo)


def _path_under(base_dir: str, photo: str) -> str:
    """Join a relative photo path to a base folder, refusing to escape it with '..'."""
    base = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(base, photo.lstrip("/")))
    if os.path.commonpath([base, path]) != base:
        raise RowFailure(RowStatus.INVALID_ROW, "path_escape", f"photo {photo!r} leaves IMAGE_BASE_URL")
    return path


def read_capped(response: urllib3.BaseHTTPResponse, max_bytes: int, deadline: float) -> bytes:
    """Read a streamed body, failing past `max_bytes` or past the overall deadline."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise download_failure("too_large", f"Content-Length {declared} exceeds the cap of {max_bytes} bytes")
    chunks: list[bytes] = []
    received = 0
    for chunk in response.stream(CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise download_failure("too_large", f"body exceeds the cap of {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise download_failure("timeout", "download took longer than the timeout")
        chunks.append(chunk)
    return b"".join(chunks)


class ImageFetcher:
    """Thread-safe downloader; one connection pool shared by all worker threads."""

    def __init__(self, config: FetchConfig, pool_size: int = 8) -> None:
        self.config = config
        retry = Retry(
            total=None,
            connect=config.retries,
            read=config.retries,
            status=config.retries,
            other=config.retries,
            redirect=MAX_REDIRECTS,
            backoff_factor=0.5,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        self._http = urllib3.PoolManager(
            num_pools=16,
            maxsize=pool_size,
            timeout=Timeout(connect=config.timeout, read=config.timeout),
            retries=retry,
            headers={"User-Agent": "imgsearch-indexer/1"},
        )

    def fetch(self, location: str) -> bytes:
        """Bytes of the image at a URL or path; raises RowFailure(download_failed)."""
        if is_http_url(location):
            return self._fetch_http(location)
        return self._read_file(location)

    def _fetch_http(self, url: str) -> bytes:
        deadline = time.monotonic() + self.config.timeout * (self.config.retries + 2)
        try:
            response = self._http.request("GET", url, preload_content=False, redirect=True)
        except urllib3.exceptions.MaxRetryError as exc:
            raise download_failure(_network_reason(exc.reason), f"GET {url} failed: {exc.reason}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise download_failure(_network_reason(exc), f"GET {url} failed: {exc}") from None
        try:
            if response.status != 200:
                raise download_failure(
                    f"http_{response.status}", f"GET {url} answered HTTP {response.status}"
                )
            return read_capped(response, self.config.max_bytes, deadline)
        except urllib3.exceptions.HTTPError as exc:
            raise download_failure(_network_reason(exc), f"reading {url} failed: {exc}") from None
        finally:
            response.release_conn()

    def _read_file(self, path: str) -> bytes:
        try:
            size = os.path.getsize(path)
            if size > self.config.max_bytes:
                raise download_failure(
                    "too_large", f"{path} is {size} bytes, over the cap of {self.config.max_bytes}"
                )
            with open(path, "rb") as handle:
                return handle.read(self.config.max_bytes + 1)
        except FileNotFoundError:
            raise download_failure("not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise download_failure("io_error", f"cannot read {path}: {exc}") from None


def _network_reason(exc: BaseException | None) -> str:
    """A short reason code for a urllib3 network error."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # check first: it subclasses timeout
        return "connection_refused"
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, urllib3.exceptions.ResponseError):
        return "too_many_retries"
    return "network_error"
