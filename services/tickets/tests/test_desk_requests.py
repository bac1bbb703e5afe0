"""Service desk (服务台) requests against a real SQLite database (unit tier, no broker)."""
import base64
import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, uow
from svc_common.validation import parse
from tickets import handlers as tickets
from tickets.desk import handlers
from tickets.desk.schemas import (
    ConvertIn, DeskSettingsIn, NoteTemplateIn, RequestCompleteIn, RequestIn, RequestNoteIn, RequestTypeIn,
)
from tickets.models import StoredFile, Ticket
from tickets.storage import LocalStorage


def snapshot(customer_id):
    return {"customer_id": str(customer_id), "customer_name": "申能物业", "contact_name": "王经理",
            "contact_phone": "13800138000", "address": "上海", "latitude": Decimal("31.235929"),
            "longitude": Decimal("121.506058"), "equipment_id": None, "equipment_model": None,
            "serial_number": None, "under_warranty": None}


def new_request(db, ctx, storage=None, **fields):
    data = parse(RequestIn, {"channel": "phone", "event_type": "fault", "subject": "空调不制冷",
                             "description": "3楼会议室", **fields})
    with uow(db, ctx) as u:
        return handlers.create_request(u, data, storage)


def events(db, kind):
    return [e for e in outbox_events(db) if e["type"] == kind]


def test_a_request_goes_through_its_states_and_records_time_spent(db, office):
    request = new_request(db, office, contact_phone="13900001111")
    assert request.number == "SR000001" and request.status == "pending_assignment"
    assert events(db, "service_request.created")[0]["data"]["channel"] == "phone"
    agent = uuid.uuid4()
    with uow(db, office) as u:
        assert handlers.assign_request(u, request.id, agent, "请跟进").status == "pending"
    me = context(tenant_id=office.tenant_id, role="technician", actor_id=agent)
    with uow(db, me) as u:
        assert handlers.start_request(u, request.id).status == "in_progress"
    with uow(db, me) as u:
        paused = handlers.pause_request(u, request.id, "等客户回电")
        assert paused.status == "paused"
    with uow(db, office) as u:
        counts = handlers.status_counts(u)
        assert counts["paused"] == 1 and counts["exceptions"] == 1 and counts["all"] == 1
        assert handlers.list_requests(u, exceptions=True)[1] == 1
    with uow(db, me) as u:
        assert handlers.resume_request(u, request.id).status == "in_progress"
    with uow(db, me) as u:
        handlers.add_note(u, request.id, RequestNoteIn(body="已电话指导", minutes=15))
    with uow(db, me) as u:
        done = handlers.complete_request(u, request.id, RequestCompleteIn(outcome="resolved_by_phone", minutes=5))
        assert done.status == "done" and done.minutes_spent == 20 and done.done_at is not None
        assert set(done.state_seconds) >= {"pending_assignment", "pending", "in_progress", "paused"}
    closed = events(db, "service_request.closed")
    assert closed[0]["data"]["outcome"] == "resolved_by_phone"
    with uow(db, office) as u:
        actions = [n.action for n in handlers.notes(u, request.id)]
    assert actions == ["create", "assign", "start", "pause", "resume", "note", "complete"]
    # someone who is neither the desk nor the assignee cannot work it
    other = context(tenant_id=office.tenant_id, role="technician")
    with pytest.raises(Forbidden), uow(db, other) as u:
        handlers.start_request(u, request.id)


def test_request_types_have_their_own_forms_validated(db, office):
    with uow(db, office) as u:
        handlers.save_request_type(u, parse(RequestTypeIn, {
            "code": "return_goods", "name": "退换货", "ticket_type": "repair",
            "fields": [{"key": "order_no", "label": "订单号", "kind": "text", "required": True},
                       {"key": "reason", "label": "原因", "kind": "select", "options": ["质量", "错发"]}]}))
    with pytest.raises(ValidationFailed) as err:
        new_request(db, office, event_type="return_goods", custom_fields={"reason": "不喜欢"})
    assert {e["field"] for e in err.value.errors} == {"custom_fields.order_no", "custom_fields.reason"}
    with pytest.raises(ValidationFailed) as err:
        new_request(db, office, event_type="nope")
    assert err.value.errors[0]["field"] == "event_type"
    with pytest.raises(ValidationFailed) as err:
        parse(RequestIn, {"channel": "fax", "event_type": "fault", "subject": "x"})
    assert err.value.errors[0]["field"] == "channel"
    ok = new_request(db, office, event_type="return_goods", custom_fields={"order_no": "A1", "reason": "错发"})
    assert ok.custom_fields == {"order_no": "A1", "reason": "错发"}
    with uow(db, office) as u:
        assert handlers.list_requests(u)[1] == 1  # the failed ones wrote nothing


def test_assignment_rules_pick_the_assignee(db, office):
    agent = uuid.uuid4()
    with uow(db, office) as u:
        handlers.update_settings(u, DeskSettingsIn(assignment_rules=[{"channel": "qr_scan", "assignee_id": agent}]))
    assert new_request(db, office, channel="qr_scan").assignee_id == agent
    assert new_request(db, office, channel="qr_scan").status == "pending"
    assert new_request(db, office, channel="phone").assignee_id is None


def test_approval_with_a_required_note(db, office):
    with uow(db, office) as u:
        handlers.save_request_type(u, parse(RequestTypeIn, {"code": "refund", "name": "退款", "approval_required": True}))
        handlers.update_settings(u, DeskSettingsIn(approval_note_required=True))
    request = new_request(db, office, event_type="refund")
    with pytest.raises(Conflict) as err, uow(db, office) as u:
        handlers.complete_request(u, request.id, RequestCompleteIn())
    assert err.value.errors[0]["field"] == "approval"
    with pytest.raises(ValidationFailed) as err, uow(db, office) as u:
        handlers.request_approval(u, request.id, None)
    assert err.value.errors[0]["field"] == "note"
    with uow(db, office) as u:
        handlers.request_approval(u, request.id, "客户要求退款 200 元")
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        handlers.decide_approval(u, request.id, True, "  ")
    with uow(db, office) as u:
        approved = handlers.decide_approval(u, request.id, True, "同意")
        assert approved.approval["status"] == "approved" and approved.approval["decision_note"] == "同意"
    with uow(db, office) as u:
        assert handlers.complete_request(u, request.id, RequestCompleteIn()).status == "done"


def test_a_done_request_returns_to_not_done_only_when_allowed(db, office):
    request = new_request(db, office)
    with uow(db, office) as u:
        handlers.complete_request(u, request.id, RequestCompleteIn())
    with pytest.raises(Conflict), uow(db, office) as u:
        handlers.reopen_request(u, request.id, "没修好")
    with uow(db, office) as u:
        handlers.update_settings(u, DeskSettingsIn(reopen_allowed=True))
    with uow(db, office) as u:
        back = handlers.reopen_request(u, request.id, "没修好")
        assert back.status == "in_progress" and back.outcome is None and back.done_at is None


def test_cancel_closes_with_outcome_cancelled(db, office):
    request = new_request(db, office)
    with uow(db, office) as u:
        assert handlers.cancel_request(u, request.id, "重复").status == "cancelled"
    assert events(db, "service_request.closed")[0]["data"]["outcome"] == "cancelled"
    with pytest.raises(Conflict), uow(db, office) as u:
        handlers.cancel_request(u, request.id, "again")


def test_note_templates(db, office):
    with uow(db, office) as u:
        template = handlers.create_template(u, NoteTemplateIn(title="已回电", body="已电话联系客户，"))
    request = new_request(db, office)
    with uow(db, office) as u:
        note = handlers.add_note(u, request.id, RequestNoteIn(template_id=template.id, body="约明天上门", minutes=3))
        assert note.body == "已电话联系客户，\n约明天上门" and note.minutes == 3
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        handlers.add_note(u, request.id, RequestNoteIn())


def test_conversion_makes_a_work_order_linked_both_ways_with_the_attachments(db, office, tmp_path):
    storage = LocalStorage(tmp_path / "files")
    customer_id = uuid.uuid4()
    photo = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    request = new_request(db, office, storage, customer_id=str(customer_id),
                          attachments=[{"filename": "fault.png", "content_type": "image/png", "content_base64": photo}])
    with uow(db, office) as u:
        converted, ticket = handlers.convert_request(u, request.id, ConvertIn(priority="high"), snapshot(customer_id))
    assert converted.ticket_id == ticket.id and converted.status == "in_progress"
    assert ticket.type == "repair" and ticket.priority == "high" and "空调不制冷" in ticket.description
    created = events(db, "ticket.created")[0]["data"]
    assert created["service_request_id"] == str(request.id) and created["ticket_id"] == str(ticket.id)
    assert events(db, "service_request.converted")[0]["data"]["ticket_id"] == str(ticket.id)
    with uow(db, office) as u:
        assert handlers.request_of_ticket(u, ticket.id).id == request.id
        files = list(u.session.scalars(sa.select(StoredFile).where(StoredFile.ticket_id == ticket.id)))
        assert [(f.kind, f.filename) for f in files] == [("photo", "fault.png")]
        assert storage.get(files[0].storage_key).startswith(b"\x89PNG")
    with pytest.raises(Conflict), uow(db, office) as u:
        handlers.convert_request(u, request.id, ConvertIn(), snapshot(customer_id))
    with uow(db, office) as u:
        assert u.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1
    # the order closed (ticket.closed): the request is done with it, once
    system = context(tenant_id=office.tenant_id, role="system")
    with uow(db, system) as u:
        assert handlers.close_with_ticket(u, ticket.id).outcome == "work_order_closed"
    with uow(db, system) as u:
        assert handlers.close_with_ticket(u, ticket.id) is None
    assert [e["data"]["outcome"] for e in events(db, "service_request.closed")] == ["work_order_closed"]


def test_conversion_needs_a_customer_and_the_desk(db, office):
    request = new_request(db, office)
    with pytest.raises(ValidationFailed) as err, uow(db, office) as u:
        handlers.conversion_target(u, request.id, ConvertIn())
    assert err.value.errors[0]["field"] == "customer_id"
    tech = context(tenant_id=office.tenant_id, role="technician")
    with pytest.raises(Forbidden), uow(db, tech) as u:
        handlers.convert_request(u, request.id, ConvertIn(customer_id=uuid.uuid4()), snapshot(uuid.uuid4()))


def test_a_qr_fault_report_becomes_one_qr_scan_request(db, office):
    from svc_common.contracts import EquipmentFaultReportedV1
    event = EquipmentFaultReportedV1(report_id=uuid.uuid4(), number="FR000001", equipment_id=uuid.uuid4(),
                                     customer_id=uuid.uuid4(), customer_name="申能", contact_phone="13912345678",
                                     description="不制冷", model="格力 KFR-72LW", serial_number="SN1")
    system = context(tenant_id=office.tenant_id, role="system")
    with uow(db, system) as u:
        first = handlers.apply_fault_report(u, event)
    with uow(db, system) as u:
        again = handlers.apply_fault_report(u, event)
    assert first.id == again.id and first.channel == "qr_scan" and first.event_type == "fault"
    assert first.equipment_id == event.equipment_id and first.contact_phone == "13912345678"
    assert len(events(db, "service_request.created")) == 1


def test_requests_past_their_due_time_are_timed_out(db, office):
    with uow(db, office) as u:
        handlers.save_request_type(u, parse(RequestTypeIn, {"code": "urgent", "name": "紧急", "due_minutes": 30}))
    request = new_request(db, office, event_type="urgent")
    later = request.created_at + dt.timedelta(minutes=31)
    with db.session(None) as session:
        assert handlers.timed_out_candidates(session, later) == [(office.tenant_id, request.id)]
    with uow(db, office) as u:
        assert handlers.mark_timed_out(u, request.id, later) is True
    with uow(db, office) as u:
        assert handlers.mark_timed_out(u, request.id, later) is False
        assert handlers.list_requests(u, exceptions=True)[1] == 1


def test_another_tenant_sees_nothing(db, office):
    request = new_request(db, office)
    stranger = context(role="admin")
    with pytest.raises(NotFound), uow(db, stranger) as u:
        handlers.get_request(u, request.id)
    with uow(db, stranger) as u:
        assert handlers.list_requests(u)[1] == 0
    with uow(db, office) as u:
        assert tickets.list_types(u)  # the office's tenant is unaffected


def test_add_on_components_are_validated_and_filled_in_later(db, office):
    with uow(db, office) as u:
        handlers.save_request_type(u, parse(RequestTypeIn, {"code": "exchange", "name": "换货",
                                                            "components": ["return_exchange", "shipping"]}))
    with pytest.raises(ValidationFailed) as err:
        new_request(db, office, event_type="exchange", components={"return_exchange": {"kind": "维修"},
                                                                   "complaint": {}})
    assert {e["field"] for e in err.value.errors} == {"components.complaint", "components.return_exchange.kind",
                                                     "components.return_exchange.reason"}
    request = new_request(db, office, event_type="exchange",
                          components={"return_exchange": {"kind": "换货", "reason": "外观破损"}})
    with pytest.raises(ValidationFailed) as err, uow(db, office) as u:
        handlers.update_components(u, request.id, {"shipping": {"carrier": "顺丰"}})
    assert err.value.errors[0]["field"] == "components.shipping.tracking_no"
    with uow(db, office) as u:
        updated = handlers.update_components(u, request.id, {"shipping": {"carrier": "顺丰", "tracking_no": "SF1"}})
    assert updated.components == {"return_exchange": {"kind": "换货", "reason": "外观破损"},
                                  "shipping": {"carrier": "顺丰", "tracking_no": "SF1"}}
