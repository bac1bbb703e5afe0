"""The first flow of the platform, over HTTP through the gateway, with all services running
as processes on the real PostgreSQL and RabbitMQ: customer → equipment → requisition →
work order → completion → parts consumed, notifications sent, report counted."""
import datetime as dt
import json
import uuid

import pytest

from tests.api import eventually

pytestmark = pytest.mark.e2e

CUSTOMER = {"name": "上海申能大厦物业", "contacts": [{"name": "王经理", "phone": "13912345678"}],
            "addresses": [{"text": "上海市浦东新区世纪大道100号", "latitude": "31.235929", "longitude": "121.506058"}]}


def stocked_warehouse(api, co, quantity="10"):
    warehouse = api.ok("POST", "/warehouses", co["admin"], json={"name": "总仓", "manager_ids": [co["ids"]["keeper"]]})
    part = api.ok("POST", "/parts", co["admin"], json={"code": f"P-{uuid.uuid4().hex[:6]}", "name": "启动电容"})
    api.ok("POST", f"/warehouses/{warehouse['id']}/stock-in", co["admin"],
           json={"lines": [{"part_id": part["id"], "quantity": quantity}]})
    return warehouse, part


def assign_when_roster_knows(api, co, ticket_id):
    """tickets learns technicians from user.created events: wait for it rather than sleep."""
    def attempt():
        r = api.request("POST", f"/work-orders/{ticket_id}/assign", co["dispatcher"],
                        json={"technician_id": co["ids"]["tech"]})
        if r.status_code == 422 and "technician_id" in r.text:
            return None
        assert r.status_code == 200, r.text
        return r.json()
    return eventually(attempt)


def personal_quantity(api, co, part_id) -> float:
    stock = api.ok("GET", "/technicians/me/stock", co["tech"])
    return sum(float(i["quantity"]) for i in stock["items"] if i["part_id"] == part_id)


def test_first_flow_end_to_end(api, stack):
    co = api.new_company()
    admin, dispatcher, tech, keeper = co["admin"], co["dispatcher"], co["tech"], co["keeper"]

    # 1–2. customer with contact and located address; equipment with warranty
    customer = api.ok("POST", "/customers", admin, json=CUSTOMER)
    assert customer["addresses"][0]["latitude"] == "31.235929"
    equipment = api.ok("POST", f"/customers/{customer['id']}/equipment", admin, json={
        "model": "格力 KFR-72LW", "serial_number": f"SN-{uuid.uuid4().hex[:8]}", "warranty_end": "2030-01-01"})

    # 3. warehouse with stock; the technician requisitions 2; the warehouse manager approves
    warehouse, part = stocked_warehouse(api, co)
    requisition = api.ok("POST", "/requisitions", tech, json={
        "warehouse_id": warehouse["id"], "lines": [{"part_id": part["id"], "quantity": "2"}]})
    assert requisition["status"] == "requested" and requisition["number"].startswith("REQ")
    approved = api.ok("POST", f"/requisitions/{requisition['id']}/approve", keeper)
    assert approved["status"] == "approved"
    assert personal_quantity(api, co, part["id"]) == 2
    warehouse_stock = api.ok("GET", f"/warehouses/{warehouse['id']}/stock", keeper)
    assert float(warehouse_stock["items"][0]["quantity"]) == 8

    # 4. repair work order, assigned, accepted, checked in by GPS, completed with 1 part
    order = api.ok("POST", "/work-orders", dispatcher, json={
        "type": "repair", "customer_id": customer["id"], "equipment_id": equipment["id"], "description": "空调不制冷"})
    assert order["status"] == "pending_dispatch" and order["customer_name"] == CUSTOMER["name"]
    assert order["under_warranty"] is True
    assign_when_roster_knows(api, co, order["id"])
    api.ok("POST", f"/work-orders/{order['id']}/accept", tech)
    checked_in = api.ok("POST", f"/work-orders/{order['id']}/check-in", tech,
                        json={"latitude": "31.236100", "longitude": "121.506200"})
    assert checked_in["status"] == "in_progress" and checked_in["check_in_distance_m"] < 50
    completed = api.ok("POST", f"/work-orders/{order['id']}/complete", tech, json={
        "summary": "更换启动电容，试机正常", "parts_used": [{"part_id": part["id"], "quantity": "1"}]})
    assert completed["status"] == "completed"

    # 5–6. every consequence visible through the gateway
    eventually(lambda: personal_quantity(api, co, part["id"]) == 1)
    moves = api.ok("GET", f"/stock-moves?ref_id={order['id']}", keeper)["items"]
    assert [(m["kind"], m["ref_number"], m["quantity"]) for m in moves] == [("consumption", order["number"], "1.000")]

    inbox = eventually(lambda: [m for m in api.ok("GET", "/notifications", dispatcher)["items"]
                                if m["event_type"] == "ticket.completed"])
    assert order["number"] in inbox[0]["body"] and inbox[0]["title"] == "工单已完成"
    sms_log = stack.config.data_dir / "sms.log"
    # (the technician got an SMS on assignment too: look at the customer's)
    sms = eventually(lambda: [s for s in map(json.loads, sms_log.read_text().splitlines())
                              if s["phone"] == "13912345678"] if sms_log.exists() else None)
    assert order["number"] in sms[0]["text"]

    today = dt.datetime.now(dt.timezone.utc).date()
    report_query = f"/reports/technician-daily?date_from={today - dt.timedelta(days=1)}&date_to={today + dt.timedelta(days=1)}"
    report = eventually(lambda: api.ok("GET", report_query, dispatcher)["rows"])
    assert [(r["technician_id"], r["completed"]) for r in report] == [(co["ids"]["tech"], 1)]

    timeline = api.ok("GET", f"/work-orders/{order['id']}/timeline", dispatcher)["items"]
    assert [e["action"] for e in timeline] == ["create", "assign", "accept", "check_in", "complete"]
    assert timeline[3]["actor_id"] == co["ids"]["tech"] and timeline[3]["data"]["latitude"] == "31.236100"


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(api):
    co = api.new_company()
    admin, dispatcher, tech, keeper = co["admin"], co["dispatcher"], co["tech"], co["keeper"]

    # unknown customer
    r = api.request("POST", "/work-orders", dispatcher, json={
        "type": "repair", "customer_id": str(uuid.uuid4()), "description": "x"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"field": "customer_id", "message": "not found"}]
    assert api.ok("GET", "/work-orders", dispatcher)["total"] == 0

    # malformed body: every bad field named
    r = api.request("POST", "/customers", admin, json={"name": "", "contacts": [{"name": "x", "phone": "abc"}]})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"name", "contacts.0.phone"}
    r = api.request("POST", "/customers", admin, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert api.ok("GET", "/customers", admin)["total"] == 0

    # requisitioning more than is in stock
    warehouse, part = stocked_warehouse(api, co, quantity="3")
    r = api.request("POST", "/requisitions", tech, json={
        "warehouse_id": warehouse["id"], "lines": [{"part_id": part["id"], "quantity": "4"}]})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "lines.0.quantity"
    assert api.ok("GET", "/requisitions", keeper)["total"] == 0

    # assigning twice, completing before check-in
    customer = api.ok("POST", "/customers", admin, json=CUSTOMER)
    order = api.ok("POST", "/work-orders", dispatcher, json={"type": "repair", "customer_id": customer["id"],
                                                           "description": "x"})
    assign_when_roster_knows(api, co, order["id"])
    r = api.request("POST", f"/work-orders/{order['id']}/assign", dispatcher, json={"technician_id": co["ids"]["tech"]})
    assert r.status_code == 409 and "assigned" in r.json()["detail"]
    api.ok("POST", f"/work-orders/{order['id']}/accept", tech)
    r = api.request("POST", f"/work-orders/{order['id']}/complete", tech, json={"summary": "done"})
    assert r.status_code == 409 and r.json()["errors"] == [{"field": "status", "message": "work order is accepted"}]
    after = api.ok("GET", f"/work-orders/{order['id']}", dispatcher)
    assert after["status"] == "accepted" and after["completed_at"] is None
    assert len(api.ok("GET", f"/work-orders/{order['id']}/timeline", dispatcher)["items"]) == 3

    # a technician cannot approve a requisition; an unauthenticated call is 401
    req = api.ok("POST", "/requisitions", tech, json={"warehouse_id": warehouse["id"],
                                                      "lines": [{"part_id": part["id"], "quantity": "1"}]})
    assert api.request("POST", f"/requisitions/{req['id']}/approve", tech).status_code == 403
    assert api.request("GET", "/work-orders").status_code == 401


def test_tenant_a_user_gets_404_for_everything_of_tenant_b(api):
    a, b = api.new_company(), api.new_company()
    customer = api.ok("POST", "/customers", b["admin"], json=CUSTOMER)
    equipment = api.ok("POST", f"/customers/{customer['id']}/equipment", b["admin"],
                       json={"model": "M", "serial_number": "S-1"})
    order = api.ok("POST", "/work-orders", b["dispatcher"], json={"type": "repair", "customer_id": customer["id"],
                                                                "description": "x"})
    warehouse, _ = stocked_warehouse(api, b)
    for path in (f"/customers/{customer['id']}", f"/equipment/{equipment['id']}", f"/work-orders/{order['id']}",
                 f"/work-orders/{order['id']}/timeline", f"/users/{b['ids']['tech']}",
                 f"/customers/{customer['id']}/equipment"):
        assert api.request("GET", path, a["admin"]).status_code == 404, path
    assert api.request("POST", f"/work-orders/{order['id']}/assign", a["dispatcher"],
                       json={"technician_id": a["ids"]["tech"]}).status_code == 404
    # A's lists show none of B's rows; B's warehouse is not A's
    assert api.ok("GET", "/customers", a["admin"])["total"] == 0
    assert api.ok("GET", "/work-orders", a["dispatcher"])["total"] == 0
    assert api.request("GET", f"/warehouses/{warehouse['id']}/stock", a["admin"]).status_code == 404
    # the same serial number is free in tenant A
    mine = api.ok("POST", "/customers", a["admin"], json={"name": "A 客户"})
    api.ok("POST", f"/customers/{mine['id']}/equipment", a["admin"], json={"model": "M", "serial_number": "S-1"})


def test_idempotency_key_returns_the_first_result_and_writes_once(api):
    co = api.new_company()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api.request("POST", "/customers", co["admin"], json={"name": "重复提交"}, headers=dict(key))
    second = api.request("POST", "/customers", co["admin"], json={"name": "重复提交"}, headers=dict(key))
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second.headers["idempotent-replayed"] == "true"
    assert api.ok("GET", "/customers", co["admin"])["total"] == 1
    other = api.request("POST", "/customers", co["admin"], json={"name": "另一个"}, headers=dict(key))
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"


def test_health_readiness_metrics_and_openapi(api, stack):
    assert api.http.get("/healthz").json() == {"status": "ok"}
    ready = api.http.get("/readyz").json()
    assert ready["status"] == "ready" and all(ready["services"].values())
    metrics = api.http.get("/metrics").text
    assert "http_request_latency_seconds_bucket" in metrics
    service_metrics = api.http.get(f"http://127.0.0.1:{stack.metrics_port('tickets')}/metrics").text
    assert 'entrypoint_latency_seconds_count{entrypoint="create_ticket"' in service_metrics
    assert "outbox_backlog" in service_metrics
    reports_metrics = api.http.get(f"http://127.0.0.1:{stack.metrics_port('reports')}/metrics").text
    assert 'event_lag_seconds_count{event_type="ticket.completed",service="reports"}' in reports_metrics
    assert 'events_consumed_total{event_type="ticket.completed",outcome="ok",service="reports"}' in reports_metrics
    spec = api.http.get("/openapi.json").json()
    assert "/api/v1/work-orders/{ticket_id}/check-in" in spec["paths"]
    r = api.http.get("/api/v1/work-orders", headers={"X-Correlation-ID": "trace-me-123"})
    assert r.headers["x-correlation-id"] == "trace-me-123"


def test_one_correlation_id_follows_a_request_through_rpc_and_events_into_every_log(api, stack):
    co = api.new_company()
    customer = api.ok("POST", "/customers", co["admin"], json=CUSTOMER)
    order = api.ok("POST", "/work-orders", co["dispatcher"], json={"type": "repair", "customer_id": customer["id"],
                                                                 "description": "x"})
    assign_when_roster_knows(api, co, order["id"])
    api.ok("POST", f"/work-orders/{order['id']}/accept", co["tech"])
    api.ok("POST", f"/work-orders/{order['id']}/check-in", co["tech"], json={"latitude": "31.2", "longitude": "121.5"})
    correlation_id = f"trace-{uuid.uuid4().hex}"
    r = api.request("POST", f"/work-orders/{order['id']}/complete", co["tech"], json={"summary": "ok"},
                    headers={"X-Correlation-ID": correlation_id})
    assert r.status_code == 200 and r.headers["x-correlation-id"] == correlation_id

    def lines(name):
        path = stack.logs_dir / f"{name}.log"
        return [json.loads(line) for line in path.read_text().splitlines() if correlation_id in line]

    def every_log_has_it():
        missing = [name for name in ("gateway", "tickets", "inventory", "notify", "reports") if not lines(name)]
        assert not missing, f"no line with the correlation id in the logs of {missing}"
        return True

    # gateway access log → tickets (RPC, records the event) → consumers of ticket.completed
    eventually(every_log_has_it)
    assert lines("gateway")[0]["path"] == f"/api/v1/work-orders/{order['id']}/complete"
    assert "ticket.completed" in lines("tickets")[0]["event_types"]
    consumed = lines("inventory")[0]
    assert (consumed["message"], consumed["event_type"], consumed["correlation_id"]) == (
        "event consumed", "ticket.completed", correlation_id)


def test_reports_rebuilt_from_the_event_archive_show_the_live_figures(api):
    co = api.new_company()
    customer = api.ok("POST", "/customers", co["admin"], json=CUSTOMER)
    for _ in range(3):
        api.ok("POST", "/work-orders", co["dispatcher"], json={"type": "repair", "customer_id": customer["id"],
                                                              "description": "x"})
    today = dt.datetime.now(dt.timezone.utc).date()
    query = f"/reports/work-orders-summary?date_from={today - dt.timedelta(days=1)}&date_to={today + dt.timedelta(days=1)}"
    live = eventually(lambda: (r := api.ok("GET", query, co["admin"]))["total_created"] == 3 and r)
    assert api.request("POST", "/reports/rebuild", co["dispatcher"]).status_code == 403
    # the archive holds the company's other events too (users, customer); at least the 3 orders
    job = api.ok("POST", "/reports/rebuild", co["admin"])["job_id"]  # a background job (202)
    done = eventually(lambda: (j := api.ok("GET", f"/reports/rebuild/{job}", co["admin"]))["status"] == "done" and j)
    assert done["replayed"] >= 3
    assert api.ok("GET", query, co["admin"]) == live
