"""Where the CPU of one work-order create goes, process by process.

    .venv/bin/python bench/create_cost.py [--clients 32] [--seconds 10]

Loads POST /api/v1/work-orders from N concurrent clients for a while, reads each process's CPU
time from /proc before and after (the services, the gateway, PostgreSQL's backends, RabbitMQ),
and prints milliseconds of CPU per create. On a CPU-bound machine, throughput ≈ cores / total.

Meant to stay meaningful on a machine busy with other work: PostgreSQL counts only the backends of
this run's databases; every process's idle CPU (timers, polls; RabbitMQ serving others) is measured
first and taken off; after the load it waits until the consumers of the creates' events have
finished (every process back to its idle rate) instead of a fixed time.
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


def cmdline_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def snapshot(stack) -> dict[str, float]:
    groups = {name: [p.pid] for name, p in stack.processes.items()}
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    # Only this run's backends ("postgres: 15/main: postgres fsp_t1234abcd_tickets 127.0.0.1(…)").
    prefix = stack.config.database_url("tickets").rsplit("/", 1)[1].rsplit("_", 1)[0] + "_"
    groups["postgresql"] = [p for p in pids if command_of(p) == "postgres" and prefix in cmdline_of(p)]
    groups["rabbitmq"] = [p for p in pids if command_of(p) == "beam.smp"]
    return {name: sum(cpu_seconds(p) for p in ps) for name, ps in groups.items()}


def idle_rates(stack, seconds: float) -> dict[str, float]:
    """CPU seconds per second each group spends with no load from this run."""
    before, t0 = snapshot(stack), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = snapshot(stack), time.perf_counter() - t0
    return {name: max(after[name] - before.get(name, 0.0), 0.0) / elapsed for name in after}


async def until_idle(stack, idle: dict[str, float], timeout: float = 60) -> None:
    """Wait until every process is back to its idle rate (+3% of a core) over half a second, twice."""
    quiet, deadline = 0, time.perf_counter() + timeout
    last, t_last = snapshot(stack), time.perf_counter()
    while quiet < 2 and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
        now, t_now = snapshot(stack), time.perf_counter()
        busy = [n for n in now if n != "rabbitmq" and
                (now[n] - last.get(n, 0.0)) / (t_now - t_last) > idle.get(n, 0.0) + 0.03]
        quiet = quiet + 1 if not busy else 0
        last, t_last = now, t_now


async def load(stack, clients: int, seconds: float, idle_seconds: float) -> tuple[int, dict[str, float]]:
    """(creates, CPU seconds each group spent on them)."""
    async with aiohttp.ClientSession(base_url=stack.gateway_url,
                                     connector=aiohttp.TCPConnector(limit=clients * 2)) as client:
        ctx = await setup(client, 1, 1)
        body = {"type": "repair", "customer_id": ctx["customer"]["id"], "description": "成本测量"}
        for _ in range(clients):  # warm-up: replicas, caches, connections; measure the steady state
            await ok(client, "POST", "/work-orders", ctx["dispatcher"], json=body)
        idle = await asyncio.to_thread(idle_rates, stack, idle_seconds)  # also lets the warm-up settle
        count = 0
        deadline = time.perf_counter() + seconds

        async def worker():
            nonlocal count
            while time.perf_counter() < deadline:
                await ok(client, "POST", "/work-orders", ctx["dispatcher"], json=body)
                count += 1

        before, started = snapshot(stack), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        await until_idle(stack, idle)  # the consumers of ticket.created finish their share
        after, elapsed = snapshot(stack), time.perf_counter() - started
        return count, {name: max(after[name] - before.get(name, 0.0) - idle.get(name, 0.0) * elapsed, 0.0)
                       for name in after}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--idle-seconds", type=float, default=5, help="idle CPU measured over this long first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), {"LOG_LEVEL": "WARNING"}) as stack:
        count, spent = asyncio.run(load(stack, args.clients, args.seconds, args.idle_seconds))
    print(f"creates: {count} in {args.seconds:.0f} s ({count / args.seconds:.0f}/s) at {args.clients} clients")
    total = 0.0
    for name in sorted(spent, key=lambda n: -spent[n]):
        ms = spent[name] * 1000 / count
        total += ms
        print(f"  {name:11s} {ms:6.2f} ms CPU per create")
    print(f"  {'total':11s} {total:6.2f} ms  → CPU-bound ceiling on {os.cpu_count()} cores ≈ "
          f"{os.cpu_count() * 1000 / total:.0f} creates/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
