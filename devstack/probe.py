"""HTTP probes of a node (urllib: no client library, nothing imported until a probe runs)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """Where a node answers, and how to talk to it (the secure node: CA file and basic auth)."""

    url: str
    cafile: Path | None = None
    username: str | None = None
    password: str | None = None


def fetch(endpoint: Endpoint, path: str, timeout: float) -> tuple[int, str] | None:
    """(status, body) of a GET, also for 4xx/5xx; None when nothing answered in time."""
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(endpoint.url + path)
    if endpoint.username is not None:
        token = base64.b64encode(f"{endpoint.username}:{endpoint.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(endpoint.cafile)) if endpoint.cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def get_json(endpoint: Endpoint, path: str, timeout: float) -> Any:
    """The JSON body of a 2xx answer, else None."""
    answer = fetch(endpoint, path, timeout)
    if answer is None or not 200 <= answer[0] < 300:
        return None
    try:
        return json.loads(answer[1])
    except ValueError:
        return None


def answers(endpoint: Endpoint) -> bool:
    """The node answers the cluster health API. The integ-test distribution lacks the rest-root module:
    `GET /` (and HEAD /, the client's info()/ping()) answer 405, so health is the probe."""
    return get_json(endpoint, "/_cluster/health?timeout=1s", timeout=3) is not None


def version(endpoint: Endpoint, timeout: float = 3) -> str | None:
    """The version of the node answering there, None when it cannot be read in time."""
    body = get_json(endpoint, "/_nodes/_local?filter_path=nodes.*.version", timeout)
    nodes = body.get("nodes", {}) if isinstance(body, dict) else {}
    return next((node.get("version") for node in nodes.values()), None)


def cluster_name(endpoint: Endpoint, timeout: float = 5) -> str | None:
    """The name of the cluster the node answering there belongs to (also before it has a master)."""
    body = get_json(endpoint, "/_nodes/_local?filter_path=cluster_name", timeout)
    return body.get("cluster_name") if isinstance(body, dict) else None


def health(endpoint: Endpoint, timeout: float = 5) -> str | None:
    body = get_json(endpoint, "/_cluster/health", timeout)
    return body.get("status") if isinstance(body, dict) else None
