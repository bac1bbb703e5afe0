"""Planned work end to end: a plan's timer, running in two tickets instances at once (and an admin's
"generate now" beside them), creates each due work order exactly once — on the real PostgreSQL and
RabbitMQ, through the gateway."""
import concurrent.futures
import datetime as dt

import pytest

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import Api, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    servers.require_postgres()
    servers.require_rabbitmq()
    with running_stack(tmp_path_factory.mktemp("plans"), extra_env={"PLAN_SCAN_SECONDS": "0.5"},
                       instances={"tickets": 2}) as running:
        yield running


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client


def test_two_instances_and_manual_runs_create_each_planned_order_once(api, stack):
    co = api.new_company()
    admin, dispatcher = co["admin"], co["dispatcher"]
    customer = api.ok("POST", "/customers", admin, json={
        "name": "申能大厦", "addresses": [{"text": "上海", "latitude": "31.2", "longitude": "121.5"}]})
    equipment = [api.ok("POST", f"/customers/{customer['id']}/equipment", admin,
                        json={"model": "格力 KFR-72LW", "serial_number": f"SN-{i}"}) for i in range(2)]
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).replace(microsecond=0)
    bad = api.request("POST", "/plans", dispatcher, json={
        "name": "x", "customer_id": customer["id"], "rrule": "FREQ=OFTEN", "starts_at": start.isoformat(),
        "description": "x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "rrule"

    # daily for 5 days starting 3 days ago, 2 equipment, 2 days' lead: all 5 occurrences are due now
    plan = api.ok("POST", "/plans", dispatcher, json={
        "name": "每日巡检", "customer_id": customer["id"], "equipment_ids": [e["id"] for e in equipment],
        "rrule": "RRULE:FREQ=DAILY;COUNT=5", "starts_at": start.isoformat(), "lead_days": 2,
        "ticket_type": "inspection", "description": "巡检机房空调", "mode": "pool"})
    assert plan["state"] == "running"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # manual runs racing the two timers
        list(pool.map(lambda _: api.ok("POST", "/plans/run-due", dispatcher), range(4)))

    def all_generated():
        orders = api.ok("GET", f"/plans/{plan['id']}/orders", dispatcher)
        return orders if len(orders["past"]) == 10 else None
    orders = eventually(all_generated, timeout=30)
    assert orders["upcoming"] == []
    stack.wait_timer_runs("tickets", "generate_planned_orders")  # more ticks of both: nothing more appears
    listed = api.ok("GET", "/work-orders?type=inspection&limit=100", dispatcher)
    assert listed["total"] == 10
    assert len({o["id"] for o in listed["items"]}) == 10
    pairs = {(o["equipment_id"], o["description"].split("（")[1][:10]) for o in listed["items"]}
    assert len(pairs) == 10  # one per (equipment, day)
    assert {o["status"] for o in listed["items"]} == {"pooled"}
    assert api.ok("GET", f"/plans/{plan['id']}", dispatcher)["state"] == "expired"

    # a paused plan creates nothing; resumed, it catches up once; ended, it is expired
    later = api.ok("POST", "/plans", dispatcher, json={
        "name": "月度保养", "customer_id": customer["id"], "rrule": "FREQ=MONTHLY",
        "starts_at": start.isoformat(), "description": "保养", "paused": True})
    assert later["state"] == "paused"
    stack.wait_timer_runs("tickets", "generate_planned_orders")
    assert api.ok("GET", f"/plans/{later['id']}/orders", dispatcher)["past"] == []
    assert api.ok("POST", f"/plans/{later['id']}/resume", dispatcher)["state"] == "running"
    caught_up = eventually(lambda: api.ok("GET", f"/plans/{later['id']}/orders", dispatcher)["past"])
    stack.wait_timer_runs("tickets", "generate_planned_orders")
    assert len(caught_up) == 1 == len(api.ok("GET", f"/plans/{later['id']}/orders", dispatcher)["past"])
    assert api.ok("POST", f"/plans/{later['id']}/end", dispatcher)["state"] == "expired"
    assert api.ok("GET", "/plans?state=expired", dispatcher)["total"] == 2
