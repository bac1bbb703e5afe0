"""Customers-service benchmarks of issue 5, on the machine's real PostgreSQL (a throw-away database):

    .venv/bin/python bench/customers_bench.py [qr|nearby|reminders ...]

- qr:        create a batch of 10,000 QR codes and export it as a ZIP of PNG labels
             (target ≤ 60 s, ≤ 300 MB peak memory); the PDF sheet of the same batch is timed too.
- nearby:    nearby-customers query over 100,000 customers (target p99 ≤ 50 ms).
- reminders: reminder evaluation over 1,000,000 equipment (seconds; and a second, idempotent run).

Each part runs in its own process so that its peak memory (ru_maxrss) is its own.
"""
import datetime as dt
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "customers")]

import sqlalchemy as sa  # noqa: E402

from customers import handlers, labels  # noqa: E402
from customers.models import PLATFORM, Address, Customer  # noqa: E402
from customers.schemas import QrBatchIn  # noqa: E402
from devstack.ephemeral import create_databases, drop_databases  # noqa: E402
from svc_common.context import system_context  # noqa: E402
from svc_common.db import Database  # noqa: E402
from svc_common.migrate import upgrade  # noqa: E402
from svc_common.testing import context, uow  # noqa: E402

PARTS = ("qr", "nearby", "reminders")


def peak_mb() -> float:
    """Peak resident memory of this process plus the largest of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def database():
    dbs = create_databases(["customers"])
    url = dbs.url("customers")
    upgrade("customers", url)
    return dbs, Database(url, PLATFORM)


def bench_qr(db: Database) -> None:
    ctx = context(role="admin")
    cpu = cpu_seconds()
    started = time.perf_counter()
    with uow(db, ctx) as u:
        batch = handlers.create_batch(u, QrBatchIn(size=10_000))
    created = time.perf_counter()
    with uow(db, ctx) as u:
        codes = handlers.batch_code_strings(u, batch.id)
    with tempfile.TemporaryFile() as out:
        count = labels.write_zip(out, codes, "https://fsp.example.com/q/", "上海申能空调设备有限公司",
                                 batch.number)
        size = out.tell()
    exported = time.perf_counter()
    print(f"qr codes generated:           {count}  in {created - started:.1f} s (database insert)")
    print(f"ZIP of PNG labels exported:   {exported - created:.1f} s  ({size / 1e6:.0f} MB)")
    print(f"generate + export total:      {exported - started:.1f} s  (target ≤ 60 s); "
          f"CPU {cpu_seconds() - cpu:.1f} s over {labels.DEFAULT_WORKERS} worker processes")
    print(f"peak memory (RSS):            {peak_mb():.0f} MB  (target ≤ 300 MB; this process + the largest worker)")
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        labels.write_pdf(out, codes, "https://fsp.example.com/q/", "上海申能空调设备有限公司")
        print(f"PDF label sheet (10,000):     {time.perf_counter() - t:.1f} s  ({out.tell() / 1e6:.0f} MB, "
              f"{-(-10_000 // 24)} A4 pages); peak memory now {peak_mb():.0f} MB")


def bench_nearby(db: Database, customers: int = 100_000, queries: int = 500) -> None:
    tenant = uuid.uuid4()
    rng = random.Random(5)
    # Shanghai and around: a 110 km × 110 km square, ~8 customers per km².
    t = time.perf_counter()
    with db.session(None) as s, s.begin():
        for start in range(0, customers, 5000):
            rows, addresses = [], []
            for i in range(start, min(start + 5000, customers)):
                cid = uuid.uuid4()
                rows.append({"id": cid, "tenant_id": tenant, "name": f"客户{i}", "name_key": f"客户{i}", "tags": [],
                             "custom_fields": {}, "created_at": dt.datetime.now(dt.timezone.utc)})
                addresses.append({"id": uuid.uuid4(), "tenant_id": tenant, "customer_id": cid, "position": 0,
                                  "text": f"地址{i}", "latitude": round(rng.uniform(30.7, 31.7), 6),
                                  "longitude": round(rng.uniform(120.9, 122.05), 6)})
            s.execute(sa.insert(Customer.__table__), rows)
            s.execute(sa.insert(Address.__table__), addresses)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE customers; ANALYZE addresses")
    print(f"customers loaded:             {customers} in {time.perf_counter() - t:.0f} s")
    ctx = context(tenant_id=tenant)
    timings, found = [], []
    for i in range(queries + 20):
        lat, lng = rng.uniform(30.8, 31.6), rng.uniform(121.0, 121.95)
        started = time.perf_counter()
        with uow(db, ctx) as u:
            result = handlers.nearby_customers(u, lat, lng, 2000, 50)
        if i >= 20:  # after a warm-up
            timings.append((time.perf_counter() - started) * 1000)
            found.append(len(result))
    timings.sort()
    p99 = timings[int(len(timings) * 0.99) - 1]
    print(f"nearby queries (2 km, ≤50):   n={queries}, {statistics.mean(found):.0f} customers found on average")
    print(f"nearby latency p50 / p99:     {statistics.median(timings):.1f} ms / {p99:.1f} ms  (target p99 ≤ 50 ms)")


def bench_reminders(db: Database, equipment: int = 1_000_000) -> None:
    tenant = uuid.uuid4()
    today = dt.date.today()
    t = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"id": uuid.uuid4(), "tenant_id": tenant, "name": f"客户{i}", "name_key": f"客户{i}", "tags": [],
             "custom_fields": {}, "created_at": dt.datetime.now(dt.timezone.utc)} for i in range(2000)])
        # One statement. An installed base in steady state: warranties ending evenly over six years
        # around today, maintenance every 90 days with the next date spread over the coming cycle
        # (and 3 days of it overdue).
        conn.execute(sa.text("""
            INSERT INTO equipment (id, tenant_id, customer_id, model, serial_number, created_at, status, custom_fields,
                                   warranty_end, maintenance_interval_days, next_maintenance_date)
            SELECT gen_random_uuid(), :tenant, c.id, 'KFR-72LW', 'SN' || g, now(), 'active', '{}',
                   CAST(:today AS date) + CAST((g::bigint * 7919) % 2190 - 1095 AS integer),
                   90, CAST(:today AS date) + CAST((g::bigint * 104729) % 90 - 3 AS integer)
            FROM generate_series(1, :n) AS g
            JOIN (SELECT id, row_number() OVER () - 1 AS k FROM customers WHERE tenant_id = :tenant) c
              ON c.k = g % 2000
        """), {"tenant": tenant, "today": today, "n": equipment})
        conn.exec_driver_sql("ANALYZE equipment")
    print(f"equipment loaded:             {equipment} in {time.perf_counter() - t:.0f} s")
    runs = (("first run (the backlog)", today), ("again, same day (nothing new)", today),
            ("next day (what became due)", today + dt.timedelta(days=1)))
    for label, day in runs:
        started = time.perf_counter()
        totals: dict[str, int] = {}
        cursor = None
        while True:
            with uow(db, system_context(tenant)) as u:
                result = handlers.evaluate_reminders(u, day, cursor=cursor)
            for kind, n in result["sent"].items():
                totals[kind] = totals.get(kind, 0) + n
            cursor = result["cursor"]
            if cursor is None:
                break
        seconds = time.perf_counter() - started
        print(f"reminders, {label}: {seconds:.1f} s over {equipment} equipment; "
              f"{sum(totals.values())} events {dict((k, v) for k, v in totals.items() if v)}")


def run_part(part: str) -> None:
    dbs, db = database()
    try:
        {"qr": bench_qr, "nearby": bench_nearby, "reminders": bench_reminders}[part](db)
    finally:
        db.dispose()
        drop_databases(dbs)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--part":
        run_part(argv[1])
        return 0
    parts = argv or list(PARTS)
    for part in parts:
        if part not in PARTS:
            print(f"unknown part {part}; choose from {', '.join(PARTS)}", file=sys.stderr)
            return 2
        print(f"== {part}", flush=True)
        code = subprocess.call([sys.executable, __file__, "--part", part], env=os.environ)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
