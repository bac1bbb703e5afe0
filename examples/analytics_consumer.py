"""An outside analytics consumer: kombu and the event catalog only, none of the platform's code.

    AMQP_URI=amqp://user:pass@host:5672/ python examples/analytics_consumer.py 'ticket.*' stock.moved

It reads docs/asyncapi.yaml (the published catalog) to find, for the event types it wants, the
exchange and routing key of each and the schema versions it understands; binds its OWN durable
queue (it survives restarts and keeps events while the consumer is down); deduplicates on
event_id (delivery is at least once); and acks only after the event is stored. Here "stored" is
a line in a local JSON-lines file; a real consumer writes to its warehouse in the same spirit.
An event of a schema version the catalog does not list is set aside, not misread.
"""
import fnmatch
import json
import os
import sys
from pathlib import Path

import kombu
import yaml

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = os.environ.get("ANALYTICS_QUEUE", "analytics.work-orders")
OUTPUT = Path(os.environ.get("ANALYTICS_OUTPUT", "analytics-events.jsonl"))
CATALOG = Path(os.environ.get("EVENT_CATALOG", Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"))
WANTED = ["ticket.*", "stock.moved"]  # event type patterns; the command line may replace them


def catalog_bindings(patterns: list[str]) -> dict[str, tuple[str, set[int]]]:
    """event type → (exchange, schema versions) for every catalogued type matching a pattern."""
    document = yaml.safe_load(CATALOG.read_text())
    versions: dict[str, set[int]] = {}
    for message in document["components"]["messages"].values():
        versions.setdefault(message["name"], set()).add(
            message["payload"]["allOf"][1]["properties"]["schema_version"]["const"])
    out = {}
    for channel in document["channels"].values():
        exchange = channel["bindings"]["amqp"]["exchange"]["name"]
        for ref in channel["subscribe"]["message"]["oneOf"]:
            event_type = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
            if any(fnmatch.fnmatchcase(event_type, p) for p in patterns):
                out[event_type] = (exchange, versions[event_type])
    return out


def queue(patterns: list[str] | None = None) -> kombu.Queue:
    bindings = [kombu.binding(kombu.Exchange(exchange, "topic", durable=True), routing_key=event_type)
                for event_type, (exchange, _) in sorted(catalog_bindings(patterns or WANTED).items())]
    return kombu.Queue(QUEUE, bindings=bindings, durable=True)


def seen_ids() -> set[str]:
    if not OUTPUT.exists():
        return set()
    return {json.loads(line)["event_id"] for line in OUTPUT.read_text().splitlines() if line}


def run(limit: int | None = None, idle_timeout: float | None = None, patterns: list[str] | None = None) -> int:
    known = catalog_bindings(patterns or WANTED)
    seen, stored = seen_ids(), 0
    with kombu.Connection(AMQP_URI) as conn, OUTPUT.open("a") as out:
        def on_event(body, message):
            nonlocal stored
            understood = body.get("schema_version") in known.get(body.get("type"), (None, set()))[1]
            if body["event_id"] not in seen:  # at-least-once delivery: drop repeats
                out.write(json.dumps({"event_id": body["event_id"], "type": body["type"],
                                      "schema_version": body.get("schema_version"), "understood": understood,
                                      "tenant_id": body["tenant_id"], "occurred_at": body["occurred_at"],
                                      "data": body["data"]}, ensure_ascii=False) + "\n")
                out.flush()
                seen.add(body["event_id"])
                stored += 1
            message.ack()  # after the write: a crash before it means a redelivery, not a loss

        with conn.Consumer(queue(patterns), callbacks=[on_event], accept=["json"], prefetch_count=100):
            while limit is None or stored < limit:
                try:
                    conn.drain_events(timeout=idle_timeout)
                except TimeoutError:
                    break
    return stored


if __name__ == "__main__":
    try:
        run(patterns=sys.argv[1:] or None)
    except KeyboardInterrupt:
        sys.exit(0)
