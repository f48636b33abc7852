"""Locate a row's photo (URL or file) and download it with a timeout, a byte cap and retries."""

from __future__ import annotations

import os
import time
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.util import Retry, Timeout

from imgsearch.download import DownloadFailure, download_failure, read_capped
from imgsearch.errors import RowFailure, RowStatus
from imgsearch.retry import Backoff, download_retrying, parse_retry_after
from indexer.config import FetchConfig

MAX_REDIRECTS = 5
BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 8.0


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


class ImageFetcher:
    """Thread-safe downloader; one connection pool shared by all worker threads.

    Every HTTP download has one deadline (`timeout · (retries + 2)`) covering all its attempts.
    Transient failures (timeouts, resets, refused connections, 408/429/5xx), in the headers or in the
    body, are retried up to `retries` times with exponential backoff; a Retry-After header is honoured
    only while it still ends before the deadline, so a server can never park a worker for long.
    """

    def __init__(self, config: FetchConfig, pool_size: int = 8, backoff: float = BACKOFF_SECONDS) -> None:
        self.config = config
        self.backoff = Backoff(backoff, MAX_BACKOFF_SECONDS)
        # urllib3 only follows redirects; retrying is ours (it covers the body too, and caps waits).
        retry = Retry(
            total=None,
            connect=0,
            read=0,
            status=0,
            other=0,
            redirect=MAX_REDIRECTS,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=False,
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
        retrying = download_retrying(self.config.retries, self.backoff, deadline)
        try:
            return retrying(self._attempt, url, deadline)
        except DownloadFailure as failure:
            explain_final(failure, retrying.statistics["attempt_number"], self.config.retries, deadline)
            raise

    def _attempt(self, url: str, deadline: float) -> bytes:
        """One GET (redirects followed) and its capped body; raises DownloadFailure."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise download_failure("timeout", f"GET {url}: no time left before the download deadline")
        seconds = round(min(self.config.timeout, remaining), 3)
        try:
            response = self._http.request(
                "GET",
                url,
                preload_content=False,
                redirect=True,
                timeout=Timeout(connect=seconds, read=seconds),
            )
        except urllib3.exceptions.MaxRetryError as exc:
            raise network_failure(exc.reason or exc, f"GET {url} failed") from None
        except urllib3.exceptions.HTTPError as exc:
            raise network_failure(exc, f"GET {url} failed") from None
        try:
            if response.status != 200:
                raise status_failure(url, response)
            body = read_capped(response, self.config.max_bytes, deadline)
        except urllib3.exceptions.HTTPError as exc:
            response.close()
            raise network_failure(exc, f"reading {url} failed") from None
        except DownloadFailure:
            response.close()
            raise
        finally:
            response.release_conn()
        return body

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


def explain_final(failure: DownloadFailure, attempts: int, retries: int, deadline: float) -> None:
    """Say in the row's message why the download stopped: a Retry-After past the deadline, the attempts."""
    wanted_more = failure.transient and attempts <= retries
    if wanted_more and failure.retry_after and time.monotonic() + failure.retry_after >= deadline:
        failure.message += f"; Retry-After {failure.retry_after:g} s ends past the download deadline"
    if attempts > 1:
        failure.message += f" (after {attempts} attempts)"


def status_failure(url: str, response: urllib3.BaseHTTPResponse) -> DownloadFailure:
    """A non-200 answer; 429 and 503 may carry a Retry-After."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return download_failure(
        f"http_{response.status}", f"GET {url} answered HTTP {response.status}", retry_after
    )


def network_failure(exc: BaseException, context: str) -> DownloadFailure:
    return download_failure(network_reason(exc), f"{context}: {exc}")


def network_reason(exc: BaseException) -> str:
    """A short, stable reason code for a urllib3 network error."""
    errors = urllib3.exceptions
    if isinstance(exc, errors.NameResolutionError):  # these subclass NewConnectionError, then timeout
        return "dns_error"
    if isinstance(exc, errors.NewConnectionError):
        return "connection_refused" if _caused_by(exc, ConnectionRefusedError) else "connection_failed"
    if isinstance(exc, (errors.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, errors.SSLError):
        return "tls_error"
    if isinstance(exc, errors.ProtocolError):
        return "connection_reset" if _caused_by(exc, ConnectionResetError) else "connection_closed"
    if isinstance(exc, errors.ResponseError) and "redirect" in str(exc):
        return "too_many_redirects"
    return "network_error"


def _caused_by(exc: BaseException, kind: type[BaseException], depth: int = 4) -> bool:
    """Whether `kind` is `exc` or hides in its args / cause / context (urllib3 wraps socket errors)."""
    if isinstance(exc, kind):
        return True
    if depth == 0:
        return False
    inner = [arg for arg in exc.args if isinstance(arg, BaseException)]
    inner += [link for link in (exc.__cause__, exc.__context__) if link is not None]
    return any(_caused_by(link, kind, depth - 1) for link in inner)
