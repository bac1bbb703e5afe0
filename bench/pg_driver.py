"""Are the PostgreSQL drivers cooperative under eventlet, and what does each cost?

    .venv/bin/python bench/pg_driver.py

For pg8000 (pure Python) and psycopg2 (C, made cooperative by psycogreen) it prints:
  * 50 greenlets each running `SELECT pg_sleep(0.05)`: wall time. Cooperative ≈ 0.05 s;
    a driver that blocked the hub would take 50 × 0.05 = 2.5 s.
  * 16 greenlets running short primary-key SELECTs through SQLAlchemy: queries per second.
Needs PostgreSQL on 127.0.0.1:5432 (user postgres), like the tests.
"""
import os

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from psycogreen.eventlet import patch_psycopg  # noqa: E402

os.environ.setdefault("DB_POOL_SIZE", "50")  # one connection per greenlet below

patch_psycopg()

import sqlalchemy as sa  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devstack.ephemeral import create_databases, drop_databases  # noqa: E402
from svc_common.db import make_engine  # noqa: E402


def sleep_test(engine, greenlets: int = 50, seconds: float = 0.05) -> float:
    def one():
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})

    pool = eventlet.GreenPool(greenlets)
    started = time.perf_counter()
    for _ in range(greenlets):
        pool.spawn(one)
    pool.waitall()
    return time.perf_counter() - started


def query_rate(engine, greenlets: int = 16, per_greenlet: int = 300) -> float:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (id int primary key, name text)"))
        conn.execute(sa.text("INSERT INTO probe VALUES (1, 'x') ON CONFLICT DO NOTHING"))

    def worker():
        for _ in range(per_greenlet):
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT name FROM probe WHERE id = :id"), {"id": 1}).scalar()

    pool = eventlet.GreenPool(greenlets)
    started = time.perf_counter()
    for _ in range(greenlets):
        pool.spawn(worker)
    pool.waitall()
    return greenlets * per_greenlet / (time.perf_counter() - started)


def main() -> int:
    dbs = create_databases(["driver"])
    try:
        for driver in ("pg8000", "psycopg2"):
            url = dbs.url("driver").replace("postgresql+psycopg2", f"postgresql+{driver}").replace(
                "postgresql+pg8000", f"postgresql+{driver}")
            engine = make_engine(url)
            sleep_test(engine, 5)  # open the pool's connections first
            wall = sleep_test(engine)
            rate = query_rate(engine)
            engine.dispose()
            verdict = "cooperative" if wall < 0.5 else "BLOCKS the event loop"
            print(f"{driver:9s} 50 × pg_sleep(0.05): {wall:.3f} s ({verdict});  primary-key SELECTs: {rate:.0f}/s")
    finally:
        drop_databases(dbs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
