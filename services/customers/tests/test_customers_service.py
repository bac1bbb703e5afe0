"""The nameko entrypoints of customers (worker_factory over a real SQLite database): the reminder
timer across tenants, the public scan without a tenant in the call, the detail asking tickets."""
import datetime as dt
import uuid

import pytest

from customers import handlers
from customers.models import PLATFORM, Base
from customers.schemas import BindIn, CustomerIn, EquipmentIn, QrBatchIn
from customers.service import CustomersService
from svc_common.context import RequestContext
from svc_common.errors import NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, service_worker, sqlite_database, uow
from svc_common.validation import parse


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def equipment_due(db, ctx, days: int):
    with uow(db, ctx) as u:
        c = handlers.create_customer(u, parse(CustomerIn, {"name": f"客户{uuid.uuid4().hex[:4]}"}))
        return handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "M", "serial_number": uuid.uuid4().hex[:8],
            "next_maintenance_date": str(dt.date.today() + dt.timedelta(days=days))}))


def test_reminder_timer_covers_every_tenant_once(db):
    a, b = context(), context()
    ea, eb = equipment_due(db, a, 2), equipment_due(db, b, 3)
    worker = service_worker(CustomersService, db, RequestContext(tenant_id=uuid.uuid4()), method="evaluate_reminders")
    worker.evaluate_reminders()
    worker.evaluate_reminders()  # the next tick: nothing new
    due = [(e["tenant_id"], e["data"]["equipment_id"]) for e in outbox_events(db)
           if e["type"] == "equipment.maintenance_due"]
    assert sorted(due) == sorted([(str(a.tenant_id), str(ea.id)), (str(b.tenant_id), str(eb.id))])


def test_public_scan_and_fault_report_need_no_tenant_in_the_call(db):
    admin = context(role="admin")
    with uow(db, admin) as u:
        c = handlers.create_customer(u, parse(CustomerIn, {"name": "公开客户", "contacts": [
            {"name": "王", "phone": "13800000000"}]}))
        batch = handlers.create_batch(u, QrBatchIn(size=3))
        code = handlers.list_codes(u, batch.id, None, 0, None)[0][0].code
        handlers.bind_code(u, code, parse(BindIn, {"equipment": {
            "customer_id": str(c.id), "model": "KFR", "serial_number": "PUB-1", "warranty_end": "2020-01-01"}}))
    worker = service_worker(CustomersService, db, admin)
    worker.platform.worker_ctx.data = {"correlation_id": "c1"}  # an anonymous call: no tenant, no actor
    page = worker.public_scan(code.lower())
    assert page["equipment"]["serial_number"] == "PUB-1" and page["equipment"]["warranty_state"] == "expired"
    assert page["equipment"]["warranty_end"] == "2020-01-01"
    with pytest.raises(NotFound):
        worker.public_scan("ZZZZ-ZZZZ-ZZZZ")
    with pytest.raises(ValidationFailed):
        worker.report_fault(code, {"description": "x", "contact_phone": "13800000000", "extra": 1})
    done = worker.report_fault(code, {"description": "空调漏水", "contact_phone": "13800000000"})
    assert done["number"] == "FR000001"
    event = outbox_events(db)[-1]
    assert event["type"] == "equipment.fault_reported" and event["tenant_id"] == str(admin.tenant_id)
    assert event["actor"]["role"] == "public"


def test_customer_detail_asks_tickets_for_the_work_orders(db):
    admin = context(role="admin")
    with uow(db, admin) as u:
        c = handlers.create_customer(u, parse(CustomerIn, {"name": "详情客户"}))
    worker = service_worker(CustomersService, db, admin)
    worker.tickets.list_tickets.return_value = {"items": [{"id": "t1", "number": "WO000001"}], "total": 1}
    detail = worker.get_customer_detail(str(c.id))
    worker.tickets.list_tickets.assert_called_once_with(customer_id=str(c.id), offset=0, limit=20)
    assert detail["work_orders"] == [{"id": "t1", "number": "WO000001"}] and detail["work_orders_total"] == 1
    assert detail["customer"]["name"] == "详情客户" and detail["equipment"] == []


def test_equipment_custom_fields_are_validated_on_register_and_update(db):
    from customers.schemas import CustomFieldIn, EquipmentPatch
    admin = context(role="admin")
    with uow(db, admin) as u:
        handlers.add_field(u, parse(CustomFieldIn, {"entity": "equipment", "key": "floor", "label": "楼层",
                                                    "type": "number", "required": True}))
        c = handlers.create_customer(u, parse(CustomerIn, {"name": "字段客户"}))
        with pytest.raises(ValidationFailed) as err:
            handlers.register_equipment(u, c.id, parse(EquipmentIn, {"model": "M", "serial_number": "F1"}))
        assert err.value.errors == [{"field": "custom_fields.floor", "message": "required"}]
        eq = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "M", "serial_number": "F1", "custom_fields": {"floor": "12"}}))
        with pytest.raises(ValidationFailed):
            handlers.update_equipment(u, eq.id, EquipmentPatch(custom_fields={"floor": "十二"}))
        updated = handlers.update_equipment(u, eq.id, EquipmentPatch(custom_fields={"floor": 3}, status="inactive"))
    assert updated.custom_fields == {"floor": "3"} and updated.status == "inactive"
    assert outbox_events(db)[-1]["type"] == "equipment.updated"
    assert set(outbox_events(db)[-1]["data"]["changed"]) == {"custom_fields", "status"}


def ticket_event(tenant_id, event_type: str, data: dict, event_id=None) -> dict:
    return {"event_id": str(event_id or uuid.uuid4()), "type": event_type, "schema_version": 1,
            "occurred_at": "2026-11-22T10:00:00+00:00", "tenant_id": str(tenant_id), "data": data}


def test_service_history_ignores_orders_without_equipment_without_writing_and_keeps_the_rest_once(db):
    import sqlalchemy as sa
    office = context(role="dispatcher")
    eq = equipment_due(db, office, 30)
    worker = service_worker(CustomersService, db, office, method="on_ticket_created")
    base = {"number": "WO000001", "type": "repair", "customer_id": str(uuid.uuid4()), "customer_name": "申能"}

    # An order without equipment: nothing to record, and nothing written for it (no claim either).
    plain = str(uuid.uuid4())
    worker.on_ticket_created(ticket_event(office.tenant_id, "ticket.created", {**base, "ticket_id": plain}))
    worker.on_ticket_assigned(ticket_event(office.tenant_id, "ticket.assigned", {
        **base, "ticket_id": plain, "technician_id": str(uuid.uuid4()), "assigned_by": str(office.actor_id)}))
    with db.session(None) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(db.tables.processed_events)) == 0

    # An order for the equipment: recorded once, however often the event comes.
    with_equipment = ticket_event(office.tenant_id, "ticket.created",
                                  {**base, "ticket_id": str(uuid.uuid4()), "equipment_id": str(eq.id)})
    worker.on_ticket_created(with_equipment)
    worker.on_ticket_created(with_equipment)  # redelivered
    # A later event carries no equipment_id: found by the order's earlier entry.
    worker.on_ticket_assigned(ticket_event(office.tenant_id, "ticket.assigned", {
        **base, "ticket_id": with_equipment["data"]["ticket_id"], "technician_id": str(uuid.uuid4()),
        "assigned_by": str(office.actor_id)}))
    with uow(db, office) as u:
        assert sorted(h.event_type for h in handlers.equipment_history(u, eq.id)) == [
            "ticket.assigned", "ticket.created"]
