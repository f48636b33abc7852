"""One logging set-up for every entry point: timestamps, levels, quiet client libraries."""

from __future__ import annotations

import logging

NOISY_LOGGERS = ("elastic_transport", "urllib3", "werkzeug")


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; HTTP client chatter only from WARNING up unless debugging."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
