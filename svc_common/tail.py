"""Tail the event bus live: `python -m svc_common.tail [--producer tickets] [--type 'ticket.*'] [--tenant ID]`.

Binds a temporary queue (exclusive, deleted on exit) to the `<producer>.events` exchanges with the
type pattern as routing key (AMQP topic syntax: `*` one word, `#` any), so it never takes events
from the services' own queues. Prints one JSON line per event; Ctrl-C stops.
"""
import argparse
import json
import sys
import uuid

import kombu

from .contracts import EVENTS
from .settings import get_settings

PRODUCERS = sorted({producer for producer, _ in EVENTS.values()})


def tail_queue(producers: list[str], pattern: str) -> kombu.Queue:
    bindings = [kombu.binding(kombu.Exchange(f"{p}.events", "topic", durable=True), routing_key=pattern)
                for p in producers]
    return kombu.Queue(f"tail-{uuid.uuid4().hex[:8]}", bindings=bindings, exclusive=True, auto_delete=True)


def follow(amqp_uri: str, producers: list[str], pattern: str, tenant: str | None, out=sys.stdout,
           limit: int | None = None, idle_timeout: float | None = None) -> int:
    """Print matching events until `limit` events or `idle_timeout` seconds without one; returns the count."""
    printed = 0
    with kombu.Connection(amqp_uri) as conn:
        queue = tail_queue(producers, pattern)

        def on_message(body, message):
            nonlocal printed
            if tenant is None or body.get("tenant_id") == tenant:
                out.write(json.dumps(body, ensure_ascii=False) + "\n")
                out.flush()
                printed += 1
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            while limit is None or printed < limit:
                try:
                    conn.drain_events(timeout=idle_timeout)
                except TimeoutError:
                    break
    return printed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producer", action="append", choices=PRODUCERS,
                        help="producer(s) to follow (repeatable; default all)")
    parser.add_argument("--type", default="#", help="event type pattern, e.g. 'ticket.*' or 'stock.#' (default #)")
    parser.add_argument("--tenant", help="only this tenant's events")
    args = parser.parse_args(argv)
    try:
        follow(get_settings().amqp_uri, args.producer or PRODUCERS, args.type, args.tenant)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
