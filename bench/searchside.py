"""Search-side helpers of the benches: the API's two requests, warm-up, and who else used Elasticsearch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import urllib3

from bench.corpus import write_photos
from bench.harness import CpuMeter
from bench.loadgen import HttpRequest, KeepAliveClient, timed_http
from tests.support.apiserver import ApiServer

QUERY_SIZE = ((600, 450), (680, 510))  # query photos: "640x480-ish" JPEGs
SERVER = "gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()'"


def query_jpegs(folder: Path, count: int, seed: int) -> list[bytes]:
    """`count` upload JPEGs of ~640x480 (the photo seed + 7)."""
    return [path.read_bytes() for path in write_photos(folder, count, seed + 7, QUERY_SIZE)]


def upload_request(jpeg: bytes, size: int) -> HttpRequest:
    body, content_type = urllib3.encode_multipart_formdata({"image": ("query.jpg", jpeg, "image/jpeg")})
    return HttpRequest("upload", "POST", f"/search?size={size}", body, {"Content-Type": content_type})


def id_request(image_id: str, size: int) -> HttpRequest:
    return HttpRequest("by id", "GET", f"/images/{image_id}/similar?size={size}")


def warm_api(server: ApiServer, jpeg: bytes, image_id: str, size: int) -> None:
    """One search by upload and one by id before anything is timed; both must answer 200."""
    client = KeepAliveClient(server.host, server.port)
    try:
        for request in (upload_request(jpeg, size), id_request(image_id, size)):
            outcome = timed_http(client, request)
            if outcome.failed:
                raise RuntimeError(f"warm-up {request.kind} failed: {outcome}\n{server.log_tail()}")
    finally:
        client.close()


def elasticsearch_pids(es) -> list[int]:
    """The local Elasticsearch process, for CPU accounting (none when it runs elsewhere)."""
    nodes = es.nodes.info(node_id="_local", metric="process", filter_path="nodes.*.process.id").body
    pid = next(iter(nodes.get("nodes", {}).values()), {}).get("process", {}).get("id")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [int(pid)] if b"elasticsearch" in handle.read() else []
    except (OSError, TypeError, ValueError):
        return []


def elasticsearch_ops(es, mine: str) -> dict[str, int]:
    """Searches + index/delete operations Elasticsearch has served, per index not named `mine`*."""
    stats = es.indices.stats(metric="search,indexing", filter_path="indices.*.total").body
    totals = {
        name: index["total"] for name, index in stats.get("indices", {}).items() if not name.startswith(mine)
    }
    return {
        name: total["search"]["query_total"]
        + total["indexing"]["index_total"]
        + total["indexing"]["delete_total"]
        for name, total in totals.items()
    }


class PhaseMeter(CpuMeter):
    """Cores per process group plus the requests other users sent Elasticsearch (`other_es_ops`)."""

    def __init__(self, es, mine: str, groups: dict[str, list[int]]) -> None:
        super().__init__(groups)
        self.es, self.mine = es, mine

    def __enter__(self) -> PhaseMeter:
        self.ops = elasticsearch_ops(self.es, self.mine)
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        # operations served meanwhile: indices created meanwhile count whole, deleted ones not at all
        after = elasticsearch_ops(self.es, self.mine).items()
        self.other_es_ops = sum(max(count - self.ops.get(name, 0), 0) for name, count in after)

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"other_es_ops": self.other_es_ops}
