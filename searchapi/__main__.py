"""Command line: `python -m searchapi --host H --port P` serves the search API."""

from __future__ import annotations

import argparse
import logging
import sys

from imgsearch.logsetup import configure_logging
from imgsearch.settings import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m searchapi",
        description="Serve the image similarity search API with Flask's development server "
        "(configuration from environment variables, see env.example).",
        epilog="Production: gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()' (make serve): "
        "1 worker x 8 threads on a 2-core box, SEARCH_BIND/SEARCH_WORKERS/SEARCH_THREADS to change it. "
        "Endpoints: GET /openapi.json. Exit code 2: invalid configuration (the message names the variable).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from searchapi import create_app

    try:
        app = create_app()
    except ConfigError as exc:
        logging.getLogger("searchapi").error("configuration error: %s", exc)
        return 2
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
