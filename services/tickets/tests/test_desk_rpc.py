"""The desk's nameko entrypoints (mixed into TicketsService) with the other services' RPC stubbed."""
import base64
import io
import uuid
from unittest.mock import MagicMock

import pytest
from openpyxl import Workbook, load_workbook

from svc_common.context import RequestContext
from svc_common.errors import NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, service_worker
from tickets.service import TicketsService

CUSTOMER = uuid.uuid4()
PART, ITEM = str(uuid.uuid4()), str(uuid.uuid4())


def customers_stub():
    stub = MagicMock()
    stub.get_service_snapshot.side_effect = lambda customer_id, equipment_id=None: {
        "customer_id": customer_id, "customer_name": "上海申能大厦物业", "contact_name": "王经理",
        "contact_phone": "13912345678", "address": "上海市浦东新区世纪大道100号", "latitude": "31.235929",
        "longitude": "121.506058", "equipment_id": equipment_id, "equipment_model": None, "serial_number": None,
        "under_warranty": False}
    return stub


def inventory_stub():
    stub = MagicMock()
    stub.get_part.side_effect = lambda part_id: {"id": part_id, "name": "启动电容", "sale_price": "80.00",
                                                 "cost_price": "35.00"}
    stub.get_service_items.side_effect = lambda ids: [{"id": i, "name": "上门检修", "price": "120.00",
                                                       "cost_price": None} for i in ids]
    stub.check_stock_available.return_value = {"available": True, "shortfalls": []}
    return stub


@pytest.fixture(autouse=True)
def _files(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETS_STORAGE_DIR", str(tmp_path / "files"))


@pytest.fixture
def office():
    return context(role="admin")


def worker(db, ctx):
    return service_worker(TicketsService, db, ctx, customers=customers_stub(), inventory=inventory_stub())


def test_convert_over_rpc_asks_customers_once_and_links_both_ways(db, office):
    w = worker(db, office)
    request = w.create_service_request({"channel": "api", "event_type": "fault", "subject": "不制冷",
                                        "customer_id": str(CUSTOMER)})
    out = w.convert_service_request(request["id"], {"priority": "urgent"})
    assert out["request"]["ticket_id"] == out["ticket"]["id"] and out["ticket"]["customer_name"] == "上海申能大厦物业"
    w.customers.get_service_snapshot.assert_called_once()
    assert w.get_ticket_service_request(out["ticket"]["id"])["id"] == request["id"]
    with pytest.raises(ValidationFailed):
        w.create_service_request({"channel": "api", "event_type": "fault"})


def test_settlement_report_and_portal_rating_over_rpc(db, office, roster):
    tech = roster.user("李工")
    w = worker(db, office)
    w.create_ticket_type({"code": "paid", "name": "有偿维修", "flow": {"settlement": True, "return_visit": True}})
    order = w.create_ticket({"type": "paid", "customer_id": str(CUSTOMER), "description": "不制冷"})
    w.assign_ticket(order["id"], {"technician_id": str(tech)})
    t = worker(db, context(tenant_id=office.tenant_id, role="technician", actor_id=tech))
    t.accept_ticket(order["id"])
    t.check_in_ticket(order["id"], {"latitude": "31.2359", "longitude": "121.5060"})
    png = base64.b64encode(_png()).decode()
    signature = t.upload_ticket_file(order["id"], {"kind": "signature", "filename": "sig.png",
                                                   "content_type": "image/png", "content_base64": png})
    t.complete_ticket(order["id"], {"summary": "更换启动电容，试机正常", "signature_id": signature["id"],
                                    "parts_used": [{"part_id": PART, "quantity": "1"}],
                                    "service_items": [{"service_item_id": ITEM, "quantity": "1"}]})
    draft = w.build_settlement(order["id"], "final", {"cost_lines": [{"kind": "labour", "description": "工时",
                                                                      "quantity": "2", "unit_price": "25"}]})
    assert (draft["fee_total"], draft["cost_total"], draft["gross_profit"]) == ("200.00", "85.00", "115.00")
    w.inventory.get_part.assert_called_with(part_id=PART)
    settled = w.settle_settlement(order["id"])
    assert settled["status"] == "settled"
    assert [e["data"]["gross_profit"] for e in outbox_events(db) if e["type"] == "ticket.settled"] == ["115.00"]

    visit = w.list_return_visits(ticket_id=order["id"])["items"][0]
    public = worker(db, context(tenant_id=uuid.uuid4(), role=None))  # the portal: no login
    page = public.public_get_visit(visit["token"])
    assert page["number"] == order["number"] and [d["key"] for d in page["dimensions"]][0] == "quality"
    assert public.public_rate_visit(visit["token"], {"scores": {"quality": 5, "efficiency": 5, "attitude": 4}}) == \
        {"status": "rated", "satisfaction": 5}
    assert w.get_ticket(order["id"])["status"] == "visited"
    last = w.get_timeline(order["id"])["items"][-1]  # the customer, not a member of staff, rated
    assert (last["action"], last["actor_role"], last["actor_id"]) == ("visit", "customer", None)
    visited = [e for e in outbox_events(db) if e["type"] == "ticket.visited"][-1]
    assert visited["actor"]["role"] == "customer" and visited["data"]["by_customer"] is True
    assert visited["data"]["scores"] == {"quality": 5, "efficiency": 5, "attitude": 4}

    for locale in ("zh-CN", "en"):
        report = w.service_report_pdf(order["id"], locale)
        pdf = base64.b64decode(report["content_base64"])
        assert pdf.startswith(b"%PDF") and report["filename"] == f"{order['number']}.pdf"
        assert b"STSong-Light" in pdf and b"/Image" in pdf  # CJK font and the signature image
    with pytest.raises(ValidationFailed):
        w.service_report_pdf(order["id"], "fr")

    # the customer's portal link to the report (no login)
    link = w.service_report_link(order["id"])
    assert w.service_report_link(order["id"]) == link
    shown = public.public_service_report(link["token"])
    assert base64.b64decode(shown["content_base64"]).startswith(b"%PDF") and shown["filename"] == report["filename"]
    assert public.inventory.get_part.called  # parts named by inventory, in the link's tenant

    # sent to the customer by e-mail: the event for notify, which then asks for the PDF as the system
    sent = w.send_service_report(order["id"], {"channel": "email", "to": "wang@example.com", "locale": "en"})
    assert sent["token"] == link["token"] and sent["to"] == "wang@example.com"
    event = [e for e in outbox_events(db) if e["type"] == "service_report.sent"][-1]
    assert event["tenant_id"] == str(office.tenant_id) and event["data"]["recipient_email"] == "wang@example.com"
    with pytest.raises(ValidationFailed) as err:
        w.send_service_report(order["id"], {"channel": "sms", "to": "110"})
    assert err.value.errors[0]["field"] == "to"
    notify = worker(db, RequestContext(tenant_id=office.tenant_id, actor_role="system"))
    for answer in (notify.service_report_pdf(ticket_id=event["data"]["ticket_id"], locale="en"),
                   notify.service_report_pdf(token=sent["token"], locale="en")):
        assert base64.b64decode(answer["content_base64"]).startswith(b"%PDF")
        assert answer["filename"] == report["filename"] and answer["content_type"] == "application/pdf"
    anonymous = worker(db, office)
    anonymous.platform.worker_ctx.data.clear()  # no tenant, no user: the token alone names the order
    assert base64.b64decode(anonymous.service_report_pdf(token=sent["token"])["content_base64"]).startswith(b"%PDF")
    stranger = worker(db, RequestContext(tenant_id=uuid.uuid4(), actor_role="system"))
    with pytest.raises(NotFound):
        stranger.service_report_pdf(token=sent["token"])
    with pytest.raises(NotFound):
        stranger.service_report_pdf(ticket_id=order["id"])
    with pytest.raises(ValidationFailed):
        notify.service_report_pdf()

    # a custom Excel template filled for this order, as XLSX and as PDF
    fields = {f["placeholder"] for f in w.report_template_fields("paid")["items"]}
    assert {"{{number}}", "{{parts.name}}", "{{fees.amount}}"} <= fields
    template = w.upload_report_template({"name": "维修单", "filename": "repair.xlsx", "content_base64": base64.b64encode(
        _xlsx(["工单", "{{number}}"], ["{{parts.name}}", "{{parts.quantity}}"], ["{{fees.description}}",
                                                                                "{{fees.amount}}"])).decode()})
    filled = w.fill_report_template(template["id"], order["id"], "xlsx")
    rows = list(load_workbook(io.BytesIO(base64.b64decode(filled["content_base64"]))).active.iter_rows(values_only=True))
    assert rows == [("工单", order["number"]), ("启动电容", "1.000"), ("启动电容", "80.00"), ("上门检修", "120.00")]
    assert base64.b64decode(w.fill_report_template(template["id"], order["id"], "pdf")["content_base64"]).startswith(
        b"%PDF")


def test_back_fill_over_rpc_is_a_work_order_verified_by_the_office(db, office, roster):
    tech = roster.user("李工")
    t = worker(db, context(tenant_id=office.tenant_id, role="technician", actor_id=tech))
    record = t.submit_service_record({"ticket_type": "repair", "customer_id": str(CUSTOMER),
                                      "done_at": "2026-10-01T09:00:00+08:00", "summary": "电话指导复位",
                                      "parts_used": [{"ref_id": PART, "quantity": "1"}]})
    assert record["status"] == "pending" and record["ticket_number"].startswith("WO")
    w = worker(db, office)
    assert w.get_ticket(record["ticket_id"])["status"] == "pending_verification"
    assert w.list_tickets(status="pending_dispatch")["total"] == 0
    verified = w.verify_service_record(record["id"], True, {"note": "已核实"})
    assert verified["status"] == "verified" and verified["ticket_id"] == record["ticket_id"]
    done = w.get_ticket(record["ticket_id"])
    assert done["status"] == "completed" and done["completed_at"].startswith("2026-10-01T01:00:00")
    assert [(e["type"], e["data"]["backfilled"]) for e in outbox_events(db)] == [
        ("ticket.created", True), ("ticket.completed", True)]
    assert w.list_service_records(status="verified")["items"][0]["ticket_number"] == record["ticket_number"]


def test_run_due_plans_over_rpc(db, office):
    w = worker(db, office)
    plan = w.create_plan({"name": "月度保养", "customer_id": str(CUSTOMER), "rrule": "FREQ=MONTHLY;COUNT=2",
                          "starts_at": "2026-01-01T00:00:00+08:00", "description": "保养", "mode": "pool"})
    assert plan["state"] == "running" and plan["starts_at"].startswith("2025-12-31T16:00:00")
    assert w.run_due_plans() == {"created": 2}
    assert w.run_due_plans() == {"created": 0}
    orders = w.get_plan_orders(plan["id"])
    assert len(orders["past"]) == 2 and orders["upcoming"] == []
    assert w.get_plan(plan["id"])["state"] == "expired"
    technician = worker(db, context(tenant_id=office.tenant_id, role="technician"))
    with pytest.raises(Exception) as err:
        technician.run_due_plans()
    assert type(err.value).__name__ == "Forbidden"


def _xlsx(*rows) -> bytes:
    wb = Workbook()
    for row in rows:
        wb.active.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _png() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (40, 16), "white").save(out, "PNG")
    return out.getvalue()



def due_envelope(tenant_id, kind, equipment_id, due_date, create=True):
    return {"event_id": str(uuid.uuid4()), "type": f"equipment.{kind}", "schema_version": 1,
            "occurred_at": "2026-11-22T00:00:00+00:00", "tenant_id": str(tenant_id), "correlation_id": "c",
            "actor": None, "data": {"equipment_id": str(equipment_id), "customer_id": str(CUSTOMER),
                                    "customer_name": "申能", "model": "格力 KFR-72LW", "serial_number": "SN-9",
                                    "due_date": due_date, "days_left": 3, "create_work_order": create}}


def test_due_equipment_gets_one_order_per_due_date(db, office):
    w = worker(db, office)
    equipment = uuid.uuid4()
    w.on_equipment_maintenance_due(due_envelope(office.tenant_id, "maintenance_due", equipment, "2026-12-01"))
    w.on_equipment_maintenance_due(due_envelope(office.tenant_id, "maintenance_due", equipment, "2026-12-01"))
    w.on_equipment_maintenance_overdue(due_envelope(office.tenant_id, "maintenance_overdue", equipment, "2026-12-01"))
    w.on_equipment_inspection_due(due_envelope(office.tenant_id, "inspection_due", equipment, "2026-12-01"))
    w.on_equipment_maintenance_due(due_envelope(office.tenant_id, "maintenance_due", uuid.uuid4(), "2026-12-01",
                                                create=False))
    orders = w.list_tickets()["items"]
    assert sorted((o["type"], o["equipment_id"]) for o in orders) == [("inspection", str(equipment)),
                                                                      ("maintenance", str(equipment))]
    assert "保养到期：2026-12-01" in next(o for o in orders if o["type"] == "maintenance")["description"]
    w.on_equipment_maintenance_due(due_envelope(office.tenant_id, "maintenance_due", equipment, "2027-03-01"))
    assert w.list_tickets()["total"] == 3  # the next due date is another order
