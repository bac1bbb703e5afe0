"""How fast the reports take in events, and how fast the reports answer over a month and a year.

    .venv/bin/python bench/reports_ingest.py [--orders 1000000] [--path consumer|direct] [--instances 2]
                                             [--workers 2] [--queries 20]

Generates a year (2026) of work orders — each 8 events: created, assigned, accepted, checked_in,
completed (with a service item), settled (fee and cost lines), visited (stars, per-dimension scores,
tags), closed — plus one part consumption (stock.moved) per second order: 8.5 events per order.
200 technicians in 20 teams, 5,000 customers; about 2 % of the orders backfilled (补录).

The orders are created evenly over the year and their events come in the order they happen (the
steps of one order hours and days apart, interleaved with the other orders'), as a year of the live
bus would bring them.

`--path consumer` (default): the reports service runs as in production (nameko, its batch handlers,
on a fresh RabbitMQ vhost and PostgreSQL database); the events are published onto the
`<producer>.events` exchanges as fast as the service keeps up (at most `--backlog` events waiting). Prints events/s (published → archived
with the read models and rollups committed) and the CPU per event of the reports process and of its
PostgreSQL backends (CPU time, not wall time: robust on a loaded machine), and an estimate of the
rate two idle cores would give.
`--instances N`: N reports processes sharing the queues (production scales them on queue depth);
the CPU per event is summed over them.
`--path direct`: the same events through `handlers.ingest` in-process, in batches of `--batch`
(no broker): the cost of the projections alone. `--workers N`: N loader processes, each generating
the same stream and taking the work orders whose key hashes to it (as a batch is split in the
service), so one computes while another waits on PostgreSQL; a bulk load or a replay on two cores.
With autovacuum off (the development server), the tables are ANALYZEd at each doubling of the
events in, and VACUUMed and ANALYZEd before the queries, as autovacuum would.

Then p95 of every report (and the dashboard) over a month (grouped by day) and over the year
(grouped by month), read as the service reads them (rollups where they answer), after one untimed
warm-up run, with the median CPU time of this process per query.

`--keep` leaves the database in place and prints its URL; `--database URL` then runs only the
queries on it (after a change to how a report reads, without loading the events again), or with
`--freshness-rate` measures freshness on it (tables as large as that run made them).

    .venv/bin/python bench/reports_ingest.py --freshness-rate 50 --freshness-seconds 30

Freshness of the live path instead: events published at the given rate (200 orders in flight), and
the time from each event's occurred_at (set when published) to its row in the archive, committed with
the read models: p50, p99, max.
"""
import argparse
import datetime as dt
import os
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "reports")]

from devstack.ephemeral import create_databases, drop_databases  # noqa: E402
from reports import handlers  # noqa: E402
from reports.models import PLATFORM  # noqa: E402
from reports.schemas import REPORT_NAMES, DashboardIn, ReportQuery  # noqa: E402
from svc_common.context import system_context  # noqa: E402
from svc_common.contracts import EventEnvelope  # noqa: E402
from svc_common.db import Database  # noqa: E402
from svc_common.migrate import upgrade  # noqa: E402
from svc_common.startup import freeze_startup_objects  # noqa: E402
from svc_common.uow import UnitOfWork  # noqa: E402

TENANT = uuid.uuid4()
YEAR_START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
TEAMS = [uuid.uuid4() for _ in range(20)]
TECHNICIANS = [uuid.uuid4() for _ in range(200)]
TEAM_OF = {tech: TEAMS[i % len(TEAMS)] for i, tech in enumerate(TECHNICIANS)}  # a technician is in one team
CUSTOMERS = [uuid.uuid4() for _ in range(5000)]
ITEMS = [uuid.uuid4() for _ in range(30)]
PARTS = [uuid.uuid4() for _ in range(300)]
PLANS = [uuid.uuid4() for _ in range(50)]
TYPES = ("repair", "install", "maintenance", "inspection")
EXCHANGE_OF = {"stock.moved": "inventory.events"}  # the rest: tickets.events
EVENTS_PER_ORDER = 8.5


def order_events(n: int, rng: random.Random, at: dt.datetime | None = None):
    """The events of the n-th work order (and its part consumption), created at `at` (default: any
    time of the year), in the order they happen."""
    # the work order's id from the seeded generator: loader processes generating the same stream agree
    # on which of them takes an order (`--workers`)
    ticket, tech = uuid.UUID(int=rng.getrandbits(128), version=4), rng.choice(TECHNICIANS)
    customer, type_ = rng.choice(CUSTOMERS), rng.choice(TYPES)
    base = {"ticket_id": str(ticket), "number": f"WO{n:07d}", "type": type_, "customer_id": str(customer),
            "team_id": str(TEAM_OF[tech])}
    at = at or YEAR_START + dt.timedelta(seconds=rng.randrange(365 * 86400 - 3 * 86400))
    backfilled = rng.random() < 0.02
    steps = [("ticket.created", 0, {"priority": rng.choice(("low", "normal", "high")), "backfilled": backfilled,
                                    "plan_id": str(rng.choice(PLANS)) if type_ == "maintenance" else None}),
             ("ticket.assigned", 300, {"technician_id": str(tech)}),
             ("ticket.accepted", 900 + rng.randrange(3600), {"technician_id": str(tech)}),
             ("ticket.checked_in", 5400 + rng.randrange(7200), {"technician_id": str(tech)}),
             ("ticket.completed", 14400 + rng.randrange(14400), {
                 "technician_id": str(tech), "customer_name": "客户", "summary": "ok", "backfilled": backfilled,
                 "on_site_seconds": 3600, "service_items": [{"service_item_id": str(rng.choice(ITEMS)),
                                                             "quantity": "1"}]}),
             ("ticket.settled", 86400, {"technician_id": str(tech), "currency": "CNY", "fee_total": "180.00",
                                        "cost_total": "95.50", "gross_profit": "84.50",
                                        "fee_lines": [{"kind": "service_item", "ref_id": str(rng.choice(ITEMS)),
                                                       "description": "x", "quantity": "1", "unit_price": "180.00",
                                                       "amount": "180.00"}],
                                        "cost_lines": [{"kind": "labour", "description": "x", "quantity": "1",
                                                        "unit_price": "95.50", "amount": "95.50"}]}),
             ("ticket.visited", 2 * 86400, {"technician_id": str(tech), "satisfaction": rng.randint(3, 5),
                                            "scores": {"质量": rng.randint(3, 5), "态度": rng.randint(3, 5)},
                                            "tags": rng.sample(("准时", "专业", "礼貌"), rng.randrange(3)),
                                            "by_customer": rng.random() < 0.5}),
             ("ticket.closed", 2 * 86400 + 60, {"technician_id": str(tech)})]
    for event_type, offset, extra in steps:
        occurred = at + dt.timedelta(seconds=offset)
        data = {**base, **{k: v for k, v in extra.items() if v is not None}}
        if event_type == "ticket.completed":
            data["completed_at"] = occurred.isoformat()
        yield envelope(event_type, occurred, data)
        if event_type == "ticket.checked_in" and n % 2 == 0:  # a part used on site
            unit = rng.choice(("12.50", "30.00", "88.80"))
            yield envelope("stock.moved", occurred + dt.timedelta(seconds=1800), {
                "move_id": str(uuid.uuid4()), "part_id": str(rng.choice(PARTS)), "quantity": "1",
                "kind": "consumption", "unit_cost": unit, "value": unit, "technician_id": str(tech),
                "customer_id": str(customer), "ticket_id": str(ticket)})


def envelope(event_type, occurred, data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1,
            "occurred_at": occurred.isoformat(), "tenant_id": str(TENANT), "correlation_id": None, "actor": None,
            "data": data}


def generate(orders: int, seed: int = 7, days: int = 365):
    """Every event of `orders` work orders created evenly over the year, in the order they happen (as
    a year of the live bus would bring them): the steps of one order are hours and days apart,
    interleaved with those of the orders created meanwhile."""
    import heapq
    rng, heap, n, seq = random.Random(seed), [], 0, 0
    spacing = (days - 3) * 86400 / orders

    def created(k):
        return YEAR_START + dt.timedelta(seconds=k * spacing)
    while n < orders or heap:
        while n < orders and (not heap or created(n) <= heap[0][0]):
            for event in order_events(n, rng, created(n)):
                heapq.heappush(heap, (dt.datetime.fromisoformat(event["occurred_at"]), seq, event))
                seq += 1
            n += 1
        yield heapq.heappop(heap)[2]


def interleaved(orders: int | None = None, in_flight: int = 200, seed: int = 11):
    """Events of many orders at once, each order's in its own order, as a live day looks: the
    events of one order are minutes or hours apart, not back to back."""
    rng, n, active = random.Random(seed), 0, []
    while True:
        while len(active) < in_flight and (orders is None or n < orders):
            active.append(list(order_events(n, rng)))
            n += 1
        if not active:
            return
        pick = rng.randrange(len(active))
        yield active[pick].pop(0)
        if not active[pick]:
            active.pop(pick)


def rss_mib() -> float:
    """Peak RSS of this process or of the largest of its loader processes."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU of the PostgreSQL backends serving one database (their pids from pg_stat_activity)."""

    def __init__(self, db: Database, database: str):
        self.db, self.database, self.seen = db, database, {}

    def sample(self) -> None:
        import sqlalchemy as sa
        with self.db.engine.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> "
                                        "pg_backend_pid()"), {"d": self.database}).scalars().all()
        for pid in pids:
            try:
                self.seen[pid] = max(self.seen.get(pid, 0.0), cpu_seconds(pid))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass

    def total(self) -> float:
        return sum(self.seen.values())


class Statistics:
    """ANALYZE (and VACUUM) the reports' tables as autovacuum would, if it is off (as on the development server):
    the batch's key lookups (tenant and ticket) are planned from the tables' statistics, and
    statistics of the empty tables make the planner scan every row of the company instead (linear
    in the data: the ingest rate would fall as the tables grow). Run at each doubling of the events
    in; before the queries, VACUUM too, as autovacuum would have by then: every event updates rollup
    and work-order rows, and a report reading past their dead versions pays for them (at 1,000,000
    orders: 0.9 million dead rollup rows beside 2.7 million live ones)."""

    def __init__(self, db: Database):
        import sqlalchemy as sa
        self.db, self.next = db, 1000
        with db.engine.connect() as conn:
            self.off = conn.execute(sa.text("SHOW autovacuum")).scalar() == "off"

    def maybe(self, events: int, force: bool = False) -> None:
        import sqlalchemy as sa
        if self.off and (force or events >= self.next):
            self.next = max(self.next, events) * 2
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE" if force else "ANALYZE"))


def ingest_direct(db: Database, orders: int, batch_size: int, days: int = 365, workers: int = 1) -> None:
    """The events through `handlers.ingest` in this process or, `workers` > 1, in that many processes,
    each taking the events of its share of the work orders (by `handlers.partition_key`, as the
    service splits a batch): one waits on PostgreSQL while another computes."""
    started = time.perf_counter()
    if workers == 1:
        done, cpu, pg_cpu = _ingest_share(db, orders, batch_size, days, 0, 1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        db.dispose()  # each worker opens its own connections
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            # a worker's exception is raised here
            shares = list(pool.map(_ingest_worker, [(db.url, orders, batch_size, days, k, workers)
                                                    for k in range(workers)]))
        done, cpu, pg_cpu = (sum(share[i] for share in shares) for i in range(3))
    seconds = time.perf_counter() - started
    print(f"direct: ingested {done:,} events ({orders:,} orders) in {seconds:.1f} s: {done / seconds:,.0f} events/s "
          f"(batches of {batch_size}, {workers} worker process(es)); peak RSS {rss_mib():.0f} MiB\n"
          f"  CPU per event: loader {cpu / done * 1000:.3f} ms (generating and validating the events included), "
          f"PostgreSQL {pg_cpu / done * 1000:.3f} ms ⇒ on 2 idle cores ≈ {2 * done / (cpu + pg_cpu):,.0f} events/s; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def _ingest_worker(args: tuple) -> tuple[int, float, float]:
    url, *rest = args
    db = Database(url, PLATFORM)
    try:
        return _ingest_share(db, *rest)
    finally:
        db.dispose()


def _ingest_share(db: Database, orders: int, batch_size: int, days: int, share: int,
                  shares: int) -> tuple[int, float, float]:
    """Ingest the events of work orders whose partition key hashes to `share` of `shares`; returns
    (events, CPU seconds of this process, CPU seconds of its PostgreSQL backend)."""
    import zlib
    from types import SimpleNamespace
    # CPU of each PostgreSQL backend this process used, read after every batch: the pool replaces its
    # connection every 30 minutes (pool_recycle), and a closed backend's CPU can no longer be read
    backends: dict[int, float] = {}
    started, done, batch = time.perf_counter(), 0, []
    last_report = started
    stats = Statistics(db) if share == 0 else None  # one ANALYZE for all the workers
    cpu0 = time.process_time()

    def mine(event) -> bool:
        key = handlers.partition_key(SimpleNamespace(data=event["data"], event_id=event["event_id"]))
        return zlib.crc32(key.encode()) % shares == share

    def flush():
        nonlocal done, batch
        events = [EventEnvelope.model_validate(e) for e in batch]
        with UnitOfWork(db, system_context(TENANT)) as uow:
            handlers.ingest(uow, events)
            pid = uow.session.connection().connection.dbapi_connection.info.backend_pid
        backends[pid] = cpu_seconds(pid)
        done += len(batch)
        batch = []

    for event in generate(orders, days=days):
        if shares > 1 and not mine(event):
            continue
        batch.append(event)
        if len(batch) >= batch_size:
            flush()
            if stats:
                stats.maybe(done * shares)
            if time.perf_counter() - last_report > 15:
                last_report = time.perf_counter()
                print(f"  … {'' if shares == 1 else f'worker {share}: '}{done:,} events, "
                      f"{done / (last_report - started):,.0f}/s, RSS {rss_mib():.0f} MiB", flush=True)
    if batch:
        flush()
    return done, time.process_time() - cpu0, sum(backends.values())


def start_reports(dbs, extra_env: dict, instances: int = 1):
    """The reports service on its own vhost: `instances` processes sharing its queues (production
    scales it horizontally on queue depth)."""
    from devstack.ephemeral import free_port_block, isolated_vhost
    from devstack.stack import Stack, StackConfig
    vhost, amqp_uri = isolated_vhost()
    stack = Stack(StackConfig(amqp_uri=amqp_uri, database_url=lambda _: dbs.url("reports"),
                              data_dir=Path(tempfile.mkdtemp()), jwt_secret=secrets.token_urlsafe(32),
                              metrics_base_port=free_port_block(5), extra_env=extra_env))
    stack.scale("reports", instances)
    return stack, vhost, amqp_uri


def archived(db: Database) -> int:
    import sqlalchemy as sa
    from reports.models import EventArchive
    with db.session(None) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(EventArchive)) or 0


def ingest_consumer(dbs, db: Database, orders: int, backlog: int, extra_env: dict, days: int = 365,
                    instances: int = 1) -> None:
    import kombu
    import sqlalchemy as sa
    from reports.models import EventArchive
    from tests.servers import delete_vhost

    stack, vhost, amqp_uri = start_reports(dbs, extra_env, instances)
    pids = [stack.processes[name].pid for name in stack.instances("reports")]

    def reports_cpu_seconds() -> float:  # every instance's
        return sum(cpu_seconds(pid) for pid in pids)
    pg = PostgresCpu(db, dbs.url("reports").rsplit("/", 1)[1])
    total = int(orders * EVENTS_PER_ORDER)

    def high_water() -> int:  # archive ids are given in insert order: max(id) ~ how many are in
        with db.session(None) as session:
            return session.scalar(sa.select(sa.func.max(EventArchive.id))) or 0
    try:
        exchanges = {name: kombu.Exchange(name, "topic", durable=True) for name in ("tickets.events",
                                                                                   "inventory.events")}
        pg.sample()
        stats = Statistics(db)
        cpu0, bench0 = reports_cpu_seconds(), time.process_time()
        published, started, last_report = 0, time.perf_counter(), time.perf_counter()
        with kombu.Connection(amqp_uri) as conn:
            producer = kombu.Producer(conn.channel())
            for event in generate(orders, days=days):
                producer.publish(event, exchange=exchanges[EXCHANGE_OF.get(event["type"], "tickets.events")],
                                 routing_key=event["type"], serializer="json", delivery_mode=2)
                published += 1
                if published % 5000 == 0:
                    while published - high_water() > backlog:  # keep the broker's queues bounded
                        time.sleep(0.2)
                    stats.maybe(published)
                    if time.perf_counter() - last_report > 30:
                        last_report = time.perf_counter()
                        pg.sample()
                        done = high_water()
                        print(f"  … {done:,} of {total:,} events in, {done / (last_report - started):,.0f}/s; "
                              f"reports CPU {(reports_cpu_seconds() - cpu0) / max(done, 1) * 1000:.3f} ms/event", flush=True)
        deadline = time.monotonic() + 900
        while high_water() < published and time.monotonic() < deadline:
            time.sleep(0.1)
        while archived(db) < published and time.monotonic() < deadline:  # ids can skip: count them
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        pg.sample()
        reports_cpu, bench_cpu = reports_cpu_seconds() - cpu0, time.process_time() - bench0
        count = archived(db)
        per_event = (reports_cpu + pg.total()) / count
        print(f"consumer: {published:,} events ({orders:,} orders) published, {count:,} archived with their read "
              f"models and rollups in {seconds:.1f} s: {count / seconds:,.0f} events/s (batches of "
              f"{extra_env.get('EVENT_BATCH_SIZE', 'default')}, {instances} reports instance(s)); load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        print(f"  CPU per event: reports process(es) {reports_cpu / count * 1000:.3f} ms, its PostgreSQL backends "
              f"{pg.total() / count * 1000:.3f} ms (publisher {bench_cpu / count * 1000:.3f} ms, broker not counted)"
              f"\n  ⇒ on 2 idle cores (reports + PostgreSQL, broker aside): ≈ {2 / per_event:,.0f} events/s; "
              f"one reports process is bound at ≈ {count / reports_cpu:,.0f} events/s per process", flush=True)
        if count != published:
            print(f"  !! {published - count:,} events not archived", flush=True)
    finally:
        stack.stop_all()
        delete_vhost(vhost)


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def queries(db: Database, repeat: int, tenant: uuid.UUID = TENANT) -> None:
    if repeat < 1:  # --queries 0: the ingestion figures only
        return
    Statistics(db).maybe(0, force=True)
    freeze_startup_objects()  # as the service process does once started (svc_common/runner.py)
    ranges = {"month": ("2026-06-01", "2026-06-30", "day"), "year": ("2026-01-01", "2026-12-31", "month")}
    print(f"{'report':<16}{'month p95 ms':>14}{'year p95 ms':>14}   (median CPU ms of this process, month / year; "
          "median wall ms, month / year)")
    for name in REPORT_NAMES + ("dashboard",):
        cells, cpu_cells, medians = [], [], []
        for date_from, date_to, group_by in ranges.values():
            query = ReportQuery(date_from=date_from, date_to=date_to, group_by=group_by, tz="Asia/Shanghai")
            samples, cpu = [], []
            for i in range(repeat + 1):  # the first run warms up (statement compilation, caches): untimed
                t0, c0 = time.perf_counter(), time.process_time()
                with UnitOfWork(db, system_context(tenant)) as uow:
                    if name == "dashboard":
                        now = dt.datetime(2026, 6, 15, 6, tzinfo=dt.timezone.utc) if date_to.endswith("30") else \
                            dt.datetime(2026, 12, 30, 6, tzinfo=dt.timezone.utc)
                        handlers.dashboard(uow, DashboardIn(tz="Asia/Shanghai"), now=now)
                    else:
                        handlers.run_report(uow, name, query)
                if i:
                    samples.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.process_time() - c0) * 1000)
            cells.append(p95(samples))
            cpu_cells.append(statistics.median(cpu))
            medians.append(statistics.median(samples))  # (the p95 of 20 runs is their slowest: CPU waits on 2 cores)
        print(f"{name:<16}{cells[0]:>14.0f}{cells[1]:>14.0f}   ({cpu_cells[0]:.0f} / {cpu_cells[1]:.0f}; "
              f"{medians[0]:.0f} / {medians[1]:.0f})", flush=True)
    print(f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)


def queries_on_kept(url: str, repeat: int) -> None:
    """The queries again on a kept database (after a change to how a report reads): its one company."""
    db = Database(url, PLATFORM)
    tenant = kept_tenant(db)
    print(f"queries on {url} (kept)", flush=True)
    queries(db, repeat, tenant)
    db.dispose()


class KeptDatabase:
    """A database an earlier run kept, where `start_reports` expects `create_databases`' answer."""

    def __init__(self, url: str):
        self._url = url

    def url(self, _component: str) -> str:
        return self._url


def kept_tenant(db: Database) -> uuid.UUID:
    import sqlalchemy as sa
    from reports.models import TenantState
    with db.session(None) as session:
        return session.scalar(sa.select(TenantState.tenant_id))


def freshness(rate: float, seconds: float, kept_url: str | None = None) -> None:
    """`kept_url`: on a database an earlier run kept (its tables as large as that run made them),
    as more events of its company."""
    global TENANT
    import kombu
    import sqlalchemy as sa

    from reports.models import EventArchive
    from tests.servers import delete_vhost

    dbs = KeptDatabase(kept_url) if kept_url else create_databases(["reports"])
    if kept_url:  # (its technicians, customers and parts are this run's own: new rollup keys)
        kept = Database(kept_url, PLATFORM)
        TENANT = kept_tenant(kept)
        kept.dispose()
    else:
        upgrade("reports", dbs.url("reports"))
    stack, vhost, amqp_uri = start_reports(dbs, {"OUTBOX_POLL_SECONDS": "0.2"})
    since = dt.datetime.now(dt.timezone.utc)
    try:
        exchanges = {p: kombu.Exchange(f"{p}.events", "topic", durable=True) for p in ("tickets", "inventory")}
        published, started = 0, time.perf_counter()
        with kombu.Connection(amqp_uri) as conn:
            producer = kombu.Producer(conn.channel())
            stream = interleaved()
            while time.perf_counter() - started < seconds:
                event = next(stream)
                now = dt.datetime.now(dt.timezone.utc)
                event["occurred_at"] = now.isoformat()  # "happened" now: freshness is measured from here
                producer.publish(event, exchange=exchanges["inventory" if event["type"] == "stock.moved"
                                                           else "tickets"],
                                 routing_key=event["type"], serializer="json", delivery_mode=2)
                published += 1
                pause = started + published / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        db = Database(dbs.url("reports"), PLATFORM)
        deadline = time.monotonic() + 120
        new = EventArchive.archived_at >= since  # (a kept database holds the earlier run's events too)
        with db.session(None) as session:
            while session.scalar(sa.select(sa.func.count()).select_from(EventArchive).where(new)) < published:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
                session.rollback()
            lags = sorted((a - o).total_seconds() for a, o in session.execute(
                sa.select(EventArchive.archived_at, EventArchive.occurred_at).where(new)))
        db.dispose()
        print(f"live path: {published:,} events published at {published / seconds:,.0f}/s for {seconds:.0f} s; "
              f"{len(lags):,} archived; event → report p50 {lags[len(lags) // 2] * 1000:.0f} ms, "
              f"p99 {lags[int(0.99 * (len(lags) - 1))] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    finally:
        stack.stop_all()
        delete_vhost(vhost)
        if not kept_url:
            drop_databases(dbs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000, help="work orders (8.5 events each)")
    parser.add_argument("--path", choices=("consumer", "direct"), default="consumer")
    parser.add_argument("--batch", type=int, default=200, help="events per transaction (EVENT_BATCH_SIZE)")
    parser.add_argument("--backlog", type=int, default=100_000, help="most events waiting in the broker")
    parser.add_argument("--days", type=int, default=365,
                        help="days the orders are spread over from 2026-01-01 (fewer: a short run as dense as a "
                             "full year's)")
    parser.add_argument("--instances", type=int, default=1, help="reports processes (path consumer)")
    parser.add_argument("--workers", type=int, default=1, help="loader processes (path direct)")
    parser.add_argument("--queries", type=int, default=20, help="runs of each report for its p95 (0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the database (EXPLAIN the reports' queries)")
    parser.add_argument("--database", help="only the queries (or --freshness-rate), on a database an earlier run "
                                           "kept (its URL)")
    parser.add_argument("--freshness-rate", type=float, help="measure the live path at this many events/s")
    parser.add_argument("--freshness-seconds", type=float, default=30)
    args = parser.parse_args()
    if args.freshness_rate:
        freshness(args.freshness_rate, args.freshness_seconds, args.database)
        return
    if args.database:
        queries_on_kept(args.database, args.queries)
        return
    dbs = create_databases(["reports"])
    try:
        upgrade("reports", dbs.url("reports"))
        db = Database(dbs.url("reports"), PLATFORM)
        print(f"reports ingestion into PostgreSQL ({dbs.url('reports')}): {args.orders:,} work orders, "
              f"≈ {int(args.orders * EVENTS_PER_ORDER):,} events, path {args.path}", flush=True)
        if args.path == "direct":
            ingest_direct(db, args.orders, args.batch, args.days, args.workers)
        else:
            ingest_consumer(dbs, db, args.orders, args.backlog, {"EVENT_BATCH_SIZE": str(args.batch)}, args.days,
                            args.instances)
        queries(db, args.queries)
        db.dispose()
    finally:
        if args.keep:
            print(f"kept {dbs.url('reports')}", flush=True)
        else:
            drop_databases(dbs)


if __name__ == "__main__":
    main()
