"""The customers handlers on the machine's real PostgreSQL, migrated by Alembic: concurrent reminder
runs (two instances at once) send each reminder once, concurrent binds of one code leave one winner,
JSON tag filters and nearby search behave as on SQLite."""
import datetime as dt
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from customers import handlers
from customers.models import PLATFORM, ReminderSent
from customers.schemas import BindIn, CustomerIn, EquipmentIn, QrBatchIn
from devstack.ephemeral import create_databases, drop_databases
from svc_common.context import system_context
from svc_common.db import Database
from svc_common.errors import Conflict, ValidationFailed
from svc_common.migrate import alembic_config, upgrade
from svc_common.testing import context, outbox_events, uow
from svc_common.validation import parse
from tests import servers

pytestmark = pytest.mark.integration
TODAY = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def db():
    servers.require_postgres()
    dbs = create_databases(["customers"])
    url = dbs.url("customers")
    try:
        upgrade("customers", url)
        command.downgrade(alembic_config("customers", url), "0001")  # the migration goes both ways
        upgrade("customers", url)
        database = Database(url, PLATFORM)
        yield database
        database.dispose()
    finally:
        drop_databases(dbs)


def together(*work):
    """Run the callables in threads released at the same moment; their results or exceptions."""
    barrier = threading.Barrier(len(work))
    results = [None] * len(work)

    def run(i, fn):
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - the caller inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_instances_evaluating_at_once_send_each_reminder_once(db):
    admin = context(role="admin")
    with uow(db, admin) as u:
        c = handlers.create_customer(u, parse(CustomerIn, {"name": "并发客户", "contacts": [
            {"name": "张", "phone": "13800000000"}]}))
        for i in range(300):
            handlers.register_equipment(u, c.id, parse(EquipmentIn, {
                "model": "M", "serial_number": f"R{i}", "warranty_end": str(TODAY + dt.timedelta(days=i % 20))}))

    def instance():
        sent, cursor = 0, None
        while True:
            with uow(db, system_context(admin.tenant_id)) as u:
                result = handlers.evaluate_reminders(u, TODAY, chunk=50, cursor=cursor)
            sent += result["sent"]["warranty_expiring"]
            cursor = result["cursor"]
            if cursor is None:
                return sent

    first, second = together(instance, instance)
    assert first + second == 300, (first, second)
    with db.session(admin.tenant_id) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ReminderSent)) == 300
    warnings = [e for e in outbox_events(db) if e["type"] == "equipment.warranty_expiring"
                and e["tenant_id"] == str(admin.tenant_id)]
    assert len(warnings) == 300 and len({e["data"]["equipment_id"] for e in warnings}) == 300


def test_concurrent_binds_of_one_code_leave_one_winner(db):
    tech = context(role="technician")
    with uow(db, context(tenant_id=tech.tenant_id, role="admin")) as u:
        c = handlers.create_customer(u, parse(CustomerIn, {"name": "绑定客户"}))
        batch = handlers.create_batch(u, QrBatchIn(size=5000))
        a = handlers.register_equipment(u, c.id, parse(EquipmentIn, {"model": "A", "serial_number": "B-A"}))
        b = handlers.register_equipment(u, c.id, parse(EquipmentIn, {"model": "B", "serial_number": "B-B"}))
    with uow(db, tech) as u:
        codes, total = handlers.list_codes(u, batch.id, None, 0, None)
    assert total == 5000 and len({x.code for x in codes}) == 5000
    code = codes[0].code

    def bind(equipment_id):
        def go():
            with uow(db, tech) as u:
                return handlers.bind_code(u, code, BindIn(equipment_id=equipment_id))[0].status
        return go

    results = together(bind(a.id), bind(b.id))
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "str"], results
    with uow(db, tech) as u:
        assert handlers.get_code(u, code).equipment_id in (a.id, b.id)
        with pytest.raises(Conflict):
            handlers.bind_code(u, code, BindIn(equipment_id=a.id))


def test_tags_with_chinese_text_and_nearby_on_postgres(db):
    admin = context(role="admin")
    with uow(db, admin) as u:
        near = handlers.create_customer(u, parse(CustomerIn, {
            "name": "近处", "tags": ["重点客户", "VIP"],
            "addresses": [{"text": "A", "latitude": "31.236000", "longitude": "121.506000"}]}))
        handlers.create_customer(u, parse(CustomerIn, {
            "name": "远处", "tags": ["重点"], "addresses": [{"text": "B", "latitude": "31.400000", "longitude": "121.5"}]}))
    with uow(db, admin) as u:
        rows, total = handlers.list_customers(u, None, 0, 10, tag="重点客户")
        assert total == 1 and rows[0].id == near.id
        assert handlers.list_customers(u, None, 0, 10, tag="重点")[1] == 1  # whole tags, not substrings
        found = handlers.nearby_customers(u, Decimal("31.235929"), Decimal("121.506058"), 1000, 10)
        assert [r["customer_id"] for r in found] == [near.id]
    with uow(db, context()) as u:
        assert handlers.list_customers(u, None, 0, 10, tag="重点客户")[1] == 0


def test_import_on_postgres_is_all_or_nothing(db):
    admin = context(role="admin")
    bad = "客户名称,联系电话\n甲,13800000001\n乙,bad\n".encode()
    with pytest.raises(ValidationFailed) as err, uow(db, admin) as u:
        handlers.import_customers(u, bad, "csv")
    assert [e["field"] for e in err.value.errors] == ["rows.3.contact_phone"]
    with uow(db, admin) as u:
        assert handlers.list_customers(u, None, 0, 10)[1] == 0
        assert handlers.import_customers(u, "客户名称,联系电话\n甲,13800000001\n".encode(), "csv") == {"imported": 1}
    with uow(db, admin) as u:
        assert handlers.list_customers(u, "甲", 0, 10)[0][0].contacts[0].phone == "13800000001"
