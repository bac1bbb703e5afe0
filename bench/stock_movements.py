"""Stock movements per second on PostgreSQL: one hot part, and spread over many parts.

    .venv/bin/python bench/stock_movements.py     (--writers 16 --processes 2 --parts 10000 --seconds 15)

Each movement is what the service does for a one-line stock-in or stock-out: one transaction with
the conditional balance update, the ledger line and its `stock.moved` event in the outbox.
N writers (threads spread over `--processes` processes, like a service's workers over its instances:
one Python process is held to one core by its GIL), each with its own connection, run for a fixed
time, first all on ONE part of one
warehouse (every movement waits for the previous one's row lock), then on random parts among
10,000. Printed: movements/s, latency p50/p99, the CPU one movement costs (writer process + its
PostgreSQL backend, so a figure taken on a shared, busy machine can be read against its cores), and
the proof that nothing was lost or doubled —
every movement id a writer got back is in the ledger exactly once, the ledger holds no other line,
each has its outbox event, and the recompute check agrees with the balances.
Target: ≥ 500 movements/s spread, no lost or duplicated entry. Needs PostgreSQL on 127.0.0.1:5432.
"""
import argparse
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("DB_POOL_SIZE", "40")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "inventory"))

import sqlalchemy as sa  # noqa: E402

from devstack.ephemeral import create_databases, drop_databases  # noqa: E402
from inventory import handlers  # noqa: E402
from inventory.models import PLATFORM, Balance, Location, Part, StockMove  # noqa: E402
from inventory.schemas import IssueIn, ReceiveIn  # noqa: E402
from svc_common import migrate  # noqa: E402
from svc_common.db import Database, new_id, utcnow  # noqa: E402
from svc_common.errors import Conflict  # noqa: E402
from svc_common.testing import context, uow  # noqa: E402


def seed(db: Database, ctx, parts: int) -> tuple:
    """One warehouse, `parts` parts with 1,000 each in stock (bulk, in one transaction)."""
    with db.session(ctx.tenant_id) as s, s.begin():
        warehouse = Location(id=new_id(), tenant_id=ctx.tenant_id, kind="warehouse", name="总仓",
                             manager_ids=[], created_at=utcnow())
        s.add(warehouse)
        ids = [new_id() for _ in range(parts)]
        s.execute(sa.insert(Part), [{"id": i, "tenant_id": ctx.tenant_id, "code": f"P{n:05d}", "name": f"件{n}",
                                     "unit": "个", "min_stock": Decimal(0), "active": True, "created_at": utcnow()}
                                    for n, i in enumerate(ids)])
        s.flush()
        s.execute(sa.insert(StockMove), [{"id": new_id(), "tenant_id": ctx.tenant_id, "part_id": i,
                                          "quantity": Decimal(1000), "kind": "inbound", "to_location_id": warehouse.id,
                                          "created_at": utcnow()} for i in ids])
        s.execute(sa.insert(Balance), [{"id": new_id(), "tenant_id": ctx.tenant_id, "location_id": warehouse.id,
                                        "part_id": i, "quantity": Decimal(1000)} for i in ids])
    return warehouse.id, ids


def writer(url: str, ctx, warehouse_id, part_ids: list, seed_: int, start, seconds: float, out) -> None:
    """One writer: movements on random parts of `part_ids` until `seconds` after everyone is ready."""
    db = Database(url, PLATFORM)  # its own engine and connection (also after a fork)
    with db.engine.connect() as conn:  # the PostgreSQL backend serving this writer (pool of one in use)
        backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    rng = random.Random(seed_)
    ids, latencies, conflicts = [], [], 0
    start.wait()
    stop = time.monotonic() + seconds
    cpu_python, cpu_pg = time.thread_time(), _backend_cpu(backend)
    try:
        while time.monotonic() < stop:
            part = str(rng.choice(part_ids))
            began = time.perf_counter()
            try:
                with uow(db, ctx) as u:
                    if rng.random() < 0.5:
                        moves = handlers.receive_stock(u, warehouse_id, ReceiveIn(lines=[{"part_id": part,
                                                                                          "quantity": "1"}]))
                    else:
                        moves = handlers.issue_stock(u, warehouse_id, IssueIn(lines=[{"part_id": part,
                                                                                      "quantity": "1"}], note="bench"))
                ids.append(moves[0].id)
                latencies.append(time.perf_counter() - began)
            except Conflict:
                conflicts += 1
    finally:
        cpu_python, cpu_pg = time.thread_time() - cpu_python, _backend_cpu(backend) - cpu_pg
        db.dispose()
        out.put((ids, latencies, conflicts, cpu_python, cpu_pg))


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend has used; 0 if not readable (remote server)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def writer_group(url: str, ctx, warehouse_id, part_ids: list, seeds: list[int], start, seconds: float, out) -> None:
    """One process: its share of the writers, as threads."""
    threads = [threading.Thread(target=writer, args=(url, ctx, warehouse_id, part_ids, n, start, seconds, out))
               for n in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(url: str, ctx, warehouse_id, part_ids: list, writers: int, seconds: float, processes: int) -> dict:
    mp = multiprocessing.get_context("fork")
    start, out = mp.Barrier(writers + 1), mp.Queue()
    groups = [list(range(writers))[i::processes] for i in range(processes)]
    workers = [mp.Process(target=writer_group, args=(url, ctx, warehouse_id, part_ids, seeds, start, seconds, out))
               for seeds in groups if seeds]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    results = [out.get() for _ in range(writers)]
    elapsed = time.perf_counter() - began
    for w in workers:
        w.join()
    ids = [i for r in results for i in r[0]]
    latencies = sorted(x for r in results for x in r[1])
    return {"ids": ids, "elapsed": elapsed, "conflicts": sum(r[2] for r in results),
            "cpu_python": sum(r[3] for r in results) / max(len(ids), 1) * 1000,
            "cpu_pg": sum(r[4] for r in results) / max(len(ids), 1) * 1000,
            "p50": statistics.median(latencies) * 1000, "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000}


def verify(db: Database, ctx, ids: list) -> str:
    with db.session(None) as s:
        in_ledger = {row for row in s.scalars(sa.select(StockMove.id).where(StockMove.note == "bench")
                                              .union_all(sa.select(StockMove.id).where(
                                                  StockMove.kind == "inbound", StockMove.quantity == 1)))}
        ledger_lines = s.scalar(sa.select(sa.func.count()).select_from(StockMove)) - s.scalar(
            sa.select(sa.func.count()).select_from(Part))  # minus the seeding lines
        events = s.scalar(sa.select(sa.func.count()).select_from(PLATFORM.outbox)
                          .where(PLATFORM.outbox.c.type == "stock.moved"))
        check = handlers.ledger_check(s, ctx.tenant_id)
    returned = set(ids)
    lost = len(returned - in_ledger)
    unknown = len(in_ledger - returned)
    duplicated = len(ids) - len(returned)
    ok = lost == unknown == duplicated == 0 and ledger_lines == len(ids) == events and check["agree"]
    return (f"returned ids {len(ids)}, ledger lines {ledger_lines}, stock.moved events {events}; lost {lost}, "
            f"unknown {unknown}, duplicated {duplicated}; recompute check agrees: {check['agree']} "
            f"→ {'OK' if ok else 'FAILED'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--parts", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="processes the writers are spread over (default: one per core)")
    args = parser.parse_args()
    dbs = create_databases(["hot", "spread"])
    try:
        print(f"{args.writers} writers (threads over {args.processes} processes), {args.seconds:.0f} s each; "
              "one transaction per movement (ledger line + balance + outbox event)")
        for name, parts in (("hot", 1), ("spread", args.parts)):
            migrate.upgrade("inventory", dbs.url(name))
            db = Database(dbs.url(name), PLATFORM)
            ctx = context(role="admin")
            warehouse_id, part_ids = seed(db, ctx, parts)
            db.dispose()  # no connection crosses the fork
            r = run(dbs.url(name), ctx, warehouse_id, part_ids, args.writers, args.seconds, args.processes)
            label = "one hot part" if parts == 1 else f"spread over {parts:,} parts"
            print(f"{label:>26}: {len(r['ids']) / r['elapsed']:7.0f} movements/s  p50 {r['p50']:.1f} ms  "
                  f"p99 {r['p99']:.1f} ms  ({len(r['ids'])} movements, {r['conflicts']} refused for lack of stock)")
            db = Database(dbs.url(name), PLATFORM)
            print(f"{'':>26}  {verify(db, ctx, r['ids'])}")
            cpu = r["cpu_python"] + r["cpu_pg"]
            print(f"{'':>26}  CPU per movement: Python {r['cpu_python']:.2f} ms + PostgreSQL backend "
                  f"{r['cpu_pg']:.2f} ms → {os.cpu_count()} cores fully available would carry ≈ "
                  f"{os.cpu_count() * 1000 / cpu:.0f} movements/s (load average now "
                  f"{os.getloadavg()[0]:.1f})")
            db.dispose()
    finally:
        for attempt in range(3):  # on a busy machine DROP ... WITH (FORCE) can outlast the admin timeout
            try:
                drop_databases(dbs)
                break
            except Exception as exc:
                print(f"dropping the bench databases failed ({exc!r}), retrying")
                time.sleep(2)


if __name__ == "__main__":
    main()
