"""What an outside analytics consumer relies on, against the real RabbitMQ: the live tail and the
example consumer that uses only kombu and the catalog."""
import importlib.util
import io
import json
import threading
import uuid
from pathlib import Path

import kombu
import pytest

from svc_common import tail
from tests.api import eventually
from tests.events import envelope, publish

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_tail_follows_matching_events_of_one_tenant(amqp_uri):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    out = io.StringIO()
    follower = threading.Thread(target=tail.follow, args=(amqp_uri, ["tickets"], "ticket.*", mine, out, 1, 10))
    follower.start()

    def shown():  # keep publishing until the tail's queue is bound and has printed one
        publish(amqp_uri, "tickets.events", envelope("ticket.assigned", other, {"n": 0}))
        publish(amqp_uri, "customers.events", envelope("customer.created", mine, {"n": 1}))
        publish(amqp_uri, "tickets.events", envelope("ticket.assigned", mine, {"n": 2}))
        return out.getvalue()
    printed = eventually(shown, timeout=15, interval=0.3)
    follower.join(timeout=15)
    event = json.loads(printed.splitlines()[0])
    assert (event["type"], event["tenant_id"], event["data"]) == ("ticket.assigned", mine, {"n": 2})


def test_example_consumer_binds_its_own_durable_queue_and_stores_each_event_once(amqp_uri, tmp_path):
    spec = importlib.util.spec_from_file_location("analytics_consumer", ROOT / "examples" / "analytics_consumer.py")
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    consumer.AMQP_URI, consumer.OUTPUT = amqp_uri, tmp_path / "events.jsonl"
    consumer.QUEUE = f"analytics-{uuid.uuid4().hex[:6]}"
    with kombu.Connection(amqp_uri) as conn:  # the durable queue exists before events flow, as in production
        consumer.queue()(conn.channel()).declare()
    tenant = str(uuid.uuid4())
    completed = envelope("ticket.completed", tenant, {"number": "WO000001"})
    publish(amqp_uri, "tickets.events", completed, times=2)  # a redelivery
    publish(amqp_uri, "inventory.events", envelope("stock.moved", tenant, {"quantity": "1"}))
    publish(amqp_uri, "customers.events", envelope("customer.created", tenant, {}))  # not subscribed
    assert consumer.run(limit=2, idle_timeout=5) == 2
    stored = [json.loads(line) for line in consumer.OUTPUT.read_text().splitlines()]
    assert [e["type"] for e in stored] == ["ticket.completed", "stock.moved"]
    assert consumer.run(idle_timeout=1) == 0  # the repeat was acked and dropped, nothing left


def load_example():
    spec = importlib.util.spec_from_file_location("analytics_consumer", ROOT / "examples" / "analytics_consumer.py")
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    return consumer


def test_example_consumer_finds_exchanges_and_versions_in_the_catalog():
    consumer = load_example()
    desk = consumer.catalog_bindings(["service_request.*"])
    assert desk == {t: ("tickets.events", {1}) for t in
                    ("service_request.created", "service_request.converted", "service_request.closed")}
    assert consumer.catalog_bindings(["stock.moved"]) == {"stock.moved": ("inventory.events", {1})}
    keys = {b.routing_key for b in consumer.queue(["ticket.*"]).bindings}
    assert {"ticket.created", "ticket.completed"} <= keys and all(k.startswith("ticket.") for k in keys)


def test_example_consumer_sets_aside_versions_the_catalog_does_not_list(amqp_uri, tmp_path):
    consumer = load_example()
    consumer.AMQP_URI, consumer.OUTPUT = amqp_uri, tmp_path / "events.jsonl"
    consumer.QUEUE = f"analytics-{uuid.uuid4().hex[:6]}"
    with kombu.Connection(amqp_uri) as conn:
        consumer.queue(["service_request.*"])(conn.channel()).declare()
    tenant = str(uuid.uuid4())
    future = {**envelope("service_request.created", tenant, {"request_id": "r"}), "schema_version": 99}
    publish(amqp_uri, "tickets.events", envelope("service_request.created", tenant, {"request_id": "r"}))
    publish(amqp_uri, "tickets.events", future)
    assert consumer.run(limit=2, idle_timeout=5, patterns=["service_request.*"]) == 2
    stored = [json.loads(line) for line in consumer.OUTPUT.read_text().splitlines()]
    assert [(e["schema_version"], e["understood"]) for e in stored] == [(1, True), (99, False)]
