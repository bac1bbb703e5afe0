"""Prometheus metrics shared by services and the gateway, and the services' small HTTP server.

Services serve `/metrics`, `/healthz` (process up) and `/readyz` (broker and database
reachable) on METRICS_PORT; the gateway mounts `/metrics` in its own app.
"""
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

ENTRYPOINT_LATENCY = Histogram(
    "entrypoint_latency_seconds", "Time spent in a service entrypoint (RPC, event, timer)",
    ["service", "entrypoint", "kind"], buckets=LATENCY_BUCKETS)
ENTRYPOINT_ERRORS = Counter(
    "entrypoint_errors_total", "Entrypoint calls that raised, by error type",
    ["service", "entrypoint", "error"])
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Events handled by consumers, by outcome (ok, duplicate, retried, dead_lettered)",
    ["service", "event_type", "outcome"])
EVENT_LAG = Histogram(
    "event_lag_seconds", "From an event's occurred_at to its consumer's committed effect (freshness of read models)",
    ["service", "event_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60))
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox rows committed but not yet published", ["service"])
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Events published from the outbox", ["service"])
HTTP_LATENCY = Histogram(
    "http_request_latency_seconds", "Gateway HTTP request latency", ["method", "route", "status"],
    buckets=LATENCY_BUCKETS)


def serve_http(port: int, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    """Start the metrics/health server in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            if self.path == "/metrics":
                body, ctype, status = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path == "/healthz":
                body, ctype, status = b'{"status":"ok"}', "application/json", 200
            elif self.path == "/readyz":
                ok = _safe(ready)
                body = b'{"status":"ready"}' if ok else b'{"status":"not ready"}'
                ctype, status = "application/json", 200 if ok else 503
            else:
                body, ctype, status = b"not found", "text/plain", 404
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep probes out of the logs
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        log.warning("readiness check failed", exc_info=True)
        return False
