"""Production server layout for the search API (gunicorn -c searchapi/gunicorn.conf.py)."""

import os

# One worker process per box holds one VGG16 copy (~60 MB of weights, ~0.5 GB of TensorFlow) and
# serialises model calls; each model call already uses every core (TensorFlow intra-op threads), so a
# second worker on a 2-core box only makes two model calls fight over the same cores. Threads keep
# the cheap parts (search by id, Elasticsearch round trips, URL downloads) concurrent.
bind = os.environ.get("SEARCH_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SEARCH_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("SEARCH_THREADS", "8"))
# The model loads and warms in create_app() inside the worker (TensorFlow does not survive fork()).
preload_app = False
timeout = int(os.environ.get("SEARCH_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
# Requests beyond the thread pool queue in the socket backlog instead of being refused.
backlog = 256
accesslog = "-" if os.environ.get("SEARCH_ACCESS_LOG", "1") != "0" else None
errorlog = "-"
loglevel = os.environ.get("SEARCH_LOG_LEVEL", "info").lower()


def child_exit(server, worker):
    """With several workers, /metrics aggregates per-process files; drop the dead worker's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
