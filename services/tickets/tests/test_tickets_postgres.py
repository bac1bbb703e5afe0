"""Work-order numbers on the real PostgreSQL (migrated by Alembic), from two tickets instances at once.

Each instance (here: its own Database, as a process has) reserves numbers in blocks (svc_common.db
NumberBlocks): numbers must stay unique under parallel creates, increase within an instance, and a
graceful stop gives the unused rest of a block back. Needs PostgreSQL on 127.0.0.1:5432; a missing
server is a failure, never a skip.
"""
import threading

import pytest
import sqlalchemy as sa
from tickets_testkit import make_ticket

from devstack.ephemeral import create_databases, drop_databases
from svc_common.db import Database, NumberBlocks
from svc_common.migrate import upgrade
from svc_common.testing import context
from tests import servers
from tickets.models import PLATFORM

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def instances():
    servers.require_postgres()
    dbs = create_databases(["tickets"])
    try:
        url = dbs.url("tickets")
        upgrade("tickets", url)
        pair = Database(url, PLATFORM), Database(url, PLATFORM)
        yield pair
        for db in pair:
            db.dispose()
    finally:
        drop_databases(dbs)


def counter(db: Database, tenant_id) -> int:
    counters = db.tables.document_counters
    with db.session(None) as session:
        return session.scalar(sa.select(counters.c.last_value).where(
            counters.c.tenant_id == tenant_id, counters.c.kind == "work_order"))


def test_parallel_creates_on_two_instances_get_unique_numbers(instances):
    office = context(role="dispatcher")
    make_ticket(instances[0], office)  # the tenant's first order creates its types and its series
    per_thread, threads_per_instance = 15, 4
    taken: list[list[int]] = []
    errors = []

    def create(db):
        mine = []
        taken.append(mine)
        try:
            for _ in range(per_thread):
                mine.append(int(make_ticket(db, office).number[2:]))
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(db,)) for db in instances for _ in range(threads_per_instance)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    numbers = [n for mine in taken for n in mine]
    assert len(numbers) == len(set(numbers)) == 2 * threads_per_instance * per_thread
    assert 1 not in numbers  # the first order's
    assert all(mine == sorted(mine) for mine in taken)  # an instance hands its numbers out in order
    # Gaps are the unused rest of each instance's last block; a graceful stop gives back what it can.
    assert max(numbers) <= 1 + len(numbers) + 2 * NumberBlocks.MAX_BLOCK
    for db in instances:
        db.release_numbers()
    assert counter(instances[0], office.tenant_id) == max(numbers)  # the last block's rest came back


def test_numbers_continue_without_a_gap_after_a_graceful_stop(instances):
    first, second = instances
    office = context(role="dispatcher")
    numbers = [make_ticket(first, office).number for _ in range(12)]
    assert numbers == [f"WO{i:06d}" for i in range(1, 13)]  # one instance: consecutive, blocks or not
    first.release_numbers()  # what Platform.stop does
    assert make_ticket(second, office).number == "WO000013"


def test_a_killed_instance_leaves_a_gap_and_never_a_duplicate(instances):
    first, second = instances
    office = context(role="dispatcher")
    before = {make_ticket(first, office).number for _ in range(12)}
    reserved = counter(first, office.tenant_id)
    first.numbers = NumberBlocks()  # as after SIGKILL and a restart: its reserved rest is lost
    after = {make_ticket(second, office).number for _ in range(3)} | {make_ticket(first, office).number}
    assert not before & after
    assert min(int(n[2:]) for n in after) == reserved + 1
