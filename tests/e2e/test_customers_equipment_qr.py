"""QR maintenance codes and reminders end to end, through the gateway, with every service running as
processes on the real PostgreSQL and RabbitMQ — and two instances of customers, so the reminder timer
runs twice at once: batch → ZIP export (every PNG decoded back) → PDF → scan unbound → bind to new
equipment → anonymous scan → fault report (and junk refused, rate limit) → reminder events exactly
once → work order from equipment → service history."""
import datetime as dt
import io
import json
import threading
import uuid
import zipfile

import kombu
import pytest
from PIL import Image

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import Api, eventually

try:
    import zxingcpp  # QR decoder (zxing-cpp), test-only dependency
except ImportError as exc:  # not a skip: the check of the labels needs a real decoder
    raise ImportError("tests/e2e/test_qr_codes_flow.py needs the zxing-cpp package (pip install zxing-cpp)") from exc

pytestmark = pytest.mark.e2e

EVENTS = ("equipment.warranty_expiring", "equipment.maintenance_due", "equipment.maintenance_overdue",
          "equipment.fault_reported", "qrcode.bound")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    servers.require_postgres()
    servers.require_rabbitmq()
    with running_stack(tmp_path_factory.mktemp("qrstack"), instances={"customers": 2},
                       extra_env={"REMINDER_INTERVAL_SECONDS": "1"}) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client


class EventTap:
    """A queue of our own on customers.events, as an analytics consumer would bind one."""

    def __init__(self, amqp_uri: str):
        self.events: list[dict] = []
        self.conn = kombu.Connection(amqp_uri)
        exchange = kombu.Exchange("customers.events", type="topic", durable=True)
        queue = kombu.Queue(f"test-tap-{uuid.uuid4().hex[:8]}", exchange, routing_key="#", auto_delete=True)
        self.consumer = kombu.Consumer(self.conn.channel(), [queue], callbacks=[self._on], accept=["json"])
        self.consumer.consume()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on(self, body, message):
        self.events.append(json.loads(body) if isinstance(body, (str, bytes)) else body)
        message.ack()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
            except OSError:
                if not self.stop.is_set():
                    raise

    def of(self, event_type: str, **data) -> list[dict]:
        return [e for e in list(self.events) if e["type"] == event_type
                and all(e["data"].get(k) == v for k, v in data.items())]

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.conn.release()


def decode(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found, "no QR code found in the label"
    return found[0].text


def test_batch_export_bind_scan_report_and_reminders(api, stack):
    tap = EventTap(stack.config.amqp_uri)
    try:
        run_flow(api, stack, tap)
    finally:
        tap.close()


def run_flow(api, stack, tap):
    co = api.new_company()
    admin, tech, dispatcher = co["admin"], co["tech"], co["dispatcher"]
    customer = api.ok("POST", "/customers", admin, json={
        "name": "上海申能大厦物业", "contacts": [{"name": "王经理", "phone": "13912345678"}],
        "addresses": [{"text": "上海市浦东新区世纪大道100号", "latitude": "31.235929", "longitude": "121.506058"}]})

    # 1. a batch of codes, listed with status
    batch = api.ok("POST", "/qr-batches", admin, json={"size": 300, "note": "E2E"})
    assert batch["size"] == 300 and batch["number"].startswith("QB") and batch["bound"] == 0
    codes = api.ok("GET", f"/qr-codes?batch_id={batch['id']}&limit=500", admin)
    assert codes["total"] == 300 and {c["status"] for c in codes["items"]} == {"unused"}
    by_code = {c["code"]: c for c in codes["items"]}

    # 2. ZIP of PNG labels: every label decodes to the gateway URL of its own code
    response = api.request("GET", f"/qr-batches/{batch['id']}/labels.zip", admin)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert len(names) == 300
    decoded = {decode(archive.read(name)) for name in names}
    assert decoded == {f"{stack.gateway_url}/q/{code}" for code in by_code}
    # a batch large enough to be rendered by worker processes comes out whole and in order too
    large = api.ok("POST", "/qr-batches", admin, json={"size": 2500})
    response = api.request("GET", f"/qr-batches/{large['id']}/labels.zip", admin)
    assert response.status_code == 200, response.text
    archive_large = zipfile.ZipFile(io.BytesIO(response.content))
    large_names = archive_large.namelist()
    assert len(large_names) == 2500 and large_names == sorted(large_names)
    large_codes = {c["code"] for c in api.ok("GET", f"/qr-codes?batch_id={large['id']}&limit=500", admin)["items"]}
    for name in large_names[:500:25]:
        assert decode(archive_large.read(name)).removeprefix(f"{stack.gateway_url}/q/") in large_codes
    # the PDF sheet and one label alone
    pdf = api.request("GET", f"/qr-batches/{batch['id']}/labels.pdf", admin)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and len(pdf.content) > 10_000
    code = codes["items"][0]["code"]
    single = api.request("GET", f"/qr-codes/{code}/label.png", admin)
    assert decode(single.content) == f"{stack.gateway_url}/q/{code}"
    # codes are not sequential and not another company's
    other = api.new_company()
    assert api.request("GET", f"/scan/{code}", other["admin"]).status_code == 404

    # 3. a technician scans the unbound code: registration; binds it to new equipment (建档贴码)
    scan = api.ok("GET", f"/scan/{code}", tech)
    assert scan["status"] == "unused" and scan["can_bind"] is True and scan["equipment"] is None
    today = dt.date.today()
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    bound = api.ok("POST", f"/qr-codes/{code}/bind", tech, json={"equipment": {
        "customer_id": customer["id"], "model": "格力 KFR-72LW", "serial_number": serial,
        "address_id": customer["addresses"][0]["id"], "install_date": str(today - dt.timedelta(days=300)),
        "warranty_end": str(today + dt.timedelta(days=10)), "maintenance_interval_days": 90,
        "next_maintenance_date": str(today + dt.timedelta(days=3))}})
    equipment = bound["equipment"]
    assert bound["code"]["status"] == "bound" and bound["code"]["equipment_id"] == equipment["id"]
    assert api.request("POST", f"/qr-codes/{code}/bind", tech,
                       json={"equipment_id": equipment["id"]}).status_code == 409
    assert api.ok("GET", f"/qr-batches/{batch['id']}", admin)["bound"] == 1
    assert api.ok("GET", f"/qr-codes?batch_id={batch['id']}&status=bound", admin)["total"] == 1

    # 4. anyone scanning the bound code sees the equipment, no personal data
    public = api.ok("GET", f"/public/qr/{code}")
    assert public["status"] == "bound" and public["equipment"]["serial_number"] == serial
    assert public["equipment"]["warranty_state"] == "in_warranty"
    assert "王经理" not in json.dumps(public, ensure_ascii=False) and "13912345678" not in json.dumps(public)
    assert api.request("GET", "/public/qr/0000-0000-0000").status_code == 404

    # 5. the customer reports a fault; junk is refused with a clear message
    junk = api.request("POST", f"/public/qr/{code}/fault-reports", json={"description": "1111", "contact_phone": "1"})
    assert junk.status_code == 422
    assert {e["field"] for e in junk.json()["errors"]} == {"description", "contact_phone"}
    report = api.request("POST", f"/public/qr/{code}/fault-reports",
                         json={"description": "空调不制冷，外机有异响", "contact_phone": "13912345678"})
    assert report.status_code == 201, report.text
    number = report.json()["number"]
    reports = api.ok("GET", f"/fault-reports?equipment_id={equipment['id']}", dispatcher)
    assert [r["number"] for r in reports["items"]] == [number]
    fault = eventually(lambda: tap.of("equipment.fault_reported", equipment_id=equipment["id"]))
    assert fault[0]["data"]["customer_id"] == customer["id"] and fault[0]["data"]["channel"] == "qr_scan"
    # the form is rate-limited per client
    statuses = [api.request("POST", f"/public/qr/{code}/fault-reports",
                            json={"description": "再次报修测试", "contact_phone": "13912345678"}).status_code
                for _ in range(5)]
    assert 429 in statuses and statuses[-1] == 429

    # 6. reminders: the timers of both instances run every second; each fires once per due date
    warranty = eventually(lambda: tap.of("equipment.warranty_expiring", equipment_id=equipment["id"]), timeout=30)
    due = eventually(lambda: tap.of("equipment.maintenance_due", equipment_id=equipment["id"]), timeout=30)
    assert warranty[0]["data"]["due_date"] == str(today + dt.timedelta(days=10))
    assert due[0]["data"]["days_left"] == 3 and due[0]["data"]["customer_name"] == "上海申能大厦物业"
    assert due[0]["data"]["contact_phone"] == "13912345678"
    stack.wait_timer_runs("customers", "evaluate_reminders")  # more runs of both instances: no second event
    assert len(tap.of("equipment.warranty_expiring", equipment_id=equipment["id"])) == 1
    assert len(tap.of("equipment.maintenance_due", equipment_id=equipment["id"])) == 1
    assert len(tap.of("qrcode.bound", equipment_id=equipment["id"])) == 1

    # 7. a work order from the equipment takes its customer and install address; history follows
    order = api.ok("POST", f"/equipment/{equipment['id']}/work-orders", dispatcher,
                   json={"type": "maintenance", "description": "季度保养"})
    assert order["customer_id"] == customer["id"] and order["address"] == "上海市浦东新区世纪大道100号"
    assert order["serial_number"] == serial
    history = eventually(lambda: api.ok("GET", f"/equipment/{equipment['id']}/history", tech)["items"])
    assert history[0]["ticket_id"] == order["id"] and history[0]["event_type"] == "ticket.created"
    detail = api.ok("GET", f"/customers/{customer['id']}/detail", dispatcher)
    assert [w["id"] for w in detail["work_orders"]] == [order["id"]]
    assert [e["id"] for e in detail["equipment"]] == [equipment["id"]]


# -- customers through the gateway ---------------------------------------------------------------
def xlsx(rows) -> bytes:
    from openpyxl import Workbook
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_customer_records_fields_duplicates_nearby_import_export(api):
    co = api.new_company()
    admin, dispatcher, tech = co["admin"], co["dispatcher"], co["tech"]
    # custom fields: add, reorder, edit, delete; built-ins fixed; validated on write
    for key, label in (("level", "客户等级"), ("industry", "行业"), ("since", "合作日期")):
        body = {"entity": "customer", "key": key, "label": label,
                "type": {"level": "select", "industry": "text", "since": "date"}[key]}
        if key == "level":
            body["options"] = ["A", "B", "C"]
        api.ok("POST", "/custom-fields", admin, json=body)
    assert api.request("POST", "/custom-fields", dispatcher, json={
        "entity": "customer", "key": "x", "label": "x", "type": "text"}).status_code == 403
    assert api.request("PATCH", "/custom-fields/customer/name", admin, json={"label": "名字"}).status_code == 409
    assert api.request("DELETE", "/custom-fields/customer/tags", admin).status_code == 409
    api.ok("PUT", "/custom-fields/order", admin, json={"entity": "customer", "keys": ["since", "level", "industry"]})
    api.ok("PATCH", "/custom-fields/customer/level", admin, json={"label": "等级", "required": True})
    assert api.ok("DELETE", "/custom-fields/customer/industry", admin) == {"deleted": "industry"}
    fields = api.ok("GET", "/custom-fields?entity=customer", dispatcher)["items"]
    assert fields[0] == {**fields[0], "key": "name", "builtin": True}
    assert [(f["key"], f["label"]) for f in fields if not f["builtin"]] == [("since", "合作日期"), ("level", "等级")]

    bad = api.request("POST", "/customers", dispatcher, json={"name": "华东制冷", "custom_fields": {"level": "Z"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "custom_fields.level"
    owner = co["ids"]["dispatcher"]
    first = api.ok("POST", "/customers", dispatcher, json={
        "name": "华东制冷", "tags": ["重点", "VIP"], "owner_id": owner, "team_id": str(uuid.uuid4()),
        "custom_fields": {"level": "A", "since": "2023-05-01"},
        "contacts": [{"name": "陈工", "phone": "13612345678"}],
        "addresses": [{"text": "上海市徐汇区漕溪北路1号", "latitude": "31.193000", "longitude": "121.437000"}]})
    assert first["tags"] == ["重点", "VIP"] and first["owner_id"] == owner
    # duplicates on name and on phone
    again = api.request("POST", "/customers", dispatcher, json={
        "name": "华东 制冷", "custom_fields": {"level": "B"}})
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "name"
    dup = api.ok("GET", "/customers/duplicates?phone=136-1234-5678", dispatcher)
    assert [d["customer"]["id"] for d in dup["items"]] == [first["id"]]
    assert dup["items"][0]["matched_on"] == ["contacts.phone"]
    second = api.ok("POST", "/customers", dispatcher, json={
        "name": "浦东设备", "custom_fields": {"level": "B"},
        "addresses": [{"text": "上海市浦东新区", "latitude": "31.230000", "longitude": "121.540000"}]})
    # nearby: within 6 km of 徐汇 only the first; within 20 km both, nearest first
    near = api.ok("GET", "/customers/nearby?latitude=31.19&longitude=121.44&radius_m=6000", tech)
    assert [n["customer_id"] for n in near["items"]] == [first["id"]]
    wide = api.ok("GET", "/customers/nearby?latitude=31.19&longitude=121.44&radius_m=20000", tech)
    assert [n["customer_id"] for n in wide["items"]] == [first["id"], second["id"]]
    assert near["items"][0]["contact_phone"] == "13612345678" and near["items"][0]["distance_m"] < 1000
    assert api.request("GET", "/customers/nearby?latitude=91&longitude=0", tech).status_code == 422
    assert api.ok("GET", "/customers?tag=重点", tech)["total"] == 1

    # import: all or nothing, row by row
    bad_file = xlsx([["客户名称", "联系人", "联系电话", "地址", "纬度", "经度", "标签", "等级"],
                     ["新客户一", "甲", "13700000001", "杭州", "30.27", "120.15", "新", "A"],
                     ["华东制冷", "乙", "13700000002", None, None, None, None, "B"],
                     ["新客户三", "丙", "12", None, None, None, None, "Q"]])
    refused = api.request("POST", "/customers/import?format=xlsx", admin, content=bad_file,
                          headers={"content-type": XLSX})
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["errors"]} == {"rows.3.name", "rows.4.contact_phone",
                                                                "rows.4.custom_fields.level"}
    assert api.ok("GET", "/customers", admin)["total"] == 2
    good = "客户名称,联系人,联系电话,地址,纬度,经度,标签,等级\n新客户一,甲,13700000001,杭州,30.27,120.15,新,A\n"
    imported = api.ok("POST", "/customers/import", admin, content=good.encode("utf-8-sig"),
                      headers={"content-type": "text/csv"})
    assert imported == {"imported": 1}
    exported = api.request("GET", "/customers/export?format=xlsx", admin)
    assert exported.status_code == 200 and exported.headers["content-type"] == XLSX
    from openpyxl import load_workbook
    table = [list(r) for r in load_workbook(io.BytesIO(exported.content)).active.iter_rows(values_only=True)]
    assert table[0][0] == "客户名称" and table[0][-2:] == ["合作日期", "等级"]
    assert sorted(r[0] for r in table[1:]) == sorted(["华东制冷", "浦东设备", "新客户一"])
    csv_text = api.request("GET", "/customers/export?format=csv", admin).content.decode("utf-8-sig")
    assert "新客户一,甲,13700000001,杭州" in csv_text

    # change requests: a technician asks, the admin approves; old and new kept
    assert api.request("PATCH", f"/customers/{first['id']}", tech, json={"name": "改"}).status_code == 403
    request = api.ok("POST", f"/customers/{first['id']}/change-requests", tech, json={
        "changes": {"name": "华东制冷设备有限公司", "custom_fields": {"level": "B", "since": "2023-05-01"}},
        "reason": "营业执照更名"})
    assert request["status"] == "pending"
    assert request["changes"]["name"] == {"old": "华东制冷", "new": "华东制冷设备有限公司"}
    assert api.ok("GET", f"/customers/{first['id']}", tech)["name"] == "华东制冷"
    assert api.request("POST", f"/customer-change-requests/{request['id']}/approve", tech).status_code == 403
    pending = api.ok("GET", "/customer-change-requests?status=pending", admin)
    assert [r["id"] for r in pending["items"]] == [request["id"]]
    approved = api.ok("POST", f"/customer-change-requests/{request['id']}/approve", admin, json={"note": "已核实"})
    assert approved["status"] == "approved" and approved["decision_note"] == "已核实"
    changed = api.ok("GET", f"/customers/{first['id']}", tech)
    assert changed["name"] == "华东制冷设备有限公司" and changed["custom_fields"]["level"] == "B"
    patched = api.ok("PATCH", f"/customers/{first['id']}", dispatcher, json={"tags": ["VIP"]})
    assert patched["tags"] == ["VIP"]
    detail = api.ok("GET", f"/customers/{first['id']}/detail", dispatcher)
    assert [r["id"] for r in detail["change_requests"]] == [request["id"]] and detail["work_orders"] == []

    # another company sees none of it
    other = api.new_company()
    assert api.request("GET", f"/customers/{first['id']}", other["admin"]).status_code == 404
    assert api.ok("GET", "/customers/nearby?latitude=31.19&longitude=121.44&radius_m=20000",
                  other["admin"])["items"] == []


def test_templates_equipment_and_reminder_rules(api):
    co = api.new_company()
    admin, tech = co["admin"], co["tech"]
    customer = api.ok("POST", "/customers", admin, json={
        "name": "模板客户", "addresses": [{"text": "苏州工业园区", "latitude": "31.3", "longitude": "120.7"}]})
    template = api.ok("POST", "/product-templates", admin, json={
        "model": "RC-500", "name": "商用冷柜", "brand": "海尔", "specs": {"容积": "500L"},
        "maintenance_interval_days": 180, "warranty_months": 12})
    assert api.request("POST", "/product-templates", admin, json={"model": "RC-500"}).status_code == 409
    equipment = api.ok("POST", f"/customers/{customer['id']}/equipment", admin, json={
        "serial_number": "RC-0001", "template_id": template["id"], "install_date": "2026-03-01",
        "address_id": customer["addresses"][0]["id"], "custom_fields": {}})
    assert equipment["model"] == "RC-500" and equipment["warranty_end"] == "2027-02-28"
    assert equipment["next_maintenance_date"] == "2026-08-28"
    assert api.request("POST", f"/customers/{customer['id']}/equipment", admin, json={
        "serial_number": "RC-0001", "model": "X"}).status_code == 409
    updated = api.ok("PATCH", f"/equipment/{equipment['id']}", tech, json={"status": "inactive"})
    assert updated["status"] == "inactive"
    listed = api.ok("GET", "/equipment?status=inactive&q=RC-", tech)
    assert [e["id"] for e in listed["items"]] == [equipment["id"]] and listed["total"] == 1
    assert api.ok("GET", "/equipment?maintenance_before=2026-09-01", tech)["total"] == 1
    rules = {r["kind"]: r for r in api.ok("GET", "/reminder-rules", admin)["items"]}
    assert rules["warranty_expiring"]["days"] == 30 and set(rules) >= {"maintenance_due", "maintenance_overdue"}
    rule = api.ok("PUT", "/reminder-rules/maintenance_due", admin, json={"days": 14, "auto_create_order": True})
    assert rule == {"kind": "maintenance_due", "days": 14, "enabled": True, "auto_create_order": True}
    assert api.request("PUT", "/reminder-rules/maintenance_due", tech, json={"days": 1}).status_code == 403
    assert api.request("PUT", "/reminder-rules/warranty_expiring", admin,
                       json={"days": 1, "auto_create_order": True}).status_code == 422


def test_demo_seed_of_the_customers_area(api, stack):
    import httpx

    from devstack import demo_customers
    co = api.new_company()
    customer = api.ok("POST", "/customers", co["admin"], json={"name": "演示客户"})
    equipment = api.ok("POST", f"/customers/{customer['id']}/equipment", co["admin"], json={
        "model": "格力 KFR-72LW", "serial_number": "DEMO-1", "install_date": "2025-06-01"})
    with httpx.Client(base_url=stack.gateway_url) as client:
        url = demo_customers.seed(client, {"Authorization": f"Bearer {co['admin']}"}, equipment["id"])
    code = url.rsplit("/", 1)[1]
    assert api.ok("GET", f"/public/qr/{code}")["equipment"]["serial_number"] == "DEMO-1"
    assert api.ok("GET", f"/equipment/{equipment['id']}", co["admin"])["next_maintenance_date"] == "2025-08-30"
