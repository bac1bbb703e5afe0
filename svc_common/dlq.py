"""Inspect and replay dead-lettered events.

    python -m svc_common.dlq list                      # every *.dlq queue with its depth
    python -m svc_common.dlq show QUEUE [N]            # first N messages: type, event id, attempts, last error
    python -m svc_common.dlq replay QUEUE              # move them back to the handler's queue

QUEUE is the handler's queue name (evt-<source>-<type>--<service>.<method>); `.dlq` is added.
"""
import json
import subprocess
import sys

import kombu

from .consumer import ATTEMPT_HEADER, DEFAULT_EXCHANGE, dead_letter_queue
from .settings import get_settings


def _dlq_name(queue: str) -> str:
    return queue if queue.endswith(".dlq") else f"{queue}.dlq"


def list_dead_letter_queues() -> list[tuple[str, int]]:
    """Depths of the *.dlq queues (rabbitmqctl, the broker's own CLI, lists them)."""
    out = subprocess.run(["rabbitmqctl", "list_queues", "-q", "--formatter", "json", "name", "messages"],
                         check=True, capture_output=True, text=True).stdout
    return sorted((q["name"], q["messages"]) for q in json.loads(out) if q["name"].endswith(".dlq"))


def show(queue: str, limit: int = 10) -> list[dict]:
    """Peek without consuming: messages are fetched and then rejected back (requeued)."""
    found, held = [], []
    with kombu.Connection(get_settings().amqp_uri) as conn:
        channel = conn.channel()
        q = dead_letter_queue(_dlq_name(queue).removesuffix(".dlq"))(channel)
        q.declare()  # the same durable queue the handler declares when it first parks a message
        for _ in range(limit):
            message = q.get(no_ack=False)
            if message is None:
                break
            held.append(message)
            body, headers = message.payload, message.headers or {}
            found.append({"type": body.get("type"), "event_id": body.get("event_id"),
                          "attempts": headers.get(ATTEMPT_HEADER), "error": headers.get("x-last-error"),
                          "failed_at": headers.get("x-failed-at")})
        for message in held:
            message.requeue()
    return found


def replay(queue: str) -> int:
    """Republish every dead-lettered message to its handler's queue with a fresh attempt count."""
    original = _dlq_name(queue).removesuffix(".dlq")
    moved = 0
    with kombu.Connection(get_settings().amqp_uri, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        producer = kombu.Producer(channel)
        q = dead_letter_queue(original)(channel)
        q.declare()
        while (message := q.get(no_ack=False)) is not None:
            headers = {k: v for k, v in (message.headers or {}).items()
                       if k not in (ATTEMPT_HEADER, "x-death", "x-last-error", "x-failed-at", "x-original-queue")}
            producer.publish(message.payload, exchange=DEFAULT_EXCHANGE, routing_key=original, headers=headers,
                             serializer="json", delivery_mode=2)
            message.ack()  # only after the confirmed publish: a crash here duplicates, never loses
            moved += 1
    return moved


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "list":
        for name, depth in list_dead_letter_queues():
            print(f"{depth:8d}  {name}")
    elif len(argv) >= 3 and argv[1] == "show":
        for item in show(argv[2], int(argv[3]) if len(argv) > 3 else 10):
            print(json.dumps(item, ensure_ascii=False))
    elif len(argv) == 3 and argv[1] == "replay":
        print(f"replayed {replay(argv[2])} message(s) to {_dlq_name(argv[2]).removesuffix('.dlq')}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
