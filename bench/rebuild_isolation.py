"""Does a report rebuild slow dispatch? (issue 9: "a report rebuild must not slow dispatch")

    .venv/bin/python bench/rebuild_isolation.py --events 10000 --clients 8 --seconds 20

On fresh PostgreSQL databases and a fresh RabbitMQ vhost: fills the reports service's event archive
with N synthetic ticket events (published to `tickets.events` as the tickets service would), then
drives work-order creation through the gateway from C clients twice — alone, and while the reports
service replays its whole archive (a background rebuild job: `start_rebuild`, followed with
`rebuild_status` until done) — and prints creates/s and p50/p99 of the create call for both, plus how
long the rebuild took. The work orders created during the rebuild reach the reports too (the live
consumers keep going while a company is rebuilt): checked at the end. The services are separate processes; what
they share on one machine is CPU, which is what this measures (on Kubernetes each has its own CPU
requests and limits).
"""
import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import kombu

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow_bench import login, ok, pct  # noqa: E402
from devstack.ephemeral import running_stack  # noqa: E402
from svc_common.rpc_client import RpcClient  # noqa: E402

PASSWORD = "bench-pass-2026"


def synthetic_events(tenant_id: str, customer_id: str, orders: int):
    """ticket.created + ticket.completed for `orders` orders spread over the last 90 days."""
    now = dt.datetime.now(dt.timezone.utc)
    technician = str(uuid.uuid4())
    for n in range(orders):
        ticket_id, number = str(uuid.uuid4()), f"WO-SYN-{n:07d}"
        created = now - dt.timedelta(minutes=n % (90 * 24 * 60))
        for event_type, at, data in (
            ("ticket.created", created, {"ticket_id": ticket_id, "number": number, "type": "repair",
                                         "customer_id": customer_id, "customer_name": "压测客户"}),
            ("ticket.completed", created + dt.timedelta(hours=3), {
                "ticket_id": ticket_id, "number": number, "type": "repair", "technician_id": technician,
                "customer_id": customer_id, "customer_name": "压测客户",
                "completed_at": (created + dt.timedelta(hours=3)).isoformat(), "summary": "更换电容"})):
            yield {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1,
                   "occurred_at": at.isoformat(), "tenant_id": tenant_id, "correlation_id": None,
                   "actor": None, "data": data}


def publish_all(amqp_uri: str, envelopes) -> int:
    count = 0
    with kombu.Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
        exchange = kombu.Exchange("tickets.events", type="topic", durable=True)
        producer = kombu.Producer(conn.channel())
        for envelope in envelopes:
            producer.publish(envelope, exchange=exchange, routing_key=envelope["type"], serializer="json",
                             delivery_mode=2, declare=[exchange])
            count += 1
    return count


def ready_messages(amqp_uri: str) -> int:
    """Messages waiting in the vhost's queues (retry and dead-letter queues aside)."""
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_uri).path.lstrip("/")) or "/"
    out = subprocess.run(["rabbitmqctl", "list_queues", "-p", vhost, "name", "messages", "--quiet",
                          "--no-table-headers"], capture_output=True, text=True, check=True).stdout
    return sum(int(count) for name, count in (line.split() for line in out.splitlines() if line.strip())
               if ".retry-" not in name and not name.endswith(".dlq"))


def consumed_by_reports(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("events_consumed_total{") and 'outcome="ok"' in line)


async def create_load(client, token: str, customer_id: str, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    body = {"type": "repair", "customer_id": customer_id, "description": "调度压测"}

    async def worker():
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await ok(client, "POST", "/work-orders", token, json=body)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def line(label: str, latencies: list[float], seconds: float) -> str:
    return (f"{label:<22} {len(latencies) / seconds:7.1f} creates/s   p50 {pct(latencies, 50) * 1000:6.0f} ms"
            f"   p99 {pct(latencies, 99) * 1000:6.0f} ms")


async def run(stack, events: int, clients: int, seconds: float) -> None:
    async with aiohttp.ClientSession(stack.gateway_url) as client:
        code = f"iso-{uuid.uuid4().hex[:6]}"
        signup = await ok(client, "POST", "/tenants", json={"code": code, "name": "隔离压测", "admin": {
            "username": "admin", "password": PASSWORD, "name": "管理员"}})
        tenant_id, admin = signup["tenant"]["id"], await login(client, code, "admin")
        customer = await ok(client, "POST", "/customers", admin, json={
            "name": "压测客户", "contacts": [{"name": "王经理", "phone": "13900000000"}],
            "addresses": [{"text": "上海", "latitude": "31.2", "longitude": "121.5"}]})

        metrics = f"http://127.0.0.1:{stack.metrics_port('reports')}/metrics"
        before = consumed_by_reports(metrics)
        started = time.perf_counter()
        published = publish_all(stack.config.amqp_uri, synthetic_events(tenant_id, customer["id"], events // 2))
        while consumed_by_reports(metrics) - before < published:
            await asyncio.sleep(0.5)
        print(f"archive: {published} events published and archived in {time.perf_counter() - started:.1f} s")
        # the other consumers of these events (notify, customers, inventory) must be done too, or
        # their backlog, not the rebuild, is what the dispatch figures would show
        while ready_messages(stack.config.amqp_uri):
            await asyncio.sleep(1)
        print(f"every queue drained after {time.perf_counter() - started:.1f} s")

        await create_load(client, admin, customer["id"], clients, 3)  # warm-up
        alone = await create_load(client, admin, customer["id"], clients, seconds)

        rpc = RpcClient(stack.config.amqp_uri, timeout=3600)
        await rpc.connect()
        context = {"tenant_id": tenant_id, "actor_id": signup["admin"]["id"], "actor_role": "admin"}
        rebuild_started = time.perf_counter()
        job = await rpc.call("reports", "start_rebuild", context=context)
        during: list[float] = []
        measured = 0.0
        while job["status"] == "running":  # keep the load on for as long as the rebuild runs
            window = min(seconds, 5.0)
            during += await create_load(client, admin, customer["id"], clients, window)
            measured += window
            job = await rpc.call("reports", "rebuild_status", job_id=job["job_id"], context=context)
        rebuild_seconds = time.perf_counter() - rebuild_started
        created = len(during) + len(alone)
        day = dt.datetime.now(dt.timezone.utc).date()
        query = {"date_from": str(day - dt.timedelta(days=1)), "date_to": str(day + dt.timedelta(days=1))}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the orders created meanwhile are counted after the rebuild
            report = await rpc.call("reports", "run_report", report="work_orders", query=query, context=context)
            if report["totals"]["created"] >= created:
                break
            await asyncio.sleep(1)
        await rpc.close()

    print(f"rebuild: {job['status']}, {job['replayed']} of {job['total']} events replayed in {rebuild_seconds:.1f} s; "
          f"work orders created during the bench and reported after it: {report['totals']['created']} of {created}")
    print(line("dispatch alone", alone, seconds))
    print(line("dispatch during rebuild", during, measured))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), {"LOG_LEVEL": "WARNING"}) as stack:
        asyncio.run(run(stack, args.events, args.clients, args.seconds))


if __name__ == "__main__":
    main()
