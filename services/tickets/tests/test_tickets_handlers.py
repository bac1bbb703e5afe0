"""Work-order lifecycle against a real SQLite database (unit tier, no broker)."""
import uuid
from decimal import Decimal

import pytest

from svc_common.contracts import UserV1
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, sqlite_database, uow
from svc_common.validation import parse
from tickets import handlers
from tickets.models import PLATFORM, Base
from tickets.schemas import AssignIn, CheckInIn, ReceiptIn, TicketIn


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def office():
    return context(role="dispatcher")


@pytest.fixture
def tech_id(db, office):
    user_id = uuid.uuid4()
    with uow(db, office) as u:
        handlers.apply_user_event(u, "user.created", UserV1(user_id=user_id, name="李工", username="li",
                                                            role="technician", phone="13900000000"))
    return user_id


def snapshot(customer_id=None):
    return {"customer_id": str(customer_id or uuid.uuid4()), "customer_name": "申能", "contact_name": "王经理",
            "contact_phone": "13800138000", "address": "上海", "latitude": Decimal("31.235929"),
            "longitude": Decimal("121.506058"), "equipment_id": None, "equipment_model": None,
            "serial_number": None, "under_warranty": None}


def new_ticket(db, ctx):
    data = parse(TicketIn, {"type": "repair", "customer_id": str(uuid.uuid4()), "description": "不制冷"})
    with uow(db, ctx) as u:
        return handlers.create_ticket(u, data, snapshot(data.customer_id))


def test_full_lifecycle_records_timeline_and_events(db, office, tech_id):
    ticket = new_ticket(db, office)
    assert ticket.number == "WO000001"
    tech = context(tenant_id=office.tenant_id, role="technician", actor_id=tech_id)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_id))
    with uow(db, tech) as u:
        handlers.accept_ticket(u, ticket.id)
    with uow(db, tech) as u:
        t = handlers.check_in(u, ticket.id, CheckInIn(latitude=Decimal("31.236"), longitude=Decimal("121.506")))
        assert 0 < t.check_in_distance_m < 20
    part = uuid.uuid4()
    with uow(db, tech) as u:
        handlers.complete_ticket(u, ticket.id, parse(ReceiptIn, {"summary": "更换电容",
                                                                 "parts_used": [{"part_id": str(part), "quantity": 1}]}))
    with uow(db, office) as u:
        t = handlers.get_ticket(u, ticket.id)
        assert t.status == "completed"
        assert [(e.action, e.to_status) for e in t.timeline] == [
            ("create", "pending_dispatch"), ("assign", "assigned"), ("accept", "accepted"),
            ("check_in", "in_progress"), ("complete", "completed")]
        assert t.timeline[3].actor_id == tech_id
    events = outbox_events(db)
    assert [e["type"] for e in events] == ["ticket.created", "ticket.assigned", "ticket.accepted",
                                           "ticket.checked_in", "ticket.completed"]
    done = events[-1]["data"]
    assert done["technician_id"] == str(tech_id) and done["dispatcher_id"] == str(office.actor_id)
    assert done["parts_used"] == [{"part_id": str(part), "quantity": "1"}]
    assert done["contact_phone"] == "13800138000"


def test_illegal_transitions_are_conflicts_naming_the_state(db, office, tech_id):
    ticket = new_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_id))
    with pytest.raises(Conflict, match="assigned"):
        with uow(db, office) as u:
            handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_id))
    with pytest.raises(Conflict, match="cannot complete a work order that is assigned"):
        with uow(db, office) as u:
            handlers.complete_ticket(u, ticket.id, ReceiptIn(summary="x"))
    with uow(db, office) as u:
        assert len(handlers.get_ticket(u, ticket.id).timeline) == 2
    assert len(outbox_events(db)) == 2  # created + assigned; the refused calls wrote nothing


def test_only_the_assignee_does_field_work(db, office, tech_id):
    ticket = new_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_id))
    other = context(tenant_id=office.tenant_id, role="technician")
    with pytest.raises(Forbidden):
        with uow(db, other) as u:
            handlers.accept_ticket(u, ticket.id)
    with pytest.raises(Forbidden):
        with uow(db, other) as u:
            new = parse(TicketIn, {"type": "repair", "customer_id": str(uuid.uuid4()), "description": "x"})
            handlers.create_ticket(u, new, snapshot())


def test_unknown_or_inactive_technician_is_rejected(db, office, tech_id):
    ticket = new_ticket(db, office)
    with pytest.raises(ValidationFailed) as err:
        with uow(db, office) as u:
            handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=uuid.uuid4()))
    assert err.value.errors[0]["field"] == "technician_id"
    with uow(db, office) as u:
        handlers.apply_user_event(u, "user.deactivated", UserV1(user_id=tech_id, name="李工", username="li",
                                                                role="technician", active=False))
    with pytest.raises(ValidationFailed):
        with uow(db, office) as u:
            handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_id))


def test_tenant_isolation_and_numbering(db, office, tech_id):
    ticket = new_ticket(db, office)
    stranger = context(role="admin")
    with pytest.raises(NotFound):
        with uow(db, stranger) as u:
            handlers.get_ticket(u, ticket.id)
    with pytest.raises(ValidationFailed):  # another tenant's technician is unknown here
        other_ticket = new_ticket(db, stranger)
        with uow(db, stranger) as u:
            handlers.assign_ticket(u, other_ticket.id, AssignIn(technician_id=tech_id))
    # numbering is per tenant
    assert other_ticket.number == "WO000001"
    assert new_ticket(db, office).number == "WO000002"
    with uow(db, stranger) as u:
        assert handlers.list_tickets(u, None, None, None, 0, 50)[1] == 1


def test_bad_receipt_names_the_field():
    with pytest.raises(ValidationFailed) as err:
        parse(ReceiptIn, {"summary": "ok", "parts_used": [{"part_id": "nope", "quantity": 0}]})
    assert {e["field"] for e in err.value.errors} == {"parts_used.0.part_id", "parts_used.0.quantity"}


def test_replica_gives_the_snapshot_once_customer_and_equipment_events_arrived(db, office):
    from svc_common.contracts import CustomerCreatedV1, EquipmentRegisteredV1
    customer_id, equipment_id, today = uuid.uuid4(), uuid.uuid4(), __import__("datetime").date(2026, 11, 22)
    with uow(db, office) as u:
        assert handlers.snapshot_from_replica(u, customer_id, None, today) is None  # not replicated yet
        handlers.apply_customer_event(u, CustomerCreatedV1.model_validate({
            "customer_id": str(customer_id), "name": "申能", "contacts": [
                {"contact_id": str(uuid.uuid4()), "name": "王经理", "phone": "13800138000"}],
            "addresses": [{"address_id": str(uuid.uuid4()), "text": "上海", "latitude": "31.2", "longitude": "121.5"}]}))
        handlers.apply_equipment_event(u, EquipmentRegisteredV1(
            equipment_id=equipment_id, customer_id=customer_id, model="KFR", serial_number="S1",
            warranty_end="2026-12-31"))
    with uow(db, office) as u:
        snap = handlers.snapshot_from_replica(u, customer_id, equipment_id, today)
        assert snap["contact_phone"] == "13800138000" and snap["under_warranty"] is True
        assert snap["latitude"] == Decimal("31.2")
        assert handlers.snapshot_from_replica(u, customer_id, uuid.uuid4(), today) is None
    other_customer = uuid.uuid4()
    with uow(db, office) as u:
        handlers.apply_customer_event(u, CustomerCreatedV1(customer_id=other_customer, name="B"))
    with pytest.raises(Conflict):
        with uow(db, office) as u:
            handlers.snapshot_from_replica(u, other_customer, equipment_id, today)
    # another tenant sees none of it
    with uow(db, context()) as u:
        assert handlers.snapshot_from_replica(u, customer_id, None, today) is None
