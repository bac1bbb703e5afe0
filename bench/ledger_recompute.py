"""The ledger recompute check on PostgreSQL: time and memory over 1,000,000 ledger entries.

    .venv/bin/python bench/ledger_recompute.py            (--moves 1000000 --parts 10000 --locations 1100)

Builds (server-side, generate_series) one tenant with `parts` parts, `locations` locations
(warehouses and personal stocks) and `moves` ledger entries between them (inbound, requisition
issue, consumption), then the balances that follow from them. Runs `handlers.ledger_check` — the
check behind GET /api/v1/stock-ledger/check — and prints its wall time, the Python memory it
allocated at peak (tracemalloc) and the process's peak RSS; then corrupts 3 balances and shows that
the check finds exactly those. The sums run in the database; Python only walks one row per balance.
Needs PostgreSQL on 127.0.0.1:5432.
"""
import argparse
import resource
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "inventory"))

import sqlalchemy as sa  # noqa: E402

from devstack.ephemeral import create_databases, drop_databases  # noqa: E402
from inventory import handlers  # noqa: E402
from inventory.models import PLATFORM  # noqa: E402
from svc_common import migrate  # noqa: E402
from svc_common.db import Database  # noqa: E402


def build(db: Database, tenant: uuid.UUID, moves: int, parts: int, locations: int) -> None:
    warehouses = max(1, locations // 11)
    with db.engine.begin() as c:
        t = {"t": tenant}
        c.execute(sa.text("""
            INSERT INTO parts (id, tenant_id, code, name, unit, min_stock, active, created_at)
            SELECT gen_random_uuid(), :t, 'P' || g, '件' || g, '个', 0, true, now() FROM generate_series(1, :n) g"""),
            t | {"n": parts})
        c.execute(sa.text("""
            INSERT INTO locations (id, tenant_id, kind, name, manager_ids, created_at, owner_user_id)
            SELECT gen_random_uuid(), :t, CASE WHEN g <= :w THEN 'warehouse' ELSE 'personal' END, 'L' || g, '[]',
                   now(), CASE WHEN g <= :w THEN NULL ELSE gen_random_uuid() END
            FROM generate_series(1, :n) g"""), t | {"n": locations, "w": warehouses})
        c.execute(sa.text("CREATE TEMP TABLE pn AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM parts"))
        c.execute(sa.text("""CREATE TEMP TABLE wn AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id
                             FROM locations WHERE kind = 'warehouse'"""))
        c.execute(sa.text("""CREATE TEMP TABLE tn AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id
                             FROM locations WHERE kind = 'personal'"""))
        # Every third entry of each kind: into a warehouse, warehouse → personal, personal → out.
        c.execute(sa.text("""
            INSERT INTO stock_moves (id, tenant_id, part_id, quantity, kind, from_location_id, to_location_id,
                                     unit_cost, created_at)
            SELECT gen_random_uuid(), :t, pn.id, 1 + (g % 7),
                   CASE g % 3 WHEN 0 THEN 'inbound' WHEN 1 THEN 'requisition_issue' ELSE 'consumption' END,
                   CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN wn.id ELSE tn.id END,
                   CASE g % 3 WHEN 0 THEN wn.id WHEN 1 THEN tn.id ELSE NULL END,
                   10.00, now() - (g || ' seconds')::interval
            FROM generate_series(1::bigint, :m) g
            JOIN pn ON pn.n = abs(hashint8(g)) % :parts
            JOIN wn ON wn.n = abs(hashint8(-g)) % :w
            JOIN tn ON tn.n = abs(hashint8(g + 1000000007)) % :p"""),
            t | {"m": moves, "parts": parts, "w": warehouses, "p": locations - warehouses})
        # The balances the handlers would have kept in step.
        c.execute(sa.text("""
            INSERT INTO balances (id, tenant_id, location_id, part_id, quantity)
            SELECT gen_random_uuid(), :t, location_id, part_id, sum(q) FROM (
                SELECT to_location_id AS location_id, part_id, quantity AS q FROM stock_moves
                WHERE to_location_id IS NOT NULL
                UNION ALL
                SELECT from_location_id, part_id, -quantity FROM stock_moves WHERE from_location_id IS NOT NULL) legs
            GROUP BY location_id, part_id"""), t)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))


def timed_check(db: Database, tenant: uuid.UUID) -> tuple[dict, float, int]:
    tracemalloc.start()
    began = time.perf_counter()
    with db.session(None) as s:
        result = handlers.ledger_check(s, tenant)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=10_000)
    parser.add_argument("--locations", type=int, default=1_100)
    args = parser.parse_args()
    dbs = create_databases(["ledger"])
    try:
        migrate.upgrade("inventory", dbs.url("ledger"))
        db = Database(dbs.url("ledger"), PLATFORM)
        tenant = uuid.uuid4()
        began = time.perf_counter()
        build(db, tenant, args.moves, args.parts, args.locations)
        print(f"built {args.moves:,} ledger entries over {args.parts:,} parts and {args.locations:,} locations "
              f"in {time.perf_counter() - began:.1f} s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for attempt in ("cold", "warm"):
            result, elapsed, peak = timed_check(db, tenant)
            print(f"recompute check ({attempt}): {result['moves']:,} entries, {result['balances']:,} balances in "
                  f"{elapsed:.2f} s; agree: {result['agree']}; Python peak {peak / 2**20:.1f} MiB")
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"process peak RSS {rss_after / 1024:.0f} MiB (+{(rss_after - rss_before) / 1024:.0f} MiB during the "
              f"checks)")
        with db.engine.begin() as c:  # corrupt three balances behind the ledger's back
            c.execute(sa.text("UPDATE balances SET quantity = quantity + 1 WHERE id IN "
                              "(SELECT id FROM balances ORDER BY id LIMIT 3)"))
        result, elapsed, _ = timed_check(db, tenant)
        print(f"after corrupting 3 balances: agree {result['agree']}, mismatches found {len(result['mismatches'])} "
              f"({elapsed:.2f} s)")
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
