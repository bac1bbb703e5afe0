"""The batching event consumer (svc_common.batch_consumer).

Unit tier: `handle_batch` over a real SQLite database (claims in one statement, one unit of work per
tenant, duplicates skipped, a failure rolls back its tenant's part and raises).
Integration tier: a probe service as a process on the real RabbitMQ: events come in batches, a poison
event goes alone through retry → dead-letter while every other event is handled exactly once.
"""
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import kombu
import pytest
import sqlalchemy as sa

from svc_common.batch_consumer import BatchEventHandler, BatchQueueConsumer, claim, handle_batch
from svc_common.consumer import ReliableEventHandler
from svc_common.metrics import EVENTS_CONSUMED
from svc_common.tests.batch_probe_service import PLATFORM, Base, BatchProbeService, Seen, record
from svc_common.testing import context, sqlite_database
from svc_common.uow import UnitOfWork
from tests.api import eventually

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "evt-probe-probe.happened--batchprobe.handle"


def envelope(tenant, n, poison=False, event_id=None) -> dict:
    return {"event_id": str(event_id or uuid.uuid4()), "type": "probe.happened", "schema_version": 1,
            "occurred_at": "2026-11-10T01:00:00+00:00", "tenant_id": str(tenant), "correlation_id": None,
            "actor": None, "data": {"n": n, **({"poison": True} if poison else {})}}


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def platform(db):
    return SimpleNamespace(db=db, service_name="batchprobe",
                           worker_ctx=SimpleNamespace(entrypoint=SimpleNamespace(method_name="handle")))


def seen(db) -> dict:
    with db.session(None) as session:
        return {(row.tenant_id, row.n): row.batch_size for row in session.scalars(sa.select(Seen))}


# -- unit: the unit of work of a batch ----------------------------------------------------------

def test_a_batch_is_one_unit_of_work_per_tenant_with_duplicates_skipped(db):
    a, b = uuid.uuid4(), uuid.uuid4()
    first = envelope(a, 1)
    batch = [first, envelope(a, 2), envelope(b, 1), first]  # the first one delivered twice
    assert handle_batch(platform(db), batch, record) == 3
    assert seen(db) == {(a, 1): 2, (a, 2): 2, (b, 1): 1}
    assert handle_batch(platform(db), [first, envelope(b, 2)], record) == 1  # a redelivery changes nothing
    assert seen(db)[(b, 2)] == 1 and len(seen(db)) == 4


def consumed(outcome: str) -> float:
    return EVENTS_CONSUMED.labels("batchprobe", "probe.happened", outcome)._value.get()


@pytest.mark.parametrize("partitions", [1, 2])
def test_every_copy_received_is_counted_a_repeat_as_duplicate(db, partitions):
    """What operators and the e2e delivery test read: a copy redelivered within the same batch is a
    duplicate too, also when the tenant's events are split into partitions."""
    tenant = uuid.uuid4()
    first = envelope(tenant, 1)
    ok, duplicate = consumed("ok"), consumed("duplicate")
    assert handle_batch(platform(db), [first, envelope(tenant, 2), first], record,
                        partition=lambda e: e.data["n"], partitions=partitions) == 2
    assert (consumed("ok") - ok, consumed("duplicate") - duplicate) == (2, 1)
    handle_batch(platform(db), [first], record, partition=lambda e: e.data["n"], partitions=partitions)
    assert (consumed("ok") - ok, consumed("duplicate") - duplicate) == (2, 2)


def test_the_batch_log_line_names_every_correlation_id(db, caplog):
    tenant = uuid.uuid4()
    batch = [envelope(tenant, n) | {"correlation_id": f"req-{n % 2}"} for n in range(4)] + [envelope(tenant, 9)]
    with caplog.at_level("INFO", logger="svc_common.batch_consumer"):
        handle_batch(platform(db), batch, record)
    (line,) = [r for r in caplog.records if r.getMessage() == "event batch consumed"]
    assert line.correlation_ids == ["req-0", "req-1"] and line.events == 5


def test_claims_are_one_statement_and_commit_with_the_effect(db):
    ids = [uuid.uuid4() for _ in range(3)]
    statements = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with UnitOfWork(db, context()) as uow:
        assert claim(uow, "batchprobe.handle", ids) == set(ids)
    assert sum("processed_events" in s for s in statements) == 1
    with UnitOfWork(db, context()) as uow:
        assert claim(uow, "batchprobe.handle", ids + [uuid.uuid4()]) - set(ids) != set()
        assert claim(uow, "other.consumer", ids[:1]) == set(ids[:1])  # claims are per consumer
    with pytest.raises(RuntimeError):
        with UnitOfWork(db, context()) as uow:
            fresh = uuid.uuid4()
            claim(uow, "batchprobe.handle", [fresh])
            raise RuntimeError("the effect failed")
    with UnitOfWork(db, context()) as uow:
        assert claim(uow, "batchprobe.handle", [fresh]) == {fresh}  # rolled back with the effect


def test_a_failing_tenant_rolls_back_its_part_and_the_batch_raises(db):
    good, bad = uuid.uuid4(), uuid.uuid4()
    batch = [envelope(good, 1), envelope(bad, 1), envelope(bad, 2, poison=True)]
    with pytest.raises(RuntimeError, match="poison"):
        handle_batch(platform(db), batch, record)
    assert seen(db) == {(good, 1): 1}  # committed before the failing tenant; the retry skips it
    assert handle_batch(platform(db), batch[:2], record) == 1  # one by one: the good part goes through
    assert seen(db) == {(good, 1): 1, (bad, 1): 1}


def test_partitions_are_units_of_work_of_their_own(db):
    tenant = uuid.uuid4()
    batch = [envelope(tenant, n, poison=(n == 5)) for n in range(10)]
    by_parity = lambda event: event.data["n"] % 2  # noqa: E731
    with pytest.raises(RuntimeError, match="poison"):
        handle_batch(platform(db), batch, record, partition=by_parity, partitions=2)
    part = seen(db)
    assert len(part) == 5 and all(n % 2 == 0 for _, n in part) and set(part.values()) == {5}  # the even half
    assert handle_batch(platform(db), batch[:5], record, partition=by_parity, partitions=2) == 2  # 1 and 3


def test_a_custom_claim_replaces_processed_events(db):
    claimed = []

    def claims(uow, consumer, events):
        claimed.extend(e.event_id for e in events)
        return {e.event_id for e in events[1:]}
    tenant = uuid.uuid4()
    batch = [envelope(tenant, n) for n in range(3)]
    assert handle_batch(platform(db), batch, record, claims=claims) == 2
    assert claimed == [uuid.UUID(e["event_id"]) for e in batch] and len(seen(db)) == 2
    with db.session(None) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PLATFORM.processed_events)) == 0


def test_a_malformed_envelope_fails_the_batch(db):
    with pytest.raises(Exception):
        handle_batch(platform(db), [envelope(uuid.uuid4(), 1), {"type": "probe.happened"}], record)
    assert seen(db) == {}


def test_batch_handlers_keep_the_reliable_queue_names_and_prefetch_at_least_two_batches():
    from nameko.containers import ServiceContainer
    from nameko.extensions import iter_extensions

    container = ServiceContainer(BatchProbeService, {"AMQP_URI": "memory://"})
    [handler] = [e for e in container.entrypoints if isinstance(e, BatchEventHandler)]
    assert isinstance(handler, ReliableEventHandler)
    handler.setup()
    assert handler.queue.name == QUEUE
    assert handler.prefetch_count >= 2 * handler.batch_size
    [consumer] = [e for e in iter_extensions(handler) if isinstance(e, BatchQueueConsumer)]
    assert consumer.prefetch_count == handler.prefetch_count


# -- integration: the probe service on RabbitMQ -------------------------------------------------

@pytest.fixture
def amqp_uri():
    from tests import servers
    servers.require_rabbitmq()
    vhost, uri = servers.isolated_vhost()
    yield uri
    servers.delete_vhost(vhost)


def queue_exists(uri, name) -> bool:
    with kombu.Connection(uri) as conn:
        try:
            conn.channel().queue_declare(name, passive=True)
            return True
        except Exception:
            return False


def parked(uri) -> list:
    with kombu.Connection(uri) as conn:
        queue = kombu.Queue(f"{QUEUE}.dlq", durable=True)(conn.channel())
        queue.declare()
        out = []
        while (message := queue.get(no_ack=False)) is not None:
            out.append(message)
        for message in out:
            message.requeue()
        return [(m.payload, m.headers) for m in out]


@pytest.mark.integration
def test_batches_on_rabbitmq_and_a_poison_event_goes_alone_to_the_dead_letter_queue(tmp_path, amqp_uri):
    database = tmp_path / "probe.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               AMQP_URI=amqp_uri, DATABASE_URL=f"sqlite:///{database}", EVENT_BATCH_SIZE="25",
               EVENT_BATCH_WAIT_MS="200", EVENT_RETRY_DELAYS="0.1,0.2")
    # Patched in the child only: importing the probe here must not patch the test process.
    probe = ("import eventlet; eventlet.monkey_patch(); import runpy; "
             "runpy.run_module('svc_common.tests.batch_probe_service', run_name='__main__')")
    process = subprocess.Popen([sys.executable, "-c", probe], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tenant = uuid.uuid4()
    try:
        eventually(lambda: queue_exists(amqp_uri, QUEUE), timeout=60)
        events = [envelope(tenant, n, poison=(n == 37)) for n in range(100)]
        with kombu.Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
            producer = kombu.Producer(conn.channel())
            exchange = kombu.Exchange("probe.events", type="topic", durable=True)
            for event in events + events[:10]:  # and ten redeliveries
                producer.publish(event, exchange=exchange, routing_key="probe.happened", serializer="json",
                                 delivery_mode=2, declare=[exchange])
        from svc_common.db import Database
        db = Database(f"sqlite:///{database}", PLATFORM)
        handled = eventually(lambda: len(seen(db)) == 99 and seen(db), timeout=60)
        dead = eventually(lambda: parked(amqp_uri), timeout=30)
        assert [(p["data"]["n"], h["x-attempt"]) for p, h in dead] == [(37, 3)]  # first try and two retries
        assert "poison event 37" in dead[0][1]["x-last-error"]
        assert sorted(n for _, n in handled) == [n for n in range(100) if n != 37]
        assert max(handled.values()) > 1  # they came in batches
        with db.session(None) as session:  # each good event claimed once, the poison one never
            claims = session.scalar(sa.select(sa.func.count()).select_from(PLATFORM.processed_events))
        assert claims == 99
        db.dispose()
        process.terminate()
        process.communicate(timeout=20)
        with kombu.Connection(amqp_uri) as conn:  # every message was acked: none comes back when it stops
            _, waiting, _ = conn.channel().queue_declare(QUEUE, passive=True)
        assert waiting == 0
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=20)
