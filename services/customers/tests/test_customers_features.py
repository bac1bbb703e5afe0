"""Customers, custom fields, duplicates, nearby, change requests, import/export, templates and equipment,
QR codes, public scan, fault reports, reminders, service history: handlers on a real SQLite database."""
import base64
import datetime as dt
import io
import uuid
from decimal import Decimal

import pytest
from openpyxl import Workbook, load_workbook

from customers import domain, handlers
from customers.models import PLATFORM, Base, ReminderSent
from customers.schemas import (
    BindIn,
    ChangeRequestIn,
    CustomerIn,
    CustomerPatch,
    CustomFieldIn,
    CustomFieldOrderIn,
    CustomFieldPatch,
    EquipmentIn,
    FaultReportIn,
    ProductTemplateIn,
    QrBatchIn,
    ReminderRuleIn,
)
from svc_common.context import system_context
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, sqlite_database, uow
from svc_common.validation import parse

TODAY = dt.date(2026, 11, 22)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def admin():
    return context(role="admin")


def customer(u, name="上海申能空调", phone="13800138000", lat="31.235929", lng="121.506058", **extra):
    return handlers.create_customer(u, parse(CustomerIn, {
        "name": name, "contacts": [{"name": "王经理", "phone": phone}],
        "addresses": [{"text": "上海市浦东新区世纪大道100号", "latitude": lat, "longitude": lng}], **extra}))


def types(db):
    return [e["type"] for e in outbox_events(db)]


# -- customers -------------------------------------------------------------------------------
def test_tags_owner_team_and_custom_fields_validated_on_write(db, admin):
    owner, team = uuid.uuid4(), uuid.uuid4()
    with uow(db, admin) as u:
        handlers.add_field(u, parse(CustomFieldIn, {"entity": "customer", "key": "level", "label": "客户等级",
                                                    "type": "select", "options": ["A", "B"], "required": True}))
        handlers.add_field(u, parse(CustomFieldIn, {"entity": "customer", "key": "since", "label": "合作日期",
                                                    "type": "date"}))
    with pytest.raises(ValidationFailed) as err, uow(db, admin) as u:
        customer(u, custom_fields={"level": "C", "since": "yesterday", "nope": 1})
    assert {e["field"] for e in err.value.errors} == {"custom_fields.level", "custom_fields.since",
                                                      "custom_fields.nope"}
    with pytest.raises(ValidationFailed) as err, uow(db, admin) as u:
        customer(u)
    assert err.value.errors == [{"field": "custom_fields.level", "message": "required"}]
    with uow(db, admin) as u:
        c = customer(u, tags=["VIP", "VIP", "物业"], owner_id=str(owner), team_id=str(team),
                     custom_fields={"level": "A", "since": "2024-03-01"})
    assert c.tags == ["VIP", "物业"] and c.owner_id == owner and c.team_id == team
    assert c.custom_fields == {"level": "A", "since": "2024-03-01"}
    with uow(db, admin) as u:
        assert handlers.list_customers(u, None, 0, 10, tag="VIP")[1] == 1
        assert handlers.list_customers(u, None, 0, 10, tag="其他")[1] == 0
        assert handlers.list_customers(u, None, 0, 10, owner_id=owner)[1] == 1
        assert handlers.list_customers(u, "138-0013-8000", 0, 10)[1] == 1  # by phone


def test_custom_fields_add_reorder_edit_delete_and_builtins_fixed(db, admin):
    with uow(db, admin) as u:
        for key in ("a", "b", "c"):
            handlers.add_field(u, parse(CustomFieldIn, {"entity": "equipment", "key": key, "label": key.upper(),
                                                        "type": "text"}))
        with pytest.raises(ValidationFailed):
            handlers.add_field(u, parse(CustomFieldIn, {"entity": "equipment", "key": "serial_number",
                                                        "label": "x", "type": "text"}))
        with pytest.raises(Conflict):
            handlers.update_field(u, "equipment", "model", CustomFieldPatch(label="型号2"))
        with pytest.raises(Conflict):
            handlers.delete_field(u, "equipment", "serial_number")
        handlers.reorder_fields(u, CustomFieldOrderIn(entity="equipment", keys=["c", "a", "b"]))
        handlers.update_field(u, "equipment", "a", CustomFieldPatch(label="甲", required=True))
        handlers.delete_field(u, "equipment", "b")
        with pytest.raises(ValidationFailed):
            handlers.reorder_fields(u, CustomFieldOrderIn(entity="equipment", keys=["a"]))
    with uow(db, admin) as u:
        fields = handlers.list_fields(u, "equipment")
    builtin = [f for f in fields if f["builtin"]]
    assert builtin[0]["key"] == "model" and all(f["type"] == "builtin" for f in builtin)
    assert [(f["key"], f["label"], f.get("required")) for f in fields if not f["builtin"]] == \
        [("c", "C", False), ("a", "甲", True)]
    with pytest.raises(Forbidden), uow(db, context(role="technician")) as u:
        handlers.add_field(u, parse(CustomFieldIn, {"entity": "customer", "key": "x", "label": "x", "type": "text"}))


def test_duplicates_on_name_and_phone(db, admin):
    with uow(db, admin) as u:
        first = customer(u)
    with pytest.raises(Conflict) as err, uow(db, admin) as u:
        customer(u, name=" 上海申能 空调 ", phone="13900000000")
    assert err.value.errors[0]["field"] == "name"
    with pytest.raises(Conflict) as err, uow(db, admin) as u:
        customer(u, name="别的公司", phone="+86 138-0013-8000")
    assert err.value.errors[0]["field"] == "contacts.phone"
    with uow(db, admin) as u:
        customer(u, name="上海申能空调", phone="13900000000", allow_duplicate=True)
        matches = handlers.find_duplicates(u, "上海申能空调", ["13800138000"])
    assert {tuple(f) for _, f in matches} == {("contacts.phone", "name"), ("name",)}
    assert first.id in {c.id for c, _ in matches}


def test_nearby_customers_within_radius_nearest_first(db, admin):
    with uow(db, admin) as u:
        near = customer(u, name="近", phone="13800000001", lat="31.236000", lng="121.506000")
        mid = customer(u, name="中", phone="13800000002", lat="31.245000", lng="121.506000")  # ~1 km north
        customer(u, name="远", phone="13800000003", lat="31.400000", lng="121.506000")  # ~18 km
    with uow(db, admin) as u:
        found = handlers.nearby_customers(u, Decimal("31.235929"), Decimal("121.506058"), 2000, 10)
    assert [r["customer_id"] for r in found] == [near.id, mid.id]
    assert found[0]["distance_m"] < 20 and 950 < found[1]["distance_m"] < 1050
    with uow(db, context()) as u:  # another tenant sees none
        assert handlers.nearby_customers(u, Decimal("31.235929"), Decimal("121.506058"), 2000, 10) == []


def test_change_request_applies_only_when_approved_keeping_old_and_new(db, admin):
    tech = context(tenant_id=admin.tenant_id, role="technician")
    with uow(db, admin) as u:
        c = customer(u)
    with pytest.raises(Forbidden), uow(db, tech) as u:
        handlers.update_customer(u, c.id, CustomerPatch(name="改名"))
    with uow(db, tech) as u:
        request = handlers.request_change(u, c.id, parse(ChangeRequestIn, {
            "changes": {"name": "上海申能空调有限公司", "contacts": [{"name": "李工", "phone": "13911112222"}]},
            "reason": "客户更名"}))
    assert request.number == "CR000001" and request.status == "pending"
    assert request.changes["name"] == {"old": "上海申能空调", "new": "上海申能空调有限公司"}
    assert request.changes["contacts"]["old"] == [{"name": "王经理", "phone": "13800138000"}]
    with uow(db, admin) as u:
        assert handlers.get_customer(u, c.id).name == "上海申能空调"  # not applied yet
    with pytest.raises(Forbidden), uow(db, tech) as u:
        handlers.approve_change(u, request.id, None)
    with uow(db, admin) as u:
        handlers.approve_change(u, request.id, "核实无误")
    with uow(db, admin) as u:
        loaded = handlers.get_customer(u, c.id)
        assert loaded.name == "上海申能空调有限公司" and loaded.contacts[0].phone == "13911112222"
        assert handlers.find_duplicates(u, None, ["13911112222"])[0][0].id == c.id
        with pytest.raises(Conflict):
            handlers.reject_change(u, request.id, None)
    assert types(db)[-3:] == ["customer.change_requested", "customer.change_approved", "customer.updated"]
    approved = outbox_events(db)[-2]["data"]
    assert {"field": "name", "old": "上海申能空调", "new": "上海申能空调有限公司"} in approved["changes"]


def test_rejected_change_request_changes_nothing(db, admin):
    with uow(db, admin) as u:
        c = customer(u)
        request = handlers.request_change(u, c.id, parse(ChangeRequestIn, {"changes": {"tags": ["VIP"]}}))
        with pytest.raises(ValidationFailed):
            handlers.request_change(u, c.id, parse(ChangeRequestIn, {"changes": {"tags": []}}))
    with uow(db, admin) as u:
        assert handlers.reject_change(u, request.id, "无依据").status == "rejected"
    with uow(db, admin) as u:
        assert handlers.get_customer(u, c.id).tags == []


# -- import / export -------------------------------------------------------------------------
def xlsx(rows):
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_import_is_all_or_nothing_with_a_row_by_row_report(db, admin):
    with uow(db, admin) as u:
        handlers.add_field(u, parse(CustomFieldIn, {"entity": "customer", "key": "level", "label": "客户等级",
                                                    "type": "select", "options": ["A", "B"]}))
        customer(u, name="已存在", phone="13700000000")
    bad = xlsx([["客户名称", "联系人", "联系电话", "地址", "纬度", "经度", "标签", "客户等级"],
                ["甲公司", "张三", 13800000001, "北京", "39.9", "116.4", "VIP,重点", "A"],
                ["", "李四", "13800000002", None, None, None, None, None],
                ["乙公司", "王五", "12", "上海", "95", "121", None, "C"],
                ["甲公司", "赵六", "13800000001", None, None, None, None, None],
                ["已存在", "钱七", "13700000000", None, None, None, None, None]])
    with pytest.raises(ValidationFailed) as err, uow(db, admin) as u:
        handlers.import_customers(u, bad, "xlsx")
    fields = {e["field"] for e in err.value.errors}
    assert {"rows.3.name", "rows.4.contact_phone", "rows.4.latitude", "rows.4.custom_fields.level",
            "rows.5.name", "rows.5.contact_phone", "rows.6.name", "rows.6.contact_phone"} <= fields
    assert "rows.2.name" not in fields
    with uow(db, admin) as u:
        assert handlers.list_customers(u, None, 0, 50)[1] == 1  # nothing imported
    good = "客户名称,联系人,联系电话,地址,纬度,经度,标签,客户等级\n甲公司,张三,13800000001,北京,39.9,116.4,\"VIP,重点\",A\n" \
           "丙公司,,,,,,,\n"
    with uow(db, admin) as u:
        assert handlers.import_customers(u, good.encode("utf-8-sig"), "csv") == {"imported": 2}
    with uow(db, admin) as u:
        rows, total = handlers.list_customers(u, "甲公司", 0, 10)
        assert total == 1 and rows[0].tags == ["VIP", "重点"] and rows[0].custom_fields == {"level": "A"}
        assert rows[0].contacts[0].phone == "13800000001"
        exported = handlers.export_customers(u, "xlsx", "zh-CN")
        csv_text = handlers.export_customers(u, "csv", "en").decode("utf-8-sig")
    sheet = load_workbook(io.BytesIO(exported)).active
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert table[0][:3] == ["客户名称", "联系人", "联系电话"] and table[0][-1] == "客户等级"
    assert ["甲公司", "张三", "13800000001"] == table[2][:3] and table[2][-1] == "A"
    assert csv_text.splitlines()[0].startswith("Name,Contact,Phone")
    # the export reads back as an import of the same rows (duplicates now, so refused, row by row)
    with pytest.raises(ValidationFailed) as err, uow(db, admin) as u:
        handlers.import_customers(u, exported, "xlsx")
    assert "rows.2.name" in {e["field"] for e in err.value.errors}


# -- templates and equipment -----------------------------------------------------------------
def test_equipment_from_template_fills_model_warranty_and_maintenance(db, admin):
    with uow(db, admin) as u:
        c = customer(u)
        template = handlers.create_template(u, parse(ProductTemplateIn, {
            "model": "KFR-72LW", "name": "格力柜机", "specs": {"功率": "3P"}, "maintenance_interval_days": 90,
            "warranty_months": 24}))
        eq = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "serial_number": "SN-1", "template_id": str(template.id), "install_date": "2026-01-10",
            "address_id": str(c.addresses[0].id)}))
        with pytest.raises(ValidationFailed):
            handlers.register_equipment(u, c.id, parse(EquipmentIn, {"serial_number": "SN-2"}))  # no model
    assert eq.model == "KFR-72LW" and eq.warranty_end == dt.date(2028, 1, 9)
    assert eq.maintenance_interval_days == 90 and eq.next_maintenance_date == dt.date(2026, 4, 10)
    with uow(db, admin) as u:
        snap = handlers.service_snapshot(u, c.id, eq.id, TODAY)
    assert snap["address"] == "上海市浦东新区世纪大道100号" and snap["under_warranty"] is True
    registered = outbox_events(db)[-1]["data"]
    assert registered["address_id"] == str(c.addresses[0].id) and registered["latitude"] == "31.235929"
    assert registered["next_maintenance_date"] == "2026-04-10"


def test_ticket_events_build_service_history_and_restart_maintenance(db, admin):
    with uow(db, admin) as u:
        c = customer(u)
        eq = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "KFR", "serial_number": "SN-1", "maintenance_interval_days": 30,
            "next_maintenance_date": "2026-11-01"}))
    ticket, tech = uuid.uuid4(), uuid.uuid4()
    sys = system_context(admin.tenant_id)
    with uow(db, sys) as u:
        handlers.apply_ticket_event(u, "ticket.created", {"ticket_id": str(ticket), "number": "WO000001",
                                                          "type": "maintenance", "equipment_id": str(eq.id)},
                                    dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc))
        handlers.apply_ticket_event(u, "ticket.completed", {
            "ticket_id": str(ticket), "number": "WO000001", "type": "maintenance", "equipment_id": str(eq.id),
            "technician_id": str(tech), "summary": "清洗滤网", "completed_at": "2026-11-21T08:00:00+00:00"},
            dt.datetime(2026, 11, 21, 8, 0, 1, tzinfo=dt.timezone.utc))
    with uow(db, admin) as u:
        history = handlers.equipment_history(u, eq.id)
        loaded = handlers.get_equipment(u, eq.id)
    assert [h.event_type for h in history] == ["ticket.completed", "ticket.created"]
    assert history[0].summary == "清洗滤网" and history[0].technician_id == tech
    assert loaded.last_maintenance_date == dt.date(2026, 11, 21)
    assert loaded.next_maintenance_date == dt.date(2026, 12, 21)


# -- QR codes --------------------------------------------------------------------------------
def test_batch_bind_public_scan_and_fault_report(db, admin):
    tech = context(tenant_id=admin.tenant_id, role="technician")
    with uow(db, admin) as u:
        c = customer(u)
        batch = handlers.create_batch(u, QrBatchIn(size=500))
    with uow(db, admin) as u:
        codes, total = handlers.list_codes(u, batch.id, "unused", 0, None)
        assert total == 500 and len({x.code for x in codes}) == 500
        assert all(domain.normalize_code(x.code) == x.code for x in codes)
        assert handlers.get_batch(u, batch.id)["bound"] == 0
    code = codes[0].code
    with uow(db, tech) as u:
        scan = handlers.scan_code(u, code.lower())
        assert scan["status"] == "unused" and scan["can_bind"] is True
    with pytest.raises(Forbidden), uow(db, context(tenant_id=admin.tenant_id, role="dispatcher")) as u:
        handlers.bind_code(u, code, parse(BindIn, {"equipment_id": str(uuid.uuid4())}))
    with uow(db, tech) as u:
        row, eq = handlers.bind_code(u, domain.printed_code(code), parse(BindIn, {"equipment": {
            "customer_id": str(c.id), "model": "KFR-72LW", "serial_number": "SN-QR-1", "warranty_end": "2027-06-30"}}))
    assert row.status == "bound" and row.equipment_id == eq.id
    with pytest.raises(Conflict), uow(db, tech) as u:
        handlers.bind_code(u, code, parse(BindIn, {"equipment_id": str(eq.id)}))
    with pytest.raises(Conflict), uow(db, tech) as u:  # one code per equipment
        handlers.bind_code(u, codes[1].code, parse(BindIn, {"equipment_id": str(eq.id)}))
    assert types(db).count("qrcode.bound") == 1

    # public: the tenant comes from the code; no personal data on the page
    with db.session(None) as session:
        assert handlers.tenant_of_code(session, code) == admin.tenant_id
        assert handlers.tenant_of_code(session, "0000-0000-0000") is None
    public = context(tenant_id=admin.tenant_id, role="public")
    with uow(db, public) as u:
        page = handlers.public_scan(u, code, TODAY)
    assert page["equipment"]["serial_number"] == "SN-QR-1"
    assert page["equipment"]["warranty_state"] == "in_warranty"
    text = repr(page)
    assert "上海申能" not in text and "13800138000" not in text and "王经理" not in text
    with pytest.raises(ValidationFailed) as err, uow(db, public) as u:
        handlers.report_fault(u, code, FaultReportIn(description="aaaaaaaaaaaaaaa", contact_phone="123"), TODAY)
    assert {e["field"] for e in err.value.errors} == {"description", "contact_phone"}
    with pytest.raises(ValidationFailed), uow(db, public) as u:
        handlers.report_fault(u, code, FaultReportIn(description="空调不制冷 http://spam.example",
                                                     contact_phone="13800138000"), TODAY)
    with pytest.raises(Conflict), uow(db, public) as u:  # unbound code: nothing to report on
        handlers.report_fault(u, codes[2].code, FaultReportIn(description="空调不制冷", contact_phone="13800138000"),
                              TODAY)
    with uow(db, public) as u:
        report = handlers.report_fault(u, code, FaultReportIn(
            description="空调不制冷，有异响", contact_phone="139 1234 5678",
            photo_base64=base64.b64encode(PNG).decode(), photo_type="image/png"), TODAY)
    assert report.number == "FR000001"
    event = outbox_events(db)[-1]
    assert event["type"] == "equipment.fault_reported"
    assert event["data"]["channel"] == "qr_scan" and event["data"]["customer_id"] == str(c.id)
    assert event["data"]["equipment_id"] == str(eq.id) and event["data"]["has_photo"] is True
    with uow(db, admin) as u:
        assert handlers.fault_photo(u, report.id) == (PNG, "image/png")
        assert handlers.get_batch(u, batch.id)["bound"] == 1
    with pytest.raises(NotFound), uow(db, context()) as u:  # another tenant cannot scan it logged in
        handlers.scan_code(u, code)


# -- reminders -------------------------------------------------------------------------------
def test_reminders_fire_once_per_equipment_kind_and_due_date(db, admin):
    with uow(db, admin) as u:
        c = customer(u, owner_id=str(uuid.uuid4()))
        soon = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "A", "serial_number": "W1", "warranty_end": "2026-12-10"}))
        handlers.register_equipment(u, c.id, parse(EquipmentIn, {  # too far out
            "model": "B", "serial_number": "W2", "warranty_end": "2027-12-10"}))
        due = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "C", "serial_number": "M1", "maintenance_interval_days": 90,
            "next_maintenance_date": "2026-11-25"}))
        late = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "D", "serial_number": "M2", "maintenance_interval_days": 90,
            "next_maintenance_date": "2026-11-10"}))
        inspected = handlers.register_equipment(u, c.id, parse(EquipmentIn, {
            "model": "F", "serial_number": "I1", "inspection_interval_days": 30, "install_date": "2026-10-27"}))
        handlers.register_equipment(u, c.id, parse(EquipmentIn, {  # scrapped: never reminded
            "model": "E", "serial_number": "M3", "next_maintenance_date": "2026-11-24", "status": "scrapped"}))
        handlers.set_reminder_rule(u, "maintenance_due", ReminderRuleIn(days=5, auto_create_order=True))
    sys = system_context(admin.tenant_id)
    with uow(db, sys) as u:
        result = handlers.evaluate_reminders(u, TODAY)
    assert result == {"sent": {"warranty_expiring": 1, "maintenance_due": 1, "maintenance_overdue": 1,
                               "inspection_due": 1, "inspection_overdue": 0}, "cursor": None}
    events = {e["type"]: e["data"] for e in outbox_events(db) if e["type"].startswith("equipment.")
              and e["type"] != "equipment.registered"}
    assert events["equipment.warranty_expiring"]["equipment_id"] == str(soon.id)
    assert events["equipment.warranty_expiring"]["days_left"] == 18
    assert events["equipment.maintenance_due"]["equipment_id"] == str(due.id)
    assert events["equipment.maintenance_due"]["create_work_order"] is True
    overdue = events["equipment.maintenance_overdue"]
    assert overdue["equipment_id"] == str(late.id) and overdue["due_date"] == "2026-11-10"
    assert overdue["customer_name"] == "上海申能空调" and overdue["contact_phone"] == "13800138000"
    assert overdue["owner_id"] == str(c.owner_id)
    assert events["equipment.inspection_due"]["equipment_id"] == str(inspected.id)
    assert events["equipment.inspection_due"]["due_date"] == "2026-11-26"
    # a second run (a restart, another instance) sends nothing again
    with uow(db, sys) as u:
        assert not any(handlers.evaluate_reminders(u, TODAY)["sent"].values())
    # a new due date is a new reminder
    with uow(db, admin) as u:
        u.session.get(type(late), late.id).next_maintenance_date = dt.date(2026, 11, 26)
    with uow(db, sys) as u:
        assert handlers.evaluate_reminders(u, TODAY)["sent"]["maintenance_due"] == 1
    with db.session(None) as s:
        assert s.query(ReminderSent).count() == 5


def test_reminders_work_through_large_sets_in_chunks_with_a_cursor(db, admin):
    with uow(db, admin) as u:
        c = customer(u)
        for i in range(25):
            handlers.register_equipment(u, c.id, parse(EquipmentIn, {
                "model": "A", "serial_number": f"S{i}", "warranty_end": str(TODAY + dt.timedelta(days=i % 3)),
                "next_maintenance_date": str(TODAY + dt.timedelta(days=1))}))
    sys = system_context(admin.tenant_id)
    runs, cursor = [], None
    while True:
        with uow(db, sys) as u:
            result = handlers.evaluate_reminders(u, TODAY, chunk=10, cursor=cursor)
        runs.append(result["sent"])
        cursor = result["cursor"]
        if cursor is None:
            break
    assert sum(r["warranty_expiring"] for r in runs) == 25 and sum(r["maintenance_due"] for r in runs) == 25
    assert runs[0]["warranty_expiring"] == 10 and len(runs) == 5  # 10, 10, 5 + 10, 10, 5
    due = [e["data"]["equipment_id"] for e in outbox_events(db) if e["type"] == "equipment.warranty_expiring"]
    assert len(due) == len(set(due)) == 25
