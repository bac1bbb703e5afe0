"""Where the CPU of one work-order create goes, process by process.

    .venv/bin/python bench/create_cost.py [--clients 32] [--seconds 10]

Loads POST /api/v1/work-orders from N concurrent clients for a while, reads each process's CPU
time from /proc before and after (the services, the gateway, PostgreSQL's backends, RabbitMQ),
and prints milliseconds of CPU per create. On a CPU-bound machine, throughput ≈ cores / total.
"""
import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.ephemeral import running_stack  # noqa: E402
from flow_bench import ok, setup  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def snapshot(stack) -> dict[str, float]:
    groups = {name: [p.pid] for name, p in stack.processes.items()}
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    groups["postgresql"] = [p for p in pids if command_of(p) == "postgres"]
    groups["rabbitmq"] = [p for p in pids if command_of(p) == "beam.smp"]
    return {name: sum(cpu_seconds(p) for p in ps) for name, ps in groups.items()}


async def load(stack, clients: int, seconds: float) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession(base_url=stack.gateway_url,
                                     connector=aiohttp.TCPConnector(limit=clients * 2)) as client:
        ctx = await setup(client, 1, 1)
        body = {"type": "repair", "customer_id": ctx["customer"]["id"], "description": "成本测量"}
        await asyncio.sleep(1)  # let the replicas fill: measure the steady state
        count = 0
        deadline = time.perf_counter() + seconds

        async def worker():
            nonlocal count
            while time.perf_counter() < deadline:
                await ok(client, "POST", "/work-orders", ctx["dispatcher"], json=body)
                count += 1

        before = snapshot(stack)
        await asyncio.gather(*(worker() for _ in range(clients)))
        await asyncio.sleep(2)  # the consumers of ticket.created finish their share
        after = snapshot(stack)
        return count, before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), {"LOG_LEVEL": "WARNING"}) as stack:
        count, before, after = asyncio.run(load(stack, args.clients, args.seconds))
    print(f"creates: {count} in {args.seconds:.0f} s ({count / args.seconds:.0f}/s) at {args.clients} clients")
    total = 0.0
    for name in sorted(after, key=lambda n: before.get(n, 0) - after[n]):
        ms = (after[name] - before.get(name, 0)) * 1000 / count
        total += ms
        print(f"  {name:11s} {ms:6.2f} ms CPU per create")
    print(f"  {'total':11s} {total:6.2f} ms  → CPU-bound ceiling on {os.cpu_count()} cores ≈ "
          f"{os.cpu_count() * 1000 / total:.0f} creates/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
