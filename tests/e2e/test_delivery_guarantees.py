"""Nothing lost, nothing done twice: redelivered events and services killed mid-flow."""
import datetime as dt
import json
import signal
import urllib.request
import uuid

import pytest

from tests.api import eventually
from tests.e2e.test_first_flow import CUSTOMER, assign_when_roster_knows, personal_quantity, stocked_warehouse
from tests.events import envelope, metric_value, publish

pytestmark = pytest.mark.e2e


def issue_parts(api, co, quantity: str):
    warehouse, part = stocked_warehouse(api, co)
    req = api.ok("POST", "/requisitions", co["tech"], json={"warehouse_id": warehouse["id"],
                                                            "lines": [{"part_id": part["id"], "quantity": quantity}]})
    api.ok("POST", f"/requisitions/{req['id']}/approve", co["keeper"])
    return part


def order_in_progress(api, co, phone: str):
    customer = api.ok("POST", "/customers", co["admin"], json={
        **CUSTOMER, "contacts": [{"name": "王经理", "phone": phone}]})
    order = api.ok("POST", "/work-orders", co["dispatcher"], json={"type": "repair", "customer_id": customer["id"],
                                                                 "description": "异响"})
    assign_when_roster_knows(api, co, order["id"])
    api.ok("POST", f"/work-orders/{order['id']}/accept", co["tech"])
    api.ok("POST", f"/work-orders/{order['id']}/check-in", co["tech"], json={"latitude": "31.2", "longitude": "121.5"})
    return customer, order


def completed_count(api, co) -> int:
    today = dt.datetime.now(dt.timezone.utc).date()
    rows = api.ok("GET", f"/reports/technician-daily?date_from={today - dt.timedelta(days=1)}"
                         f"&date_to={today + dt.timedelta(days=1)}", co["dispatcher"])["rows"]
    return sum(r["completed"] for r in rows)


def completion_messages(api, co) -> int:
    """The dispatcher's inbox messages about completions (other events may notify them too)."""
    items = api.ok("GET", "/notifications?limit=200", co["dispatcher"])["items"]
    return sum(m["event_type"] == "ticket.completed" for m in items)


def scrape(stack, service: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port(service)}/metrics") as response:
        return response.read().decode()


def test_the_same_event_delivered_twice_changes_nothing(api, stack):
    co = api.new_company()
    part = issue_parts(api, co, "3")
    customer = api.ok("POST", "/customers", co["admin"], json=CUSTOMER)
    tenant_id = api.ok("GET", "/users/me", co["admin"])["tenant_id"]
    duplicates_before = {s: metric_value(scrape(stack, s), "events_consumed_total", event_type="ticket.completed",
                                         outcome="duplicate") for s in ("inventory", "notify", "reports")}
    event = envelope("ticket.completed", tenant_id, {
        "ticket_id": str(uuid.uuid4()), "number": "WO999999", "type": "repair",
        "technician_id": co["ids"]["tech"], "dispatcher_id": co["ids"]["dispatcher"],
        "customer_id": customer["id"], "customer_name": CUSTOMER["name"], "equipment_id": None,
        "contact_name": "王经理", "contact_phone": "13912345678",
        "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(), "summary": "复测",
        "parts_used": [{"part_id": part["id"], "quantity": "1"}]})
    publish(stack.config.amqp_uri, "tickets.events", event, times=2)

    # every consumer saw the second copy and recognised it ...
    for service, before in duplicates_before.items():
        eventually(lambda s=service, b=before: metric_value(
            scrape(stack, s), "events_consumed_total", event_type="ticket.completed", outcome="duplicate") == b + 1)
    # ... and the effects happened exactly once
    assert personal_quantity(api, co, part["id"]) == 2
    assert len(api.ok("GET", f"/stock-moves?ref_id={event['data']['ticket_id']}", co["keeper"])["items"]) == 1
    assert completion_messages(api, co) == 1
    assert completed_count(api, co) == 1


def test_services_killed_mid_flow_lose_no_event(api, stack):
    co = api.new_company()
    part = issue_parts(api, co, "2")
    phone = f"139{uuid.uuid4().int % 10**8:08d}"  # tells this test's SMS from other tenants' in the shared log
    _, order = order_in_progress(api, co, phone)

    # the consumers die hard; the order is completed while they are down
    for name in ("inventory", "notify", "reports"):
        stack.kill(name, signal.SIGKILL)
    api.ok("POST", f"/work-orders/{order['id']}/complete", co["tech"], json={
        "summary": "更换电容", "parts_used": [{"part_id": part["id"], "quantity": "1"}]})
    # the producer dies too, right after committing (its outbox holds whatever it had not published)
    stack.kill("tickets", signal.SIGKILL)

    for name in ("tickets", "inventory", "notify", "reports"):
        stack.start(name)
    stack.wait_ready()

    eventually(lambda: personal_quantity(api, co, part["id"]) == 1, timeout=30)
    eventually(lambda: completion_messages(api, co) == 1, timeout=30)
    eventually(lambda: completed_count(api, co) == 1, timeout=30)
    sms = [json.loads(line) for line in (stack.config.data_dir / "sms.log").read_text().splitlines()]
    assert [s["phone"] for s in sms].count(phone) == 1
    assert len(api.ok("GET", f"/stock-moves?ref_id={order['id']}", co["keeper"])["items"]) == 1
