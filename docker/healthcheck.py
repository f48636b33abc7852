"""Container HEALTHCHECK: GET /health on SEARCH_BIND's port; exit 0 when it answers 200 {"status": "ok"}."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def health_url(bind: str) -> str:
    """http://127.0.0.1:<port>/health for a gunicorn bind such as 0.0.0.0:8000, [::]:8000 or :8000."""
    if bind.startswith(("unix:", "fd://")):
        raise ValueError(f"SEARCH_BIND={bind} is not a TCP address; check the socket another way")
    port = bind.rsplit(":", 1)[-1] if ":" in bind else "8000"
    if not port.isdigit():
        raise ValueError(f"SEARCH_BIND={bind} has no numeric port")
    return f"http://127.0.0.1:{port}/health"


def check(url: str, timeout: float = 4.0) -> str | None:
    """None when healthy, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read(4096) or b"{}")
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if body.get("status") != "ok":
        return f"{url} answered {body!r}"
    return None


def main() -> int:
    try:
        url = health_url(os.environ.get("SEARCH_BIND", "0.0.0.0:8000").split(",")[0].strip())
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    problem = check(url)
    if problem:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
