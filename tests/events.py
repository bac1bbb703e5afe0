"""Publishing raw events onto the bus, as a producer (or a redelivery) would."""
import datetime as dt
import uuid

import kombu


def envelope(event_type: str, tenant_id: str, data: dict, event_id: str | None = None) -> dict:
    return {"event_id": event_id or str(uuid.uuid4()), "type": event_type, "schema_version": 1,
            "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(), "tenant_id": tenant_id,
            "correlation_id": uuid.uuid4().hex, "actor": None, "data": data}


def publish(amqp_uri: str, exchange: str, message: dict, times: int = 1) -> None:
    with kombu.Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
        producer = kombu.Producer(conn.channel())
        target = kombu.Exchange(exchange, type="topic", durable=True)
        for _ in range(times):
            producer.publish(message, exchange=target, routing_key=message["type"], serializer="json",
                             delivery_mode=2, declare=[target])


def metric_value(text: str, name: str, **labels) -> float:
    """A sample's value from Prometheus text format (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
