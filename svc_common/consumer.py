"""Reliable event handlers: a failed handler is retried with backoff, then dead-lettered.

nameko's own event handler acks a message whose handler raised (lost) or requeues it at
once (a hot loop). `on_event` instead republishes the message, with confirms, to a delay
queue whose TTL dead-letters it back to the handler's queue; after the last delay it goes
to `<queue>.dlq` for ops to inspect and replay (`python -m svc_common.dlq`). The original
is acked only after that publish is confirmed, so the event is never dropped.
"""
import logging
import traceback

from kombu import Exchange, Queue
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.events import SERVICE_POOL, EventHandler

from .db import utcnow
from .metrics import EVENTS_CONSUMED
from .settings import get_settings

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-attempt"
DEFAULT_EXCHANGE = Exchange("", type="direct")


def retry_queue(queue_name: str, index: int, delay_seconds: float) -> Queue:
    ttl_ms = int(delay_seconds * 1000)
    return Queue(
        f"{queue_name}.retry-{index}-{ttl_ms}ms", exchange=DEFAULT_EXCHANGE, durable=True,
        queue_arguments={
            "x-message-ttl": ttl_ms,
            # Expired messages go straight back to the handler's own queue (default exchange).
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue_name,
        },
    )


def dead_letter_queue(queue_name: str) -> Queue:
    return Queue(f"{queue_name}.dlq", exchange=DEFAULT_EXCHANGE, durable=True)


class ReliableEventHandler(EventHandler):
    def __init__(self, source_service: str, event_type: str, **kwargs):
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL,
                         reliable_delivery=True, requeue_on_error=False, **kwargs)

    def setup(self):
        super().setup()
        self.delays = get_settings().retry_delays
        self.publisher = Publisher(self.container.config[AMQP_URI_CONFIG_KEY], use_confirms=True,
                                   serializer="json", delivery_mode=2, retry=True)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is not None:
            try:
                self._park_failed(message, exc_info)
            except Exception:
                # Could not park it: give it back to the broker rather than drop it.
                log.exception("could not park failed event; requeueing it")
                self.queue_consumer.requeue_message(message)
                return
        self.queue_consumer.ack_message(message)

    def _park_failed(self, message, exc_info) -> None:
        queue_name = self.queue.name
        headers = dict(message.headers or {})
        headers.pop("x-death", None)
        attempt = int(headers.get(ATTEMPT_HEADER, 0))
        error = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()
        if attempt < len(self.delays):
            target = retry_queue(queue_name, attempt, self.delays[attempt])
            outcome = "retried"
        else:
            target = dead_letter_queue(queue_name)
            outcome = "dead_lettered"
            headers.update({"x-original-queue": queue_name, "x-failed-at": utcnow().isoformat()})
        headers.update({ATTEMPT_HEADER: attempt + 1, "x-last-error": error[:1000]})
        self.publisher.publish(message.payload, exchange=DEFAULT_EXCHANGE, routing_key=target.name,
                               headers=headers, declare=[target])
        EVENTS_CONSUMED.labels(self.container.service_name, self.event_type, outcome).inc()
        log.warning("event handler failed (%s), attempt %s → %s", error, attempt + 1, target.name,
                    extra={"event_type": self.event_type, "queue": queue_name})


on_event = ReliableEventHandler.decorator
