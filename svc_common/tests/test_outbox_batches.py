"""The outbox relay's batched confirms and the document-number blocks.

Unit tier: how large a block of numbers an instance reserves (no database).
Integration tier, on the real PostgreSQL and RabbitMQ: a batch goes out in outbox order with its
confirms awaited together; a message the broker refuses (nack) fails the whole batch, which stays
in the outbox and is published later; a broker connection lost while idle is replaced at once.
"""
import uuid

import kombu
import pytest

from customers.models import PLATFORM, Base
from svc_common import db as db_module
from svc_common.db import Database, NumberBlocks, _Series
from svc_common.outbox import OutboxRelay, PublishNotConfirmed
from svc_common.testing import context
from svc_common.uow import UnitOfWork
from tests import servers

EXCHANGE = kombu.Exchange("customers.events", "topic", durable=True)


# -- unit: block sizes ------------------------------------------------------------------------------

def test_a_quiet_series_reserves_one_number_and_a_busy_one_a_quarter_second_of_them(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(db_module.time, "monotonic", lambda: now[0])
    blocks, series = NumberBlocks(), _Series()
    assert blocks._next_size(series) == 1  # never reserved before
    series.size, series.refilled_at = 1, now[0]
    now[0] += 10  # one number in 10 s
    assert blocks._next_size(series) == 1
    series.size, series.refilled_at = 5, now[0]
    now[0] += 0.05  # 100 numbers/s
    assert blocks._next_size(series) == 25
    series.size, series.refilled_at = 50, now[0]
    now[0] += 0.01  # 5,000/s: capped
    assert blocks._next_size(series) == NumberBlocks.MAX_BLOCK
    series.size, series.refilled_at, series.waiting = 1, now[0] - 10, 7
    assert blocks._next_size(series) == 8  # those queued behind the reservation each need one


# -- integration: the relay --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_db():
    with servers.scratch_database("relay", Base.metadata, PLATFORM) as db:
        yield db


@pytest.fixture
def amqp_uri():
    servers.require_rabbitmq()
    vhost, uri = servers.isolated_vhost()
    yield uri
    servers.delete_vhost(vhost)


def watch(uri: str, **queue_arguments) -> kombu.Queue:
    queue = kombu.Queue(f"watch-{uuid.uuid4().hex[:6]}", EXCHANGE, routing_key="customer.#", durable=False,
                        auto_delete=False, queue_arguments=queue_arguments or None)
    with kombu.Connection(uri) as conn:
        queue(conn.channel()).declare()
    return queue


def drain(uri: str, queue: kombu.Queue) -> list[dict]:
    got = []
    with kombu.Connection(uri) as conn:
        bound = queue(conn.channel())
        while (message := bound.get(no_ack=True)) is not None:
            got.append(message.payload)
    return got


def emit(db: Database, count: int, customers: list[str]) -> list[str]:
    ids = []
    ctx = context()
    for i in range(count):
        with UnitOfWork(db, ctx) as uow:
            event = uow.emit("customer.updated", {"customer_id": customers[i % len(customers)], "name": f"v{i}"})
            ids.append(str(event.event_id))
    return ids


def test_a_batch_goes_out_in_outbox_order_with_one_wait_for_its_confirms(pg_db, amqp_uri):
    queue = watch(amqp_uri)
    customers = [str(uuid.uuid4()) for _ in range(3)]
    ids = emit(pg_db, 60, customers)
    relay = OutboxRelay(pg_db, amqp_uri, "customers")
    waits = []
    original = relay._wait_for_confirms
    relay._wait_for_confirms = lambda: (waits.append(relay._last_tag), original())[1]
    try:
        assert relay.publish_pending() == 60
        assert relay.backlog() == 0
        assert relay._unconfirmed == set()
    finally:
        relay.close()
    assert waits == [60]  # one wait, once all 60 were sent (confirms already in were taken on the way)
    got = drain(amqp_uri, queue)
    assert [m["event_id"] for m in got] == ids  # outbox order, so each customer's events in order
    for customer in customers:
        names = [m["data"]["name"] for m in got if m["data"]["customer_id"] == customer]
        assert names == sorted(names, key=lambda n: int(n[1:]))


def test_a_refused_message_fails_its_batch_which_stays_in_the_outbox(pg_db, amqp_uri):
    # A queue that takes one message and refuses (nacks) the rest, as a full broker would.
    full = watch(amqp_uri, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    ids = emit(pg_db, 3, [str(uuid.uuid4())])
    relay = OutboxRelay(pg_db, amqp_uri, "customers")
    try:
        with pytest.raises(PublishNotConfirmed):
            relay.publish_pending()
        assert relay.backlog() == 3  # nothing marked published
        with kombu.Connection(amqp_uri) as conn:
            full(conn.channel()).delete()
        queue = watch(amqp_uri)
        assert relay.publish_pending() == 3  # sent again, whole: at least once
        assert relay.backlog() == 0
    finally:
        relay.close()
    assert [m["event_id"] for m in drain(amqp_uri, queue)] == ids


def test_a_connection_lost_while_idle_is_replaced_without_failing_the_batch(pg_db, amqp_uri):
    queue = watch(amqp_uri)
    relay = OutboxRelay(pg_db, amqp_uri, "customers")
    try:
        first = emit(pg_db, 1, [str(uuid.uuid4())])
        assert relay.publish_pending() == 1
        relay._connection.connection.collect()  # the socket is gone, the relay still holds its producer
        later = emit(pg_db, 2, [str(uuid.uuid4())])
        assert relay.publish_pending() == 2
    finally:
        relay.close()
    assert [m["event_id"] for m in drain(amqp_uri, queue)] == first + later
