"""JSON logs with the service name and the correlation id of the request or event."""
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from .context import correlation_id_var


class _ContextFilter(logging.Filter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id_var.get()
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kombu/amqp debug chatter is noise at INFO.
    for noisy in ("amqp", "kombu"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # nameko logs every expected (4xx-type) error with a traceback at WARNING; real errors are ERROR.
    logging.getLogger("nameko.containers").setLevel(max(logging.ERROR, root.level))
