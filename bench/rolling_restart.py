"""Rolling restart of every service, then the gateway, under steady load: failed requests and lost events.

    .venv/bin/python bench/rolling_restart.py [--clients 8] [--flow-techs 2] [--instances 1] [--gap 3]

On fresh PostgreSQL databases and a fresh RabbitMQ vhost (devstack.ephemeral.running_stack), N aiohttp
clients create work orders through the gateway and a few technicians run whole flows (create → assign →
accept → check-in → complete, one part used) without pause. Meanwhile each service (customers,
inventory, tickets, notify, reports), then the gateway, is stopped with SIGTERM (graceful: in-flight
work finishes), started again and waited for until ready, one after the other, `--gap` s apart.

Every POST carries an Idempotency-Key; on 502/503/504, a 409 "still in progress" or a connection error
(the gateway is down for a moment) the client retries with the same key, and GETs likewise. Printed:
requests, retried attempts, requests that still failed, and lost or doubled effects: orders vs
successful keys, ticket.created / ticket.completed in reports vs the orders, parts consumed vs
completions. `--instances 2` runs two instances of every service, restarted one at a time.
"""
import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.ephemeral import running_stack  # noqa: E402
from devstack.stack import SERVICES  # noqa: E402
from flow_bench import pct, setup  # noqa: E402
from scale_tickets import Client, Load, personal_stock, print_verification, roster_warm_up, verify  # noqa: E402


async def run(args, stack) -> int:
    connector = aiohttp.TCPConnector(limit=(args.clients + args.flow_techs) * 2)
    async with aiohttp.ClientSession(base_url=stack.gateway_url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        client = Client(http)
        ctx = await setup(http, args.flow_techs, args.flows_each + 2)
        await roster_warm_up(client, ctx)
        stock_before = await personal_stock(client, ctx)
        order = [name for service in SERVICES for name in stack.instances(service)] + ["gateway"]
        restarts: list[str] = []

        async def restart_all():
            await asyncio.sleep(args.gap)
            for name in order:
                started = time.monotonic()
                await asyncio.to_thread(stack.kill, name, signal.SIGTERM)  # returns once the process exited
                stopped = time.monotonic()
                await asyncio.to_thread(stack.start, name)
                await asyncio.to_thread(stack.wait_service_ready, name)
                restarts.append(f"{name} {stopped - started:.1f}+{time.monotonic() - stopped:.1f} s")
                await asyncio.sleep(args.gap)

        warm_latencies = len(client.latencies)
        load = Load(client, ctx)
        elapsed = await load.run(args.clients, ctx["techs"], args.flows_each, restart_all)
        latencies = client.latencies[warm_latencies:]
        print(f"rolling restart (SIGTERM, start, wait until ready) under load: {args.clients} create clients + "
              f"{args.flow_techs} technicians doing whole flows, {args.instances} instance(s) of each service")
        print(f"  restarted (SIGTERM until exit + start until ready): {', '.join(restarts)}")
        print(f"  load: {elapsed:.0f} s, {len(load.created)} creates ({len(load.created) / elapsed:.0f}/s), "
              f"{load.flows} whole flows")
        print(f"  client requests: {client.requests}, attempts: {client.attempts}, retried attempts: "
              f"{sum(client.retry_reasons.values())} by reason {dict(client.retry_reasons)}")
        print(f"  request latency incl. retries p50 / p99 / max: {statistics.median(latencies) * 1000:.0f} / "
              f"{pct(latencies, 99) * 1000:.0f} / {max(latencies) * 1000:.0f} ms")
        print(f"  FAILED client requests after retries: {len(client.failed)} (creates {len(load.create_failed)}, "
              f"flow steps {len(load.flow_failed)}); 409s resolved because the order had moved on: "
              f"{load.conflicts_resolved}")
        for failure in (client.failed + [("step", 0, f) for f in load.flow_failed])[:10]:
            print(f"    {failure}")
        v = await verify(client, ctx, [load], stock_before)
        print("  afterwards:")
        print_verification(v)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent create clients")
    parser.add_argument("--flow-techs", type=int, default=2, help="technicians doing whole flows meanwhile")
    parser.add_argument("--flows-each", type=int, default=200, help="at most this many flows per technician")
    parser.add_argument("--instances", type=int, default=1, help="instances of every service")
    parser.add_argument("--gap", type=float, default=3, help="seconds of load between restarts")
    args = parser.parse_args()
    instances = {s: args.instances for s in SERVICES} if args.instances > 1 else None
    with tempfile.TemporaryDirectory() as tmp, \
            running_stack(Path(tmp), {"LOG_LEVEL": "WARNING"}, instances=instances) as stack:
        return asyncio.run(run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
