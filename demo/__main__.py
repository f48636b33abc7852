"""`python -m demo`: load a demo catalog of real photos, run `indexer full`, serve the search page."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from demo.catalog import PHOTOS, VIEWS, load_catalog, write_photo_files
from imgsearch.logsetup import configure_logging
from imgsearch.settings import environ
from indexer import load_mysql_config

log = logging.getLogger("demo")
REPO = Path(__file__).resolve().parent.parent
IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def choose_weights() -> str:
    """VGG16_WEIGHTS if set; else ImageNet when obtainable; else `random` with a loud warning."""
    if os.environ.get("VGG16_WEIGHTS"):
        return os.environ["VGG16_WEIGHTS"]
    if (Path.home() / ".keras" / "models" / IMAGENET_FILE).is_file():
        return "imagenet"
    from imgsearch.features import visible_gpus

    visible_gpus()  # TensorFlow's first device look-up: without the cuInit noise of CPU-only machines
    socket.setdefaulttimeout(15)
    try:
        import keras

        keras.applications.VGG16(include_top=False, weights="imagenet", pooling="max")
        return "imagenet"
    except Exception as exc:  # noqa: BLE001 - offline machines land here
        banner = "!" * 78
        log.warning(
            "\n%s\nImageNet weights could not be downloaded (%s).\nFALLING BACK TO VGG16_WEIGHTS=random: "
            "results show the pipeline working, NOT meaningful similarity.\nPut %s in ~/.keras/models/ "
            "or set VGG16_WEIGHTS=/path/to/weights.h5 for real results.\n%s",
            banner,
            f"{type(exc).__name__}: {str(exc)[:200]}",
            IMAGENET_FILE,
            banner,
        )
        return "random"
    finally:
        socket.setdefaulttimeout(None)


class QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_photos(folder: Path, port: int) -> str:
    """Serve the demo photos over HTTP on a background thread (the indexer downloads them)."""
    handler = partial(QuietFileHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def photo_hosts(base_url: str) -> str:
    """The SEARCH_URL_ALLOWED_HOSTS value that lets image_url reach the demo photo server and
    nothing else on this machine (not Elasticsearch on :9200): its own port, by IP and by name."""
    port = urlsplit(base_url).port
    return f"127.0.0.1:{port},localhost:{port}"


def demo_environment(base_url: str, weights: str) -> dict[str, str]:
    """The variables the demo's indexer and API run with (SEARCH_URL_ALLOWED_HOSTS, if set, wins)."""
    return {
        **environ(),
        "IMAGE_BASE_URL": base_url,
        "VGG16_WEIGHTS": weights,
        "SEARCH_URL_ALLOWED_HOSTS": os.environ.get("SEARCH_URL_ALLOWED_HOSTS", photo_hosts(base_url)),
    }


def run_indexer(env: dict[str, str]) -> int:
    """Run the real CLI, exactly as cron would."""
    command = [sys.executable, "-m", "indexer", "full", "--max-failure-ratio", "0"]
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--products", type=int, default=len(PHOTOS), help="products (sample photos)")
    parser.add_argument("--views", type=int, default=3, help=f"images per product (max {len(VIEWS)})")
    parser.add_argument("--folder", default=str(REPO / ".demo" / "photos"), help="where photos are written")
    parser.add_argument("--photo-port", type=int, default=8001, help="port of the demo photo server")
    parser.add_argument("--host", default="127.0.0.1", help="API bind address")
    parser.add_argument("--port", type=int, default=8000, help="API port")
    parser.add_argument("--index-only", action="store_true", help="load and index, then exit")
    args = parser.parse_args(argv)
    configure_logging("INFO")

    entries = write_photo_files(Path(args.folder), args.products, args.views)
    base_url = serve_photos(Path(args.folder), args.photo_port)
    env = demo_environment(base_url, choose_weights())
    load_catalog(load_mysql_config(env), entries)
    log.info("demo catalog: %d images of %d products, served at %s", len(entries), args.products, base_url)
    if (code := run_indexer(env)) != 0:
        log.error("indexer failed with exit code %d", code)
        return code
    if args.index_only:
        return 0
    os.environ.update(env)
    from searchapi import create_app

    app = create_app()
    print(f"\n  Search page: http://{args.host}:{args.port}/   (Ctrl-C to stop)\n", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
