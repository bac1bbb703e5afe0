"""Several instances of the tickets service: is work shared, what is the throughput, and does
SIGKILL of one instance under load lose a request or an event?

    .venv/bin/python bench/scale_tickets.py [--clients 16] [--flow-techs 2] [--seconds 10] [--kills 6]

On fresh PostgreSQL databases and a fresh RabbitMQ vhost (devstack.ephemeral.running_stack):
  1. for 1, 2 and 3 tickets instances: N aiohttp clients create work orders through the gateway
     (and a few technicians run whole flows) for a fixed time; prints creates/s, flows/s and how many
     create_ticket calls each instance handled (from each instance's own /metrics);
  2. with 3 instances under the same load, SIGKILLs one instance (then starts it again), `--kills`
     times. Every POST carries an Idempotency-Key; on 502/503/504, a 409 "still in progress" or a
     connection error the client retries with the same key;
  3. afterwards, against the database (through the API) and the reports read model: orders vs
     distinct successful keys, duplicates (one key, two orders), ticket.created and
     ticket.completed counted by reports, parts consumed vs completions.
"""
import argparse
import asyncio
import collections
import datetime as dt
import re
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.ephemeral import running_stack  # noqa: E402
from flow_bench import setup  # noqa: E402

RETRY_STATUSES = {0, 502, 503, 504}  # 0: connection refused/reset or client timeout
IN_PROGRESS = "still in progress"  # the gateway's 409 for a retry while the first attempt runs


class Client:
    """POSTs with an Idempotency-Key, retried with the same key on 5xx-gateway errors and dropped
    connections; GETs retried the same way. Counts logical requests, attempts and final failures."""

    def __init__(self, http: aiohttp.ClientSession, give_up_seconds: float = 60):
        self.http = http
        self.give_up = give_up_seconds
        self.requests = 0
        self.attempts = 0
        self.failed: list[tuple[str, int, str]] = []
        self.retry_reasons: collections.Counter = collections.Counter()
        self.latencies: list[float] = []  # seconds per logical request, retries included

    async def _once(self, method: str, path: str, token: str | None, key: str | None, body) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key:
            headers["Idempotency-Key"] = key
        try:
            async with self.http.request(method, f"/api/v1{path}", headers=headers, json=body) as r:
                return r.status, await r.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return 0, type(exc).__name__

    async def request(self, method: str, path: str, token: str | None = None, body=None,
                      key: str | None = None) -> tuple[int, object]:
        if method == "POST" and key is None:
            key = uuid.uuid4().hex
        self.requests += 1
        started = time.monotonic()
        deadline = started + self.give_up
        delay = 0.1
        while True:
            self.attempts += 1
            status, data = await self._once(method, path, token, key, body)
            retry = status in RETRY_STATUSES or (status == 409 and IN_PROGRESS in str(data))
            if not retry:
                self.latencies.append(time.monotonic() - started)
                return status, data
            self.retry_reasons[status if status else "connection"] += 1
            if time.monotonic() > deadline:
                self.failed.append((f"{method} {path}", status, str(data)[:200]))
                return status, data
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def ok(self, method: str, path: str, token: str | None = None, body=None, key: str | None = None):
        status, data = await self.request(method, path, token, body, key)
        if status >= 300:
            raise RuntimeError(f"{method} {path} → {status} {data}")
        return data


def scrape_count(port: int, entrypoint: str) -> float | None:
    """entrypoint_latency_seconds_count{entrypoint=...} of one instance, None if it does not answer."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("entrypoint_latency_seconds_count{") and f'entrypoint="{entrypoint}"' in line)


class Load:
    """Creates from `clients` workers and whole flows from the technicians, until stopped."""

    def __init__(self, client: Client, ctx: dict):
        self.client, self.ctx = client, ctx
        self.created: dict[str, str] = {}  # Idempotency-Key → order id, for every create that succeeded
        self.create_failed: list[str] = []
        self.flows = 0
        self.flow_failed: list[str] = []
        self.conflicts_resolved = 0  # a step answered 409 but the order had in fact moved on (redelivered RPC)
        self.stopping = asyncio.Event()

    async def create(self, description: str = "scale") -> str | None:
        key = uuid.uuid4().hex
        body = {"type": "repair", "customer_id": self.ctx["customer"]["id"], "description": f"{description} {key}"}
        status, data = await self.client.request("POST", "/work-orders", self.ctx["dispatcher"], body, key)
        if status == 201:
            self.created[key] = data["id"]
            return data["id"]
        self.create_failed.append(f"{status} {str(data)[:200]}")
        return None

    async def step(self, order_id: str, action: str, token: str, body, reached: str) -> bool:
        status, data = await self.client.request("POST", f"/work-orders/{order_id}/{action}", token, body)
        if status == 200:
            return True
        if status == 409:  # e.g. the RPC ran twice (redelivered after a kill): did the order move on anyway?
            order = await self.client.ok("GET", f"/work-orders/{order_id}", self.ctx["dispatcher"])
            if order["status"] == reached:
                self.conflicts_resolved += 1
                return True
        self.flow_failed.append(f"{action} → {status} {str(data)[:200]}")
        return False

    async def flow(self, tech: dict) -> bool:
        order_id = await self.create("flow")
        if order_id is None:
            return False
        return (await self.step(order_id, "assign", self.ctx["dispatcher"], {"technician_id": tech["id"]}, "assigned")
                and await self.step(order_id, "accept", tech["token"], None, "accepted")
                and await self.step(order_id, "check-in", tech["token"], {"latitude": "31.2", "longitude": "121.5"},
                                    "in_progress")
                and await self.step(order_id, "complete", tech["token"], {
                    "summary": "完成", "parts_used": [{"part_id": self.ctx["part"]["id"], "quantity": "1"}]},
                    "completed"))

    async def creator(self) -> None:
        while not self.stopping.is_set():
            await self.create()

    async def technician(self, tech: dict, max_flows: int) -> None:
        done = 0
        while not self.stopping.is_set() and done < max_flows:
            if await self.flow(tech):
                self.flows += 1
            done += 1

    async def run(self, clients: int, techs: list[dict], max_flows_each: int, during=None) -> float:
        self.stopping.clear()
        started = time.perf_counter()
        workers = [asyncio.create_task(self.creator()) for _ in range(clients)]
        workers += [asyncio.create_task(self.technician(t, max_flows_each)) for t in techs]
        if during is not None:
            await during()
        self.stopping.set()
        await asyncio.gather(*workers)
        return time.perf_counter() - started


async def roster_warm_up(client: Client, ctx: dict) -> None:
    """tickets learns technicians from events: wait until each one can be assigned."""
    body = {"type": "repair", "customer_id": ctx["customer"]["id"], "description": "warm-up"}
    for tech in ctx["techs"]:
        order = await client.ok("POST", "/work-orders", ctx["dispatcher"], body)
        for _ in range(200):
            status, _ = await client.request("POST", f"/work-orders/{order['id']}/assign", ctx["dispatcher"],
                                             {"technician_id": tech["id"]})
            if status == 200:
                break
            await asyncio.sleep(0.05)


async def all_orders(client: Client, token: str) -> list[dict]:
    orders, offset = [], 0
    while True:
        page = await client.ok("GET", f"/work-orders?offset={offset}&limit=200", token)
        orders += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return orders


async def reports_summary(client: Client, token: str) -> dict:
    today = dt.datetime.now(dt.timezone.utc).date()
    return await client.ok("GET", f"/reports/work-orders-summary?date_from={today - dt.timedelta(days=1)}"
                                  f"&date_to={today + dt.timedelta(days=1)}", token)


async def personal_stock(client: Client, ctx: dict) -> float:
    total = 0.0
    for tech in ctx["techs"]:
        stock = await client.ok("GET", "/technicians/me/stock", tech["token"])
        total += sum(float(i["quantity"]) for i in stock["items"] if i["part_id"] == ctx["part"]["id"])
    return total


async def verify(client: Client, ctx: dict, loads: list[Load], stock_before: float, settle: float = 60) -> dict:
    """Orders vs successful keys, duplicates, and whether every event reached reports and inventory."""
    token = ctx["dispatcher"]
    created = {k: v for load in loads for k, v in load.created.items()}
    deadline = time.monotonic() + settle
    while True:
        orders = await all_orders(client, token)
        summary = await reports_summary(client, token)
        completed = sum(1 for o in orders if o["status"] == "completed")
        consumed = stock_before - await personal_stock(client, ctx)
        settled = (summary["total_created"] == len(orders) and summary["total_completed"] == completed
                   and consumed == completed)
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    by_key = collections.Counter(o["description"].rsplit(" ", 1)[-1] for o in orders
                                 if o["description"].startswith(("scale ", "flow ")))
    returned_ids = set(created.values())
    doubles = sorted((o for o in orders if by_key[o["description"].rsplit(" ", 1)[-1]] > 1
                      and o["description"].startswith(("scale ", "flow "))), key=lambda o: o["description"])
    return {
        "doubles": [f"{o['description'].rsplit(' ', 1)[-1][:8]}… {o['number']} created {o['created_at']}"
                    f"{'' if o['id'] in returned_ids else '  ← no client received it'}" for o in doubles],
        "successful_keys": len(created),
        "orders_of_keys": sum(by_key[k] for k in created),
        "orders_without_success": sum(n for k, n in by_key.items() if k not in created),
        "duplicated_keys": sum(1 for k in created if by_key[k] > 1),
        "extra_orders": sum(by_key[k] - 1 for k in created if by_key[k] > 1),
        "orders_not_returned": sum(1 for o in orders if o["description"].startswith(("scale ", "flow "))
                                   and o["id"] not in returned_ids),
        "orders_total": len(orders),
        "reports_created": summary["total_created"],
        "completed_orders": completed,
        "reports_completed": summary["total_completed"],
        "parts_consumed": consumed,
        "settled": settled,
    }


def print_log_lines(stack, failure: str) -> None:
    """The services' log lines of a failed request (by its correlation id), to say why it failed."""
    match = re.search(r"'correlation_id': '([0-9a-f]+)'", failure)
    if not match:
        return
    for log in sorted(stack.logs_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if match.group(1) in line:
                print(f"      {log.stem}: {line[:1500]}")


def print_verification(v: dict) -> None:
    print(f"  distinct Idempotency-Keys that succeeded:      {v['successful_keys']}")
    print(f"  orders in the database for those keys:        {v['orders_of_keys']}"
          f"  (keys with 2+ orders: {v['duplicated_keys']}, extra orders: {v['extra_orders']})")
    print(f"  orders whose create never succeeded:          {v['orders_without_success']}")
    print(f"  orders whose id no client ever received:      {v['orders_not_returned']}")
    print(f"  ticket.created in reports vs orders (all):    {v['reports_created']} / {v['orders_total']}")
    print(f"  ticket.completed in reports vs completed:     {v['reports_completed']} / {v['completed_orders']}")
    print(f"  parts consumed vs completed orders:           {v['parts_consumed']:.0f} / {v['completed_orders']}")
    print(f"  read models caught up:                        {'yes' if v['settled'] else 'NO (after 60 s)'}")
    for line in v["doubles"]:
        print(f"    key {line}")


async def run(args, stack) -> int:
    connector = aiohttp.TCPConnector(limit=(args.clients + args.flow_techs) * 2)
    async with aiohttp.ClientSession(base_url=stack.gateway_url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        client = Client(http)
        ctx = await setup(http, args.flow_techs, args.flows_each * 4 + 2)  # 4 phases
        await roster_warm_up(client, ctx)
        stock_before = await personal_stock(client, ctx)
        loads: list[Load] = []

        print(f"tickets instances, {args.clients} create clients + {args.flow_techs} technicians doing whole "
              f"flows, {args.seconds:.0f} s each:")
        print("  instances   creates/s   flows/s   create_ticket calls handled per instance")
        for count in (1, 2, 3):
            names = stack.scale("tickets", count)
            ports = {n: stack.metrics_port(n) for n in names}
            warm = Load(client, ctx)
            await warm.run(args.clients, [], 0, lambda: asyncio.sleep(2))  # warm-up: connections, replicas
            loads.append(warm)
            before = {n: scrape_count(p, "create_ticket") or 0.0 for n, p in ports.items()}
            load = Load(client, ctx)
            elapsed = await load.run(args.clients, ctx["techs"], args.flows_each,
                                     lambda: asyncio.sleep(args.seconds))
            loads.append(load)
            after = {n: scrape_count(p, "create_ticket") or 0.0 for n, p in ports.items()}
            handled = "  ".join(f"{n}={after[n] - before[n]:.0f}" for n in names)
            print(f"  {count:>9}   {len(load.created) / elapsed:9.0f}   {load.flows / elapsed:7.1f}   {handled}")

        print(f"\nSIGKILL of one of 3 tickets instances under the same load ({args.kills} kills, each instance "
              f"started again after its kill):")
        names = stack.scale("tickets", 3)
        ports = {n: stack.metrics_port(n) for n in names}
        last = {n: scrape_count(p, "create_ticket") or 0.0 for n, p in ports.items()}
        handled = collections.Counter()
        kill_log = []

        def scrape_all():
            for n, p in ports.items():
                value = scrape_count(p, "create_ticket")
                if value is not None:
                    if value < last[n]:  # restarted: its counter began again at 0
                        last[n] = 0.0
                    handled[n] += value - last[n]
                    last[n] = value

        async def killer():
            for i in range(args.kills):
                victim = names[1 + i % 2]  # tickets-2, tickets-3, tickets-2, ...
                await asyncio.sleep(args.kill_every)
                await asyncio.to_thread(scrape_all)
                in_flight = load.client.requests
                stack.kill(victim, signal.SIGKILL)
                kill_log.append(f"  kill {i + 1}: SIGKILL {victim} at {dt.datetime.now(dt.timezone.utc):%H:%M:%S.%f}"
                                f" UTC, {in_flight} client requests so far")
                await asyncio.sleep(1.0)
                stack.start(victim)
                await asyncio.to_thread(stack.wait_service_ready, victim)
                last[victim] = 0.0
            await asyncio.sleep(args.kill_every)
            await asyncio.to_thread(scrape_all)

        before_requests, before_attempts = client.requests, client.attempts
        before_retries = sum(client.retry_reasons.values())
        load = Load(client, ctx)
        elapsed = await load.run(args.clients, ctx["techs"], args.flows_each, killer)
        loads.append(load)
        print("\n".join(kill_log))
        print(f"  {len(load.created)} creates and {load.flows} flows in {elapsed:.0f} s "
              f"({len(load.created) / elapsed:.0f} creates/s)")
        print("  create_ticket calls handled (at least, scraped before each kill): "
              + "  ".join(f"{n}={handled[n]:.0f}" for n in names))
        print(f"  client requests: {client.requests - before_requests}, attempts: "
              f"{client.attempts - before_attempts}, retried attempts: "
              f"{sum(client.retry_reasons.values()) - before_retries}")
        print(f"  failed after retries: creates {len(load.create_failed)}, flow steps {len(load.flow_failed)}; "
              f"409s resolved because the order had moved on: {load.conflicts_resolved}")
        for failure in (load.create_failed + load.flow_failed)[:10]:
            print(f"    {failure}")
            print_log_lines(stack, failure)

        print("\nAfterwards (every phase, one tenant):")
        v = await verify(client, ctx, loads, stock_before)
        print_verification(v)
        print(f"  client requests in all: {client.requests}, failed after retries: {len(client.failed)}, "
              f"retries by reason: {dict(client.retry_reasons)}")
        for failure in client.failed[:10]:
            print(f"    {failure}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="concurrent create clients")
    parser.add_argument("--flow-techs", type=int, default=2, help="technicians doing whole flows meanwhile")
    parser.add_argument("--flows-each", type=int, default=60, help="at most this many flows per technician and phase")
    parser.add_argument("--seconds", type=float, default=10, help="load per instance count")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--kill-every", type=float, default=4, help="seconds of load before each kill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), {"LOG_LEVEL": "WARNING"}) as stack:
        return asyncio.run(run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
