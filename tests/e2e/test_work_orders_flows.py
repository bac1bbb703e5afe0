"""Work-order flows through the gateway, with every service running as a process on the real
PostgreSQL and RabbitMQ:
- Gree (格力) hierarchical dispatch: service centre → branch (网点) → primary + assistant technician
  → check-in → per-unit data → complete → the branch closes; a reassignment request (申请改派)
  rejected and approved; an external team (委外) declining.
- 云维保 grab mode: a maintenance order published to the pool, 50 concurrent grabs with one winner,
  incomplete visit with the next visit time, completion, return visit, close; SLA overdue raised.
"""
import base64
import concurrent.futures
import uuid

import pytest

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import PASSWORD, Api, eventually

pytestmark = pytest.mark.e2e

SITE = {"latitude": "31.235929", "longitude": "121.506058"}
CUSTOMER = {"name": "上海浦东某小区 张先生", "contacts": [{"name": "张先生", "phone": "13912345678"}],
            "addresses": [{"text": "上海市浦东新区世纪大道100号", **SITE}]}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    servers.require_postgres()
    servers.require_rabbitmq()
    data = tmp_path_factory.mktemp("stack")
    # A fast SLA clock, and attachments in this run's folder.
    with running_stack(data, extra_env={"SLA_SCAN_SECONDS": "1", "TICKETS_STORAGE_DIR": str(data / "files")}) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client


def user(api, co, username, role, **extra):
    created = api.ok("POST", "/users", co["admin"], json={"username": username, "password": PASSWORD,
                                                          "name": username, "role": role, **extra})
    return created["id"], api.login(co["code"], username)


def until_ok(api, method, path, token, retry_on=(404, 422), **kwargs):
    """Retry while tickets has not yet replicated a user or team it needs (events are eventual)."""
    def attempt():
        r = api.request(method, path, token, **kwargs)
        if r.status_code in retry_on:
            return None
        assert r.status_code < 300, f"{method} {path} → {r.status_code} {r.text}"
        return r.json()
    return eventually(attempt, timeout=20)


def test_gree_hierarchical_dispatch_to_branch_close(api, stack):
    co = api.new_company()
    admin, center = co["admin"], co["dispatcher"]
    boss_id, boss = user(api, co, "pudong_boss", "dispatcher")
    t1_id, t1 = user(api, co, "gree_tech1", "technician", skills=["空调"])
    t2_id, t2 = user(api, co, "gree_tech2", "technician", skills=["空调"])
    ext_boss_id, ext_boss = user(api, co, "ext_boss", "dispatcher")
    hq = api.ok("POST", "/teams", admin, json={"name": "格力上海服务中心", "kind": "center"})
    branch = api.ok("POST", "/teams", admin, json={"name": "浦东网点", "kind": "branch", "parent_id": hq["id"],
                                                   "member_ids": [t1_id, t2_id], "manager_ids": [boss_id]})
    external = api.ok("POST", "/teams", admin, json={"name": "外协安装公司", "kind": "external",
                                                     "manager_ids": [ext_boss_id]})
    r = api.request("PATCH", f"/teams/{hq['id']}", admin, json={"parent_id": branch["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parent_id"  # no cycles
    assert api.ok("GET", f"/teams?parent_id={hq['id']}", center)["total"] == 1

    # the Gree install type: per-order fields and who closes
    api.ok("POST", "/work-order-types", admin, json={
        "code": "gree_install", "name": "格力安装", "fields": [
            {"key": "units", "label": "台数", "kind": "number", "required": True, "min": 1},
            {"key": "invoice_no", "label": "发票号", "kind": "text"}],
        "flow": {"close_roles": ["admin", "dispatcher"]}})
    customer = api.ok("POST", "/customers", admin, json=CUSTOMER)
    body = {"type": "gree_install", "customer_id": customer["id"], "description": "安装两台挂机", "priority": "high"}
    r = api.request("POST", "/work-orders", center, json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "custom_fields.units"
    order = api.ok("POST", "/work-orders", center, json={**body, "custom_fields": {"units": 2}})
    assert order["status"] == "pending_dispatch" and order["branch_id"] is None

    # centre → branch queue (once tickets has the team from team.updated)
    order = until_ok(api, "POST", f"/work-orders/{order['id']}/dispatch-to-branch", center,
                     json={"branch_id": branch["id"], "note": "就近网点"})
    assert order["branch_id"] == branch["id"] and order["status"] == "pending_dispatch"
    # the branch sees its queue; the external team's manager does not
    queue = api.ok("GET", "/work-orders?status=pending_dispatch", boss)
    assert [o["id"] for o in queue["items"]] == [order["id"]]
    assert api.ok("GET", "/work-orders", ext_boss)["total"] == 0

    # the branch asks to give it back; the centre rejects (驳回)
    api.ok("POST", f"/work-orders/{order['id']}/reassignment-request", boss, json={"reason": "师傅都在外地"})
    pending = api.ok("GET", "/work-orders?reassignment_pending=true", center)  # 待审批改派
    assert [o["id"] for o in pending["items"]] == [order["id"]]
    r = api.request("POST", f"/work-orders/{order['id']}/reassignment-request/approve", boss)
    assert r.status_code == 403
    rejected = api.ok("POST", f"/work-orders/{order['id']}/reassignment-request/reject", center,
                      json={"reason": "客户指定浦东网点"})
    assert rejected["reassignment_request"] is None and rejected["branch_id"] == branch["id"]

    # the branch dispatches to a primary and an assistant technician (协同人)
    order = until_ok(api, "POST", f"/work-orders/{order['id']}/assign", boss,
                     json={"technician_id": t1_id, "assistant_ids": [t2_id]})
    assert order["status"] == "assigned" and order["assistant_ids"] == [t2_id]
    assert [o["id"] for o in api.ok("GET", "/work-orders?scope=collaborating", t2)["items"]] == [order["id"]]
    assert [o["id"] for o in api.ok("GET", "/work-orders?scope=mine", t1)["items"]] == [order["id"]]
    api.ok("POST", f"/work-orders/{order['id']}/accept", t1)
    checked = api.ok("POST", f"/work-orders/{order['id']}/check-in", t1,
                     json={"latitude": "31.236100", "longitude": "121.506200", "accuracy_m": 12.5})
    assert checked["status"] == "in_progress" and checked["check_in_distance_m"] < 50
    assert checked["check_in_flagged"] is False and checked["check_in_accuracy_m"] == 12.5

    # per-unit data: two units, each with barcode/serial and a photo; the customer's signature
    photos = [api.ok("POST", f"/work-orders/{order['id']}/files", t1, json={
        "kind": "photo", "filename": f"unit{i}.png", "content_type": "image/png", "content_base64": PNG})
        for i in (1, 2)]
    signature = api.ok("POST", f"/work-orders/{order['id']}/files", t1, json={
        "kind": "signature", "filename": "sign.png", "content_type": "image/png", "content_base64": PNG})
    download = api.request("GET", f"/work-orders/{order['id']}/files/{photos[0]['id']}", boss)
    assert download.status_code == 200 and download.content == base64.b64decode(PNG)
    assert download.headers["content-type"] == "image/png"
    # 数据采集: one unit saved, then the next, then the order is completed (完结工单)
    api.ok("POST", f"/work-orders/{order['id']}/units", t1, json={
        "barcode": "6901234567890", "serial_number": "KFR-IN-001", "model": "KFR-35GW", "photo_ids": [photos[0]["id"]]})
    api.ok("POST", f"/work-orders/{order['id']}/units", t1, json={
        "barcode": "6901234567891", "serial_number": "KFR-OUT-001", "model": "KFR-35W", "photo_ids": [photos[1]["id"]]})
    api.ok("POST", f"/work-orders/{order['id']}/feedback", t2, json={"note": "外机位置需物业同意"})
    done = api.ok("POST", f"/work-orders/{order['id']}/complete", t1, json={
        "summary": "两台挂机安装完成，试机正常", "notes": "外机加装支架", "signature_id": signature["id"],
        "custom_fields": {"invoice_no": "INV-2026-1"}})
    assert done["status"] == "completed" and done["completed_by_branch"] is False
    assert [u["serial_number"] for u in done["receipt"]["units"]] == ["KFR-IN-001", "KFR-OUT-001"]
    assert done["custom_fields"] == {"units": "2", "invoice_no": "INV-2026-1"}

    # the branch closes it; the technician may not (this type)
    assert api.request("POST", f"/work-orders/{order['id']}/close", t1).status_code == 403
    closed = api.ok("POST", f"/work-orders/{order['id']}/close", boss, json={"reason": "网点审核结单"})
    assert closed["status"] == "closed" and closed["closed_at"]
    timeline = api.ok("GET", f"/work-orders/{order['id']}/timeline", center)
    assert [e["action"] for e in timeline["items"]] == [
        "create", "dispatch_to_branch", "request_reassignment", "reject_reassignment", "assign", "accept",
        "check_in", "collect_unit", "collect_unit", "feedback", "complete", "close"]
    assert timeline["items"][9]["actor_id"] == t2_id  # the assistant's feedback
    assert timeline["items"][6]["data"]["accuracy_m"] == 12.5 and timeline["items"][6]["actor_id"] == t1_id
    assert {"pending_dispatch", "assigned", "accepted", "in_progress", "completed"} <= set(timeline["state_seconds"])

    # a second order: the branch's request approved goes back to the centre; outsourcing declined
    second = api.ok("POST", "/work-orders", center, json={**body, "custom_fields": {"units": 1}})
    api.ok("POST", f"/work-orders/{second['id']}/dispatch-to-branch", center, json={"branch_id": branch["id"]})
    api.ok("POST", f"/work-orders/{second['id']}/reassignment-request", boss, json={"reason": "超出服务范围"})
    back = api.ok("POST", f"/work-orders/{second['id']}/reassignment-request/approve", center)
    assert (back["branch_id"], back["status"]) == (hq["id"], "pending_dispatch")  # the centre's queue
    offered = api.ok("POST", f"/work-orders/{second['id']}/outsource", center, json={"team_id": external["id"]})
    assert offered["outsource_status"] == "offered" and offered["branch_id"] == external["id"]
    r = api.request("POST", f"/work-orders/{second['id']}/outsource/decline", boss, json={"reason": "x"})
    assert r.status_code == 403
    declined = api.ok("POST", f"/work-orders/{second['id']}/outsource/decline", ext_boss, json={"reason": "排期已满"})
    assert (declined["outsource_status"], declined["branch_id"]) == ("declined", hq["id"])
    # illegal transition: 409 naming the state
    r = api.request("POST", f"/work-orders/{second['id']}/accept", t1)
    assert r.status_code in (403, 409)
    r = api.request("POST", f"/work-orders/{second['id']}/check-in", center, json=SITE)
    assert r.status_code == 409 and r.json()["errors"] == [{"field": "status", "message": "work order is pending_dispatch"}]
    # text search by number and by customer, over the centre's list
    assert api.ok("GET", f"/work-orders?q={second['number']}", center)["total"] == 1
    assert api.ok("GET", "/work-orders?q=张先生", center)["total"] == 2


def test_yunweibao_grab_mode_maintenance(api, stack):
    co = api.new_company()
    admin, office = co["admin"], co["dispatcher"]
    techs = [user(api, co, f"wb_tech{i}", "technician") for i in range(10)]
    api.ok("PATCH", "/work-order-types/maintenance", admin, json={
        "flow": {"return_visit": True, "close_roles": ["admin", "dispatcher"]}})
    api.ok("PATCH", "/work-order-settings", admin, json={
        "check_in_radius_m": 300, "sla_rules": {"urgent": {"respond_minutes": 0.02}}})
    customer = api.ok("POST", "/customers", admin, json=CUSTOMER)
    order = api.ok("POST", "/work-orders", office, json={
        "type": "maintenance", "customer_id": customer["id"], "description": "季度保养：清洗滤网、检查冷媒",
        "priority": "urgent"})
    published = api.ok("POST", f"/work-orders/{order['id']}/publish", office, json={"note": "抢单"})
    assert published["status"] == "pooled"

    # the pool, as every technician sees it (once the roster has them)
    eventually(lambda: all(api.ok("GET", "/work-orders?pool=true", token)["total"] == 1 for _, token in techs))

    # SLA: respond deadline passes while it sits in the pool (the SLA timer) → overdue once, in the exceptions list
    eventually(lambda: api.ok("GET", "/work-orders?exceptions=true", office)["total"] == 1, timeout=20)
    timeline = api.ok("GET", f"/work-orders/{order['id']}/timeline", office)["items"]
    assert [e["data"].get("deadline") for e in timeline if e["action"] == "overdue"] == ["respond"]

    # 50 concurrent grabs (each technician five times): exactly one 200, every other a 409
    def grab(token):
        return api.request("POST", f"/work-orders/{order['id']}/grab", token,
                           json={"planned_at": "2030-01-01T14:00:00+08:00"}).status_code  # 预计处理时间
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(grab, [token for _, token in techs] * 5))
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    won = api.ok("GET", f"/work-orders/{order['id']}", office)
    assert won["status"] == "accepted" and won["overdue"] == ["respond"]
    assert won["next_visit_at"].startswith("2030-01-01T06:00")
    winner = next(token for user_id, token in techs if user_id == won["assignee_id"])


    # first visit cannot finish: reason and the next visit
    far = api.ok("POST", f"/work-orders/{order['id']}/check-in", winner,
                 json={"latitude": "31.260000", "longitude": "121.506058", "accuracy_m": 30})
    assert far["check_in_flagged"] is True  # ~2.7 km from the address, beyond the 300 m radius
    unfinished = api.ok("POST", f"/work-orders/{order['id']}/incomplete", winner, json={
        "reason": "缺少滤网，需订货", "next_visit_at": "2030-01-02T09:00:00+08:00"})
    assert unfinished["status"] == "accepted" and unfinished["next_visit_at"].startswith("2030-01-02T01:00")
    api.ok("POST", f"/work-orders/{order['id']}/check-in", winner, json={**SITE, "accuracy_m": 8})
    paused = api.ok("POST", f"/work-orders/{order['id']}/pause", winner, json={"reason": "等客户开门"})
    assert paused["status"] == "paused"
    assert api.ok("POST", f"/work-orders/{order['id']}/resume", winner)["status"] == "in_progress"
    r = api.request("POST", f"/work-orders/{order['id']}/incomplete", winner, json={"reason": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "next_visit_at"  # both required
    photo = api.ok("POST", f"/work-orders/{order['id']}/files", winner, json={
        "kind": "photo", "filename": "after.png", "content_type": "image/png", "content_base64": PNG})
    done = api.ok("POST", f"/work-orders/{order['id']}/complete", winner, json={
        "summary": "清洗滤网、检查冷媒压力正常", "fault_type": "脏堵", "photo_ids": [photo["id"]],
        "service_items": [{"service_item_id": str(uuid.uuid4()), "quantity": "1"}]})
    assert done["status"] == "completed" and done["receipt"]["fault_type"] == "脏堵"
    r = api.request("POST", f"/work-orders/{order['id']}/close", office)
    assert r.status_code == 409 and "completed" in r.json()["detail"]  # the return visit comes first
    visited = api.ok("POST", f"/work-orders/{order['id']}/visit", office, json={"satisfaction": 5, "comment": "满意"})
    assert visited["status"] == "visited" and visited["satisfaction"] == 5
    assert api.ok("POST", f"/work-orders/{order['id']}/close", office)["status"] == "closed"
    # a cancelled order keeps its reason
    other = api.ok("POST", "/work-orders", office, json={"type": "maintenance", "customer_id": customer["id"],
                                                          "description": "x"})
    r = api.request("POST", f"/work-orders/{other['id']}/cancel", office, json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    cancelled = api.ok("POST", f"/work-orders/{other['id']}/cancel", office, json={"reason": "客户取消"})
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "客户取消")


def test_automatic_manual_batch_dispatch_refuse_and_reassign(api, stack):
    co = api.new_company()
    admin, office = co["admin"], co["dispatcher"]
    near_id, near = user(api, co, "near_tech", "technician", skills=["空调"], areas=["浦东"])
    far_id, far = user(api, co, "far_tech", "technician", skills=["空调"], areas=["浦东"])
    fridge_id, fridge = user(api, co, "fridge_tech", "technician", skills=["冰箱"], areas=["浦东"])
    # last known positions from the technicians' apps
    for token, lat in ((near, "31.236500"), (far, "31.300000"), (fridge, "31.235930")):
        until_ok(api, "POST", "/technicians/me/position", token, json={"latitude": lat, "longitude": "121.506058"})
    settings = api.ok("PATCH", "/work-order-settings", admin,
                      json={"dispatch_rules": ["skill", "area", "nearest", "least_open"]})
    assert settings["dispatch_rules"] == ["skill", "area", "nearest", "least_open"]
    r = api.request("PATCH", "/work-order-settings", admin, json={"dispatch_rules": ["telepathy"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("dispatch_rules")
    customer = api.ok("POST", "/customers", admin, json=CUSTOMER)
    order = api.ok("POST", "/work-orders", office, json={
        "type": "repair", "customer_id": customer["id"], "description": "空调不制冷", "skill": "空调", "area": "浦东",
        "auto_dispatch": True})
    assert order["status"] == "assigned" and order["assignee_id"] == near_id
    note = api.ok("GET", f"/work-orders/{order['id']}/timeline", office)["items"][-1]["note"]
    assert "skill=空调" in note and "nearest: near_tech" in note

    # the technician refuses with a reason; automatic dispatch again picks the next nearest
    api.ok("POST", "/technicians/me/position", near, json={"latitude": "31.236500", "longitude": "121.506058",
                                                            "on_duty": False})
    refused = api.ok("POST", f"/work-orders/{order['id']}/refuse", near, json={"reason": "车坏了"})
    assert (refused["status"], refused["assignee_id"]) == ("pending_dispatch", None)
    again = api.ok("POST", f"/work-orders/{order['id']}/auto-dispatch", office)
    assert again["assignee_id"] == far_id
    # 转派 with a reason, to the fridge technician helped by the far one
    moved = api.ok("POST", f"/work-orders/{order['id']}/reassign", office,
                   json={"technician_id": fridge_id, "assistant_ids": [far_id], "reason": "客户改约"})
    assert (moved["assignee_id"], moved["assistant_ids"], moved["status"]) == (fridge_id, [far_id], "assigned")

    # batch assign: all or nothing, the failing order named
    orders = [api.ok("POST", "/work-orders", office, json={"type": "repair", "customer_id": customer["id"],
                                                           "description": f"批量{i}"}) for i in range(3)]
    r = api.request("POST", "/work-orders/batch-assign", office, json={
        "ticket_ids": [orders[0]["id"], order["id"]], "technician_id": far_id})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "ticket_ids.1"
    assert api.ok("GET", f"/work-orders/{orders[0]['id']}", office)["status"] == "pending_dispatch"
    batch = api.ok("POST", "/work-orders/batch-assign", office, json={
        "ticket_ids": [o["id"] for o in orders], "technician_id": far_id, "note": "同一小区"})
    assert [o["status"] for o in batch["items"]] == ["assigned"] * 3
    mine = api.ok("GET", "/work-orders?scope=mine&status=assigned&limit=2", far)
    assert mine["total"] == 3 and len(mine["items"]) == 2
    listed = api.ok("GET", "/work-orders?status=assigned&sort=number", office)
    assert [o["number"] for o in listed["items"]] == sorted(o["number"] for o in listed["items"])
