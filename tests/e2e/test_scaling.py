"""Two instances of the tickets service share the work; SIGKILL of one under load loses no order and no event.

A create whose RPC was in flight on the killed instance is redelivered by RabbitMQ to the other
instance. If the killed one had already committed, the redelivery carries the same request id and
finds that order instead of making a second one (tickets' request_id), so: one order per create.
"""
import datetime as dt
import signal
import threading
import time
import urllib.request
import uuid

import httpx
import pytest

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import eventually

pytestmark = pytest.mark.e2e

RETRY = {0, 502, 503, 504}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    servers.require_postgres()
    servers.require_rabbitmq()
    with running_stack(tmp_path_factory.mktemp("scaled"), instances={"tickets": 2}) as s:
        yield s


def create_calls(stack, instance: str) -> float:
    url = f"http://127.0.0.1:{stack.metrics_port(instance)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("entrypoint_latency_seconds_count{") and 'entrypoint="create_ticket"' in line)


def create_with_retries(http: httpx.Client, token: str, body: dict, key: str) -> tuple[int, dict | str]:
    """POST with an Idempotency-Key, retried with the same key while the platform is in trouble:
    (201, the order) or (the last status, the last answer)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            r = http.post("/api/v1/work-orders", json=body, headers={"Authorization": f"Bearer {token}",
                                                                    "Idempotency-Key": key})
            status, text = r.status_code, r.text
        except httpx.HTTPError as exc:
            status, text = 0, repr(exc)
        if status not in RETRY and not (status == 409 and "still in progress" in text):
            return status, r.json() if status == 201 else text
        if time.monotonic() > deadline:
            return status, text
        time.sleep(0.1)


def test_two_instances_share_creates_and_a_killed_one_loses_nothing(api, stack):
    assert stack.instances("tickets") == ["tickets", "tickets-2"]
    co = api.new_company()
    customer = api.ok("POST", "/customers", co["admin"], json={
        "name": "扩容客户", "contacts": [{"name": "王经理", "phone": "13900000001"}]})
    created: dict[str, str] = {}  # Idempotency-Key → order id
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def worker():
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as http:
            while not stop.is_set():
                key = uuid.uuid4().hex
                status, order = create_with_retries(http, co["dispatcher"], {
                    "type": "repair", "customer_id": customer["id"], "description": f"scale {key}"}, key)
                with lock:
                    if status == 201:
                        created[key] = order["id"]
                    else:
                        failures.append(f"{status} {order}")

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        # both instances take creates from the shared rpc-tickets queue
        eventually(lambda: create_calls(stack, "tickets") >= 5 and create_calls(stack, "tickets-2") >= 5, timeout=20)
        stack.kill("tickets-2", signal.SIGKILL)  # mid-load: RPCs in flight on it are redelivered to "tickets"
        killed_at = len(created)
        eventually(lambda: len(created) >= killed_at + 30, timeout=20)  # the survivor carries on alone
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert failures == []
    orders, offset = [], 0
    while True:
        page = api.ok("GET", f"/work-orders?offset={offset}&limit=200", co["dispatcher"])
        orders += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    ids = {o["id"] for o in orders}
    assert set(created.values()) <= ids  # every successful create is visible
    keys = [o["description"].rsplit(" ", 1)[1] for o in orders]
    assert set(keys) == set(created)  # no order without a successful create behind it
    assert sorted(keys) == sorted(created)  # and exactly one order per create: a redelivery makes no second

    today = dt.datetime.now(dt.timezone.utc).date()

    def reports_total() -> int:
        return api.ok("GET", f"/reports/work-orders-summary?date_from={today - dt.timedelta(days=1)}"
                             f"&date_to={today + dt.timedelta(days=1)}", co["dispatcher"])["total_created"]

    # every order's ticket.created reached reports, each counted once (the read model keys on the order id)
    eventually(lambda: reports_total() == len(orders), timeout=30)
    time.sleep(1)
    assert reports_total() == len(orders)
