"""Production server layout for the search API (gunicorn -c searchapi/gunicorn.conf.py)."""

import sys

from imgsearch.settings import ConfigError, environ
from searchapi.config import load_server_settings

# Every variable is checked here, in the master, so a bad one stops gunicorn at once (exit 2, one line
# naming it) instead of failing each worker's boot with a traceback.
try:
    settings = load_server_settings(environ())
except ConfigError as error:
    print(f"configuration error: {error}", file=sys.stderr)
    sys.exit(2)

# One worker process per box holds one VGG16 copy (~60 MB of weights, ~0.5 GB of TensorFlow) and
# serialises model calls; each model call already uses every core (TensorFlow intra-op threads), so a
# second worker on a 2-core box only makes two model calls fight over the same cores. Threads keep
# the cheap parts (search by id, Elasticsearch round trips, URL downloads) concurrent.
bind = settings.bind
workers = settings.workers
worker_class = "gthread"
threads = settings.threads
# The model loads and warms in create_app() inside the worker (TensorFlow does not survive fork()).
preload_app = False
timeout = settings.worker_timeout
graceful_timeout = 30
keepalive = 5
# Requests beyond the thread pool queue in the socket backlog instead of being refused.
backlog = 256
accesslog = "-" if settings.access_log else None
errorlog = "-"
loglevel = settings.log_level


def child_exit(server, worker):
    """With several workers, /metrics aggregates per-process files; drop the dead worker's."""
    if settings.metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
