"""Back-filled service records (补录): real work orders that wait for the office's verification."""
import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from tickets_testkit import snapshot

from svc_common.errors import Conflict, Forbidden, ValidationFailed
from svc_common.testing import outbox_events, uow
from svc_common.validation import parse
from tickets import handlers as tickets
from tickets.desk import records, settlement
from tickets.desk.schemas import ServiceRecordIn
from tickets.schemas import AssignIn, PublishIn

CUSTOMER = uuid.uuid4()
PART, ITEM = uuid.uuid4(), uuid.uuid4()
DONE_AT = dt.datetime(2026, 11, 1, 0, 0, tzinfo=dt.timezone.utc)


def submit(db, ctx, **fields):
    body = {"ticket_type": "repair", "customer_id": str(CUSTOMER), "done_at": "2026-11-01T08:00:00+08:00",
            "summary": "电话指导更换保险丝", "parts_used": [{"ref_id": str(PART), "quantity": "2"}],
            "service_items": [{"ref_id": str(ITEM), "quantity": "1"}], **fields}
    with uow(db, ctx) as u:
        return records.submit(u, parse(ServiceRecordIn, body), snapshot(CUSTOMER, "补录客户"))


def order(db, ctx, ticket_id):
    with uow(db, ctx) as u:
        ticket = tickets.get_ticket(u, ticket_id)
        return ticket, [(e.action, e.to_status, e.actor_role, e.data.get("backfilled")) for e in ticket.timeline], \
            [p.quantity for p in ticket.parts_used]


def test_a_back_fill_is_a_work_order_outside_dispatch_and_sla_until_verified(db, office, roster):
    tech_id = roster.user("李工")
    tech = roster.as_(tech_id)
    record = submit(db, tech)
    assert record.number == "BL000001" and record.status == "pending" and record.technician_id == tech_id
    assert record.done_at == DONE_AT and record.ticket_number == "WO000001"
    ticket, timeline, parts = order(db, office, record.ticket_id)
    assert (ticket.status, ticket.backfilled, ticket.assignee_id, ticket.number) == (
        "pending_verification", True, tech_id, "WO000001")
    assert (ticket.respond_due_at, ticket.arrive_due_at, ticket.complete_due_at, ticket.overdue) == (None, None, None, [])
    assert ticket.customer_name == "补录客户" and timeline == [("create", "pending_verification", "technician", True)]
    assert outbox_events(db) == []  # nobody hears of it before it is verified

    # not in the dispatch queue, the pool or the SLA scan; the technician sees it as theirs
    with uow(db, office) as u:
        assert tickets.list_tickets(u, status="pending_dispatch,pooled")[1] == 0
        assert tickets.overdue_candidates(u.session, dt.datetime(2999, 1, 1, tzinfo=dt.timezone.utc)) == []
    with uow(db, tech) as u:
        assert tickets.list_tickets(u, pool=True)[1] == 0
        assert [t.id for t in tickets.list_tickets(u, scope="mine")[0]] == [ticket.id]

    with pytest.raises(Forbidden), uow(db, tech) as u:
        records.verify(u, record.id, True, None)
    with pytest.raises(ValidationFailed) as err, uow(db, office) as u:
        records.verify(u, record.id, False, " ")
    assert err.value.errors[0]["field"] == "note"

    with uow(db, office) as u:
        verified = records.verify(u, record.id, True, "已核实")
    assert verified.status == "verified" and verified.verified_by == office.actor_id
    ticket, timeline, parts = order(db, office, record.ticket_id)
    assert (ticket.status, ticket.completed_at, ticket.summary, parts) == ("completed", DONE_AT, "电话指导更换保险丝",
                                                                         [Decimal("2")])
    assert ticket.receipt["service_items"] == [{"service_item_id": str(ITEM), "quantity": "1"}]
    assert timeline[-1] == ("complete", "completed", "dispatcher", True)
    created, completed = outbox_events(db)
    assert (created["type"], created["data"]["backfilled"], created["data"]["number"]) == (
        "ticket.created", True, "WO000001")
    assert completed["type"] == "ticket.completed" and completed["data"]["backfilled"] is True
    assert completed["data"]["completed_at"] == "2026-11-01T00:00:00Z"
    assert completed["data"]["technician_id"] == str(tech_id)
    assert completed["data"]["parts_used"] == [{"part_id": str(PART), "quantity": "2"}]
    assert completed["data"]["service_items"] == [{"service_item_id": str(ITEM), "quantity": "1"}]
    assert completed["actor"]["role"] == "dispatcher"

    with pytest.raises(Conflict), uow(db, office) as u:
        records.verify(u, record.id, False, "再改")
    with uow(db, office) as u:
        listed, total = records.list_records(u, "verified", CUSTOMER, None, 0, 10)
        assert total == 1 and listed[0].ticket_id == ticket.id
        assert [t.status for t in tickets.list_tickets(u, customer_id=CUSTOMER)[0]] == ["completed"]
        assert settlement.visit_after_completion(u, ticket.id) is None  # no rating SMS for old work


def test_a_rejected_back_fill_is_cancelled_with_the_note_and_announces_nothing(db, office, roster):
    tech = roster.as_(roster.user("李工"))
    record = submit(db, tech)
    with uow(db, office) as u:
        rejected = records.verify(u, record.id, False, "客户否认")
    assert rejected.status == "rejected" and rejected.verify_note == "客户否认"
    ticket, timeline, parts = order(db, office, record.ticket_id)
    assert (ticket.status, ticket.cancel_reason, parts) == ("cancelled", "客户否认", [])
    assert timeline[-1] == ("cancel", "cancelled", "dispatcher", True)
    assert outbox_events(db) == []


def test_a_redelivered_submit_finds_its_record(db, office, roster):
    tech = dataclasses.replace(roster.as_(roster.user("李工")), request_id="call-1")
    first, again = submit(db, tech), submit(db, tech)
    assert again.id == first.id and again.ticket_id == first.ticket_id


def test_who_enters_it_does_not_verify_it_and_bad_records_are_refused(db, office, roster):
    tech_id = roster.user("李工")
    own = submit(db, office, technician_id=str(tech_id))
    assert own.technician_id == tech_id and own.submitted_by == office.actor_id
    with pytest.raises(Conflict), uow(db, office) as u:
        records.verify(u, own.id, True, None)
    keeper = roster.user("库管", role="warehouse_manager")
    for fields, field in (({"done_at": "2999-01-01T00:00:00+00:00"}, "done_at"), ({"ticket_type": "nope"}, "ticket_type"),
                          ({}, "technician_id"), ({"technician_id": str(uuid.uuid4())}, "technician_id"),
                          ({"technician_id": str(keeper)}, "technician_id")):
        with pytest.raises(ValidationFailed) as err:
            submit(db, office, **fields)
        assert err.value.errors[0]["field"] == field


def test_office_actions_on_a_back_fill_waiting_for_verification_are_conflicts(db, office, roster):
    tech_id = roster.user("李工")
    record = submit(db, roster.as_(tech_id))
    for action in (lambda u: tickets.assign_ticket(u, record.ticket_id, AssignIn(technician_id=tech_id)),
                   lambda u: tickets.publish_to_pool(u, record.ticket_id, PublishIn()),
                   lambda u: tickets.cancel_ticket(u, record.ticket_id, "x")):
        with pytest.raises(Conflict), uow(db, office) as u:
            action(u)
    with uow(db, office) as u:
        assert tickets.list_tickets(u, status="pending_verification")[1] == 1
