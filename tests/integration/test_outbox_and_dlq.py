"""Platform guarantees against the real PostgreSQL and RabbitMQ (no services, no gateway)."""
import os
import subprocess
import sys
import time
import uuid

import kombu
import pytest
import sqlalchemy as sa

from customers.models import PLATFORM, Base
from devstack.stack import PYTHONPATH, ROOT
from svc_common import dlq
from svc_common.outbox import OutboxRelay
from svc_common.testing import context
from svc_common.uow import UnitOfWork
from tests import servers
from tests.api import eventually
from tests.events import envelope, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_db():
    with servers.scratch_database("outbox", Base.metadata, PLATFORM) as db:
        yield db


def drain(uri: str, queue: kombu.Queue, expected: int, timeout: float = 10) -> list[dict]:
    got = []
    with kombu.Connection(uri) as conn:
        bound = queue(conn.channel())
        bound.declare()
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            message = bound.get(no_ack=True)
            if message is None:
                time.sleep(0.05)
            else:
                got.append({"payload": message.payload, "headers": message.headers})
    return got


def test_relay_publishes_committed_events_only_and_marks_them(pg_db, amqp_uri):
    watcher = kombu.Queue(f"watch-{uuid.uuid4().hex[:6]}", kombu.Exchange("customers.events", "topic", durable=True),
                          routing_key="customer.created", durable=False, auto_delete=False)
    drain(amqp_uri, watcher, 0, timeout=0)  # declare and bind before publishing
    ctx = context()
    with UnitOfWork(pg_db, ctx) as uow:
        committed = uow.emit("customer.created", {"customer_id": str(uuid.uuid4()), "name": "A"})
    with pytest.raises(RuntimeError):
        with UnitOfWork(pg_db, ctx) as uow:
            uow.emit("customer.created", {"customer_id": str(uuid.uuid4()), "name": "rolled back"})
            raise RuntimeError("the state change failed")
    relay = OutboxRelay(pg_db, amqp_uri, "customers")
    try:
        assert relay.backlog() == 1
        assert relay.publish_pending() == 1
        assert relay.publish_pending() == 0
        assert relay.backlog() == 0
    finally:
        relay.close()
    [message] = drain(amqp_uri, watcher, 1)
    assert message["payload"]["event_id"] == str(committed.event_id)
    assert message["payload"]["data"]["name"] == "A"
    assert message["headers"]["nameko.correlation_id"] == ctx.correlation_id


def test_two_relays_on_postgres_publish_each_event_once(pg_db, amqp_uri):
    watcher = kombu.Queue(f"watch-{uuid.uuid4().hex[:6]}", kombu.Exchange("customers.events", "topic", durable=True),
                          routing_key="customer.created", durable=False, auto_delete=False)
    drain(amqp_uri, watcher, 0, timeout=0)
    ctx = context()
    for _ in range(300):
        with UnitOfWork(pg_db, ctx) as uow:
            uow.emit("customer.created", {"customer_id": str(uuid.uuid4()), "name": "bulk"})
    import threading
    relays = [OutboxRelay(pg_db, amqp_uri, "customers", batch_size=20) for _ in range(2)]
    counts = [0, 0]

    def run(i):
        while (n := relays[i].publish_pending()) > 0:
            counts[i] += n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    [r.close() for r in relays]
    assert sum(counts) == 300
    ids = [m["payload"]["event_id"] for m in drain(amqp_uri, watcher, 300)]
    assert len(ids) == len(set(ids)) == 300


def test_failing_handler_retries_then_dead_letters_and_replay_delivers(tmp_path, amqp_uri, monkeypatch):
    flag, out = tmp_path / "fail", tmp_path / "handled.jsonl"
    flag.touch()
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, AMQP_URI=amqp_uri, FLAKY_FLAG=str(flag), FLAKY_OUT=str(out),
               EVENT_RETRY_DELAYS="0.1,0.2,0.3")
    process = subprocess.Popen([sys.executable, "-m", "tests.integration.flaky_service"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    queue = "evt-probe-probe.happened--flaky.handle"
    try:
        # wait until the handler's queue is bound, then publish one event
        def bound():
            with kombu.Connection(amqp_uri) as conn:
                try:
                    conn.channel().queue_declare(queue, passive=True)
                    return True
                except Exception:
                    return False
        eventually(bound, timeout=30)
        event = envelope("probe.happened", str(uuid.uuid4()), {"n": 1})
        publish(amqp_uri, "probe.events", event)

        monkeypatch.setenv("AMQP_URI", amqp_uri)
        from svc_common.settings import get_settings
        get_settings.cache_clear()
        parked = eventually(lambda: dlq.show(queue), timeout=20)
        assert parked[0]["event_id"] == event["event_id"]
        assert parked[0]["attempts"] == 4  # the first try and three retries
        assert "probe handler told to fail" in parked[0]["error"]
        assert not out.exists()  # never handled, never acked away

        flag.unlink()  # the bug is fixed; ops replay the dead letters
        assert dlq.replay(queue) == 1
        handled = eventually(lambda: out.exists() and out.read_text().splitlines(), timeout=20)
        assert [line for line in handled if event["event_id"] in line]
        assert dlq.show(queue) == []
    finally:
        process.terminate()
        process.wait(timeout=10)
        get_settings.cache_clear()


def test_document_numbers_are_unique_under_concurrency(pg_db):
    import concurrent.futures
    ctx = context()

    def take():
        with UnitOfWork(pg_db, ctx) as uow:
            return uow.next_number("probe", "P")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(lambda _: take(), range(80)))
    assert sorted(numbers) == [f"P{i:06d}" for i in range(1, 81)]
    with pg_db.session(None) as session:
        assert session.execute(sa.text("select count(*) from document_counters")).scalar() == 1


