"""An outside analytics consumer: kombu and the event catalog only, none of the platform's code.

    AMQP_URI=amqp://user:pass@host:5672/ python examples/analytics_consumer.py

It binds its OWN durable queue (it survives restarts and keeps events while the consumer is
down) to the exchanges and routing keys listed in docs/asyncapi.yaml, deduplicates on
event_id (delivery is at least once), and acks only after the event is stored. Here "stored"
is a line in a local JSON-lines file; a real consumer writes to its warehouse in the same spirit.
"""
import json
import os
import sys
from pathlib import Path

import kombu

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = os.environ.get("ANALYTICS_QUEUE", "analytics.work-orders")
OUTPUT = Path(os.environ.get("ANALYTICS_OUTPUT", "analytics-events.jsonl"))
# From docs/asyncapi.yaml: channel "tickets.events/ticket.completed" → exchange tickets.events, key ticket.completed.
SUBSCRIPTIONS = [("tickets.events", "ticket.*"), ("inventory.events", "stock.moved")]


def queue() -> kombu.Queue:
    bindings = [kombu.binding(kombu.Exchange(exchange, "topic", durable=True), routing_key=key)
                for exchange, key in SUBSCRIPTIONS]
    return kombu.Queue(QUEUE, bindings=bindings, durable=True)


def seen_ids() -> set[str]:
    if not OUTPUT.exists():
        return set()
    return {json.loads(line)["event_id"] for line in OUTPUT.read_text().splitlines() if line}


def run(limit: int | None = None, idle_timeout: float | None = None) -> int:
    seen, stored = seen_ids(), 0
    with kombu.Connection(AMQP_URI) as conn, OUTPUT.open("a") as out:
        def on_event(body, message):
            nonlocal stored
            if body["event_id"] not in seen:  # at-least-once delivery: drop repeats
                out.write(json.dumps({"event_id": body["event_id"], "type": body["type"],
                                      "tenant_id": body["tenant_id"], "occurred_at": body["occurred_at"],
                                      "data": body["data"]}, ensure_ascii=False) + "\n")
                out.flush()
                seen.add(body["event_id"])
                stored += 1
            message.ack()  # after the write: a crash before it means a redelivery, not a loss

        with conn.Consumer(queue(), callbacks=[on_event], accept=["json"], prefetch_count=100):
            while limit is None or stored < limit:
                try:
                    conn.drain_events(timeout=idle_timeout)
                except TimeoutError:
                    break
    return stored


if __name__ == "__main__":
    try:
        run()
    except KeyboardInterrupt:
        sys.exit(0)
