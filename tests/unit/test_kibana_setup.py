"""python -m kibana.setup against a real local HTTP server that implements Kibana's import endpoint contract.

The contract, from Kibana's saved objects import API documentation
(https://www.elastic.co/guide/en/kibana/current/saved-objects-api-import.html) and its route
(src/core/.../routes/import.ts: `accepts: 'multipart/form-data'`, body field `file`, `.ndjson` file
extension or 400 "Invalid file extension"): POST [/s/<space_id>]/api/saved_objects/_import with the
query parameter overwrite=true, the header kbn-xsrf (else 400), credentials (else 401), a multipart
body whose `file` part holds the NDJSON; the answer is 200 {success, successCount, successResults,
errors}, where each error names the object and an error type (conflict, missing_references, ...).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kibana import setup

REPO = Path(__file__).resolve().parents[2]
OBJECTS = len(setup.load_objects((REPO / "kibana" / "saved_objects.ndjson").read_text()))
BASIC = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
API_KEY = "ApiKey aWQ6a2V5"


@dataclass
class FakeKibana:
    """What the server accepts and answers; every request it received."""

    accepted_auth: set[str] = field(default_factory=lambda: {BASIC, API_KEY})
    spaces: set[str] = field(default_factory=lambda: {"default", "ops"})
    answers: list[tuple[int, Any]] = field(default_factory=list)  # queued (status, body) overrides
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def boom(status: int, error: str, message: str) -> tuple[int, dict[str, Any]]:
    """Kibana's (hapi Boom) error body."""
    return status, {"statusCode": status, "error": error, "message": message}


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError("not multipart")
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


def handle_import(kibana: FakeKibana, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
    """The documented contract of POST [/s/<space>]/api/saved_objects/_import."""
    url = urlsplit(path)
    parts = url.path.split("/")
    space = "default"
    if url.path.startswith("/s/"):
        space, rest = parts[2], "/" + "/".join(parts[3:])
    else:
        rest = url.path
    if rest != "/api/saved_objects/_import":
        return boom(404, "Not Found", "Not Found")
    if method != "POST":
        return boom(404, "Not Found", "Not Found")
    if headers.get("Authorization") not in kibana.accepted_auth:
        return boom(401, "Unauthorized", "[security_exception]: unable to authenticate user")
    if space not in kibana.spaces:
        return boom(404, "Not Found", f"Saved object [space/{space}] not found")
    if "kbn-xsrf" not in {key.lower() for key in headers}:
        return boom(400, "Bad Request", "Request must contain a kbn-xsrf header.")
    query = parse_qs(url.query)
    if query.get("overwrite") != ["true"] or "createNewCopies" in query:
        return boom(400, "Bad Request", f"unexpected query {url.query}")
    content_type = headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data; boundary="):
        return boom(415, "Unsupported Media Type", "Unsupported Media Type")
    try:
        fields = parse_multipart(content_type, body)
    except ValueError as exc:
        return boom(400, "Bad Request", str(exc))
    if set(fields) != {"file"}:
        return boom(
            400,
            "Bad Request",
            f"[request body.file]: expected value of type [Stream] but got {sorted(fields)}",
        )
    filename, payload = fields["file"]
    if not filename or not filename.endswith(".ndjson"):
        return boom(400, "Bad Request", f"Invalid file extension {Path(filename or '').suffix}")
    objects = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
    kibana.requests.append({"space": space, "auth": headers.get("Authorization"), "objects": objects})
    if kibana.answers:
        return kibana.answers.pop(0)
    results = [
        {"id": o["id"], "type": o["type"], "meta": {"title": o["attributes"]["title"]}} for o in objects
    ]
    return 200, {"success": True, "successCount": len(objects), "successResults": results, "warnings": []}


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    state = FakeKibana()

    class Handler(BaseHTTPRequestHandler):
        def respond(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer = handle_import(state, method, self.path, self.headers, body)
            raw = json.dumps(answer).encode() if not isinstance(answer, bytes) else answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            self.respond("POST")

        def do_GET(self) -> None:
            self.respond("GET")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


BASIC_ENV = {"KIBANA_USERNAME": "elastic", "KIBANA_PASSWORD": "s3cret"}


def run(kibana: FakeKibana, *args: str, env: dict[str, str] | None = None) -> int:
    return setup.main(["--kibana-url", kibana.url, *args], env=BASIC_ENV if env is None else env)


# --- the fake server enforces the contract (otherwise the tests below would prove little) ------------


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_fake_kibana_rejects_requests_outside_the_contract(kibana):
    body, content_type = setup.multipart_file(
        "file", "x.ndjson", b'{"type":"a","id":"b","attributes":{"title":"t"}}\n'
    )
    url = f"{kibana.url}/api/saved_objects/_import?overwrite=true"
    good = {"kbn-xsrf": "true", "Content-Type": content_type, "Authorization": BASIC}
    assert raw_post(url, body, good)[0] == 200
    no_xsrf = {k: v for k, v in good.items() if k != "kbn-xsrf"}
    assert raw_post(url, body, no_xsrf) == boom(400, "Bad Request", "Request must contain a kbn-xsrf header.")
    assert raw_post(url, body, {**good, "Authorization": "Basic eDp5"})[0] == 401
    assert raw_post(url.replace("?overwrite=true", ""), body, good)[0] == 400
    wrong_field, ct = setup.multipart_file("upload", "x.ndjson", b"{}\n")
    assert raw_post(url, wrong_field, {**good, "Content-Type": ct})[0] == 400
    json_file, ct = setup.multipart_file("file", "x.json", b"{}\n")
    assert (
        raw_post(url, json_file, {**good, "Content-Type": ct})[1]["message"] == "Invalid file extension .json"
    )
    assert raw_post(url.replace("_import", "_export"), body, good)[0] == 404


# --- the script ----------------------------------------------------------------------------------------


def test_imports_every_object_for_the_alias_with_basic_auth(kibana, capsys):
    assert run(kibana, "--alias", "shop-img") == 0
    (request,) = kibana.requests
    assert request["auth"] == BASIC and request["space"] == "default"
    assert len(request["objects"]) == OBJECTS
    titles = {o["attributes"]["title"] for o in request["objects"] if o["type"] == "index-pattern"}
    assert titles == {"shop-img", "shop-img-runs"}
    out = capsys.readouterr().out
    assert f"imported {OBJECTS} saved objects" in out
    assert f"{kibana.url}/app/dashboards#/view/imgsearch-shop-img-dashboard-runs" in out


def test_alias_comes_from_es_index_and_space_from_kibana_space(kibana, capsys):
    env = {**BASIC_ENV, "ES_INDEX": "catalog", "KIBANA_SPACE": "ops"}
    assert setup.main(["--kibana-url", kibana.url], env=env) == 0
    (request,) = kibana.requests
    assert request["space"] == "ops"
    assert any(o["attributes"]["title"] == "catalog-runs" for o in request["objects"])
    assert (
        f"{kibana.url}/s/ops/app/dashboards#/view/imgsearch-catalog-dashboard-runs" in capsys.readouterr().out
    )


def test_api_key_authentication(kibana):
    assert run(kibana, env={"KIBANA_API_KEY": "aWQ6a2V5"}) == 0
    assert kibana.requests[0]["auth"] == API_KEY


def test_wrong_credentials_fail_with_a_clear_message(kibana, capsys):
    assert run(kibana, env={"KIBANA_USERNAME": "elastic", "KIBANA_PASSWORD": "wrong"}) == 1
    err = capsys.readouterr().err
    assert "rejected the credentials (HTTP 401: [security_exception]: unable to authenticate user)" in err
    assert "KIBANA_USERNAME/KIBANA_PASSWORD or KIBANA_API_KEY" in err


def test_no_credentials_against_a_secured_kibana(kibana, capsys):
    assert run(kibana, env={}) == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_unknown_space(kibana, capsys):
    assert run(kibana, "--space", "nope") == 1
    assert "does the space 'nope' exist?" in capsys.readouterr().err


def test_import_errors_are_listed_object_by_object(kibana, capsys):
    kibana.answers.append(
        (
            200,
            {
                "success": False,
                "successCount": OBJECTS - 2,
                "errors": [
                    {
                        "id": "imgsearch-images-lens-failure-reasons",
                        "type": "lens",
                        "title": "[images] Failure reasons (live index)",
                        "error": {
                            "type": "missing_references",
                            "references": [{"type": "index-pattern", "id": "imgsearch-images-dv-images"}],
                        },
                        "meta": {"icon": "lensApp", "title": "[images] Failure reasons (live index)"},
                    },
                    {
                        "id": "imgsearch-images-dashboard-runs",
                        "type": "dashboard",
                        "error": {"type": "unknown", "message": "document parsing failed", "statusCode": 400},
                        "meta": {"title": "[images] Indexing runs"},
                    },
                ],
            },
        )
    )
    assert run(kibana) == 1
    err = capsys.readouterr().err
    assert f"imported {OBJECTS - 2} of {OBJECTS} objects; errors:" in err
    assert (
        "lens imgsearch-images-lens-failure-reasons ([images] Failure reasons (live index)): "
        "missing_references: index-pattern imgsearch-images-dv-images"
    ) in err
    assert (
        "dashboard imgsearch-images-dashboard-runs ([images] Indexing runs): unknown: document parsing failed"
        in err
    )


def test_success_with_fewer_objects_than_sent_is_a_failure(kibana, capsys):
    kibana.answers.append((200, {"success": True, "successCount": 3}))
    assert run(kibana) == 1
    assert f"imported 3 of {OBJECTS} objects" in capsys.readouterr().err


def test_other_http_errors_and_bodies_without_success(kibana, capsys):
    kibana.answers.append(
        boom(413, "Request Entity Too Large", "Payload content length greater than maximum")
    )
    assert run(kibana) == 1
    assert "answered HTTP 413: Payload content length greater than maximum" in capsys.readouterr().err
    kibana.answers.append((200, {"unexpected": True}))
    assert run(kibana) == 1
    assert "without a `success` field" in capsys.readouterr().err
    kibana.answers.append(boom(403, "Forbidden", "Unable to bulk_create index-pattern"))
    assert run(kibana) == 1
    assert "Saved Objects Management (all)" in capsys.readouterr().err


def test_waits_for_a_starting_kibana(kibana, monkeypatch):
    kibana.answers.append(boom(503, "Service Unavailable", "Kibana server is not ready yet"))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert run(kibana, "--wait", "30") == 0
    assert len(kibana.requests) == 2


def test_without_wait_a_starting_kibana_is_an_error(kibana, capsys):
    kibana.answers.append(boom(503, "Service Unavailable", "Kibana server is not ready yet"))
    assert run(kibana) == 1
    assert "answered HTTP 503: Kibana server is not ready yet" in capsys.readouterr().err


def test_unreachable_kibana(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert setup.main(["--kibana-url", f"http://127.0.0.1:{port}"], env=BASIC_ENV) == 1
    assert f"cannot reach Kibana at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_print_sends_nothing(kibana, capsys):
    assert run(kibana, "--print", "--alias", "shop") == 0
    assert kibana.requests == []
    printed = setup.load_objects(capsys.readouterr().out)
    assert len(printed) == OBJECTS and printed[0]["id"].startswith("imgsearch-shop-")


def test_configuration_errors_exit_2(kibana, capsys, tmp_path):
    both = {**BASIC_ENV, "KIBANA_API_KEY": "aWQ6a2V5"}
    assert run(kibana, env=both) == 2
    assert "not both" in capsys.readouterr().err
    assert run(kibana, env={"KIBANA_USERNAME": "elastic"}) == 2
    assert run(kibana, "--space", "Bad Space") == 2
    assert setup.main(["--kibana-url", "ftp://kibana"], env=BASIC_ENV) == 2
    broken = tmp_path / "objects.ndjson"
    broken.write_text('{"type": "lens", "id": "x"}\nnot json\n')
    assert run(kibana, "--file", str(broken)) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err
    assert kibana.requests == []


def test_command_line_help_mentions_the_environment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        setup.main(["--help"], env={})
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("KIBANA_URL", "KIBANA_API_KEY", "KIBANA_USERNAME", "KIBANA_SPACE", "ES_INDEX"):
        assert name in out
