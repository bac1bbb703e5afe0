"""Run one service: `python -m svc_common.runner tickets`.

Configuration from the environment only (svc_common.settings); JSON logs; the
metrics/health HTTP server on METRICS_PORT; SIGTERM stops gracefully (in-flight
workers finish, the outbox relay does a last pass).
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402 — must precede every other import

from psycogreen.eventlet import patch_psycopg  # noqa: E402

# psycopg2 is a C driver: without this it would block every greenlet while it waits on PostgreSQL.
patch_psycopg()

import errno  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import kombu  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

from .logging import configure_logging  # noqa: E402
from .metrics import serve_http  # noqa: E402
from .service_classes import SERVICES, load_service_class  # noqa: E402,F401
from .settings import get_settings  # noqa: E402
from .startup import freeze_startup_objects  # noqa: E402

log = logging.getLogger("svc_common.runner")


def nameko_config(settings) -> dict:
    return {
        "AMQP_URI": settings.amqp_uri,
        "max_workers": settings.max_workers,
        "serializer": "json",
        "HEARTBEAT": 30,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in SERVICES:
        print(f"usage: python -m svc_common.runner {{{','.join(SERVICES)}}}", file=sys.stderr)
        return 2
    name = argv[1]
    settings = get_settings()
    configure_logging(name, settings.log_level)
    service_cls = load_service_class(name)

    runner = ServiceRunner(nameko_config(settings))
    runner.add_service(service_cls)
    container = next(iter(runner.containers))

    def ready() -> bool:
        platform = next(d for d in container.dependencies if d.attr_name == "platform")
        with kombu.Connection(settings.amqp_uri, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return platform.ready()

    def shutdown(signum, frame):
        eventlet.spawn_n(runner.stop)  # signal handlers cannot use eventlet primitives

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    freeze_startup_objects()
    serve_http(settings.metrics_port, ready)
    log.info("service started", extra={"metrics_port": settings.metrics_port})
    runnlet = eventlet.spawn(runner.wait)
    while True:
        try:
            runnlet.wait()
            break
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
    log.info("service stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
