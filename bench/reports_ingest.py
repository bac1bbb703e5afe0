"""How fast the reports take in events, and how fast the reports answer over a month and a year.

    .venv/bin/python bench/reports_ingest.py [--events 1000000] [--batch 2000] [--queries 20]

Generates a year (2026) of work orders — each 8 events: created, assigned, accepted, checked_in,
completed (with a service item), settled (fee and cost lines), visited, closed — plus one part
consumption (stock.moved) per second order, and ingests them into a fresh PostgreSQL database
(migrated by Alembic) in batches, through the same projections as live consumption
(`handlers.ingest`: one multi-row INSERT into the archive per batch, then the read models).
Prints events/s, peak memory (RSS), the p99 time from an event's creation to its batch being
committed (freshness of the bulk path), and p95 of each report over a month and over the year.

    .venv/bin/python bench/reports_ingest.py --freshness-rate 50 --freshness-seconds 30

Freshness of the live path instead: the reports service runs as in production (nameko on a fresh
RabbitMQ vhost and PostgreSQL database); events are published onto the `<producer>.events`
exchanges at the given rate (200 orders in flight, interleaved), and the time from each event's occurred_at (set when published) to
its row in the archive, committed with the read models, is read back: p50, p99, max.
"""
import argparse
import datetime as dt
import random
import resource
import statistics
import sys
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
from svc_common.uow import UnitOfWork  # noqa: E402

TENANT = uuid.uuid4()
YEAR_START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
TECHNICIANS = [uuid.uuid4() for _ in range(200)]
TEAMS = [uuid.uuid4() for _ in range(20)]
CUSTOMERS = [uuid.uuid4() for _ in range(5000)]
ITEMS = [uuid.uuid4() for _ in range(30)]
PARTS = [uuid.uuid4() for _ in range(300)]
PLANS = [uuid.uuid4() for _ in range(50)]
TYPES = ("repair", "install", "maintenance", "inspection")


def order_events(n: int, rng: random.Random):
    """The events of the n-th work order (and its part consumption), spread over the year."""
    ticket, tech, team = uuid.uuid4(), rng.choice(TECHNICIANS), rng.choice(TEAMS)
    customer, type_ = rng.choice(CUSTOMERS), rng.choice(TYPES)
    base = {"ticket_id": str(ticket), "number": f"WO{n:07d}", "type": type_, "customer_id": str(customer),
            "team_id": str(team)}
    at = YEAR_START + dt.timedelta(seconds=rng.randrange(365 * 86400 - 3 * 86400))
    steps = [("ticket.created", 0, {"priority": rng.choice(("low", "normal", "high")),
                                    "plan_id": str(rng.choice(PLANS)) if type_ == "maintenance" else None}),
             ("ticket.assigned", 300, {"technician_id": str(tech)}),
             ("ticket.accepted", 900 + rng.randrange(3600), {"technician_id": str(tech)}),
             ("ticket.checked_in", 5400 + rng.randrange(7200), {"technician_id": str(tech)}),
             ("ticket.completed", 14400 + rng.randrange(14400), {
                 "technician_id": str(tech), "customer_name": "客户", "summary": "ok",
                 "on_site_seconds": 3600, "service_items": [{"service_item_id": str(rng.choice(ITEMS)),
                                                             "quantity": "1"}]}),
             ("ticket.settled", 86400, {"technician_id": str(tech), "currency": "CNY", "fee_total": "180.00",
                                        "cost_total": "95.50", "gross_profit": "84.50",
                                        "fee_lines": [{"kind": "service_item", "ref_id": str(rng.choice(ITEMS)),
                                                       "description": "x", "quantity": "1", "unit_price": "180.00",
                                                       "amount": "180.00"}],
                                        "cost_lines": [{"kind": "labour", "description": "x", "quantity": "1",
                                                        "unit_price": "95.50", "amount": "95.50"}]}),
             ("ticket.visited", 2 * 86400, {"technician_id": str(tech), "satisfaction": rng.randint(3, 5)}),
             ("ticket.closed", 2 * 86400 + 60, {"technician_id": str(tech)})]
    for event_type, offset, extra in steps:
        occurred = at + dt.timedelta(seconds=offset)
        data = {**base, **{k: v for k, v in extra.items() if v is not None}}
        if event_type == "ticket.completed":
            data["completed_at"] = occurred.isoformat()
        yield envelope(event_type, occurred, data)
    if n % 2 == 0:
        unit = rng.choice(("12.50", "30.00", "88.80"))
        yield envelope("stock.moved", at + dt.timedelta(seconds=14000), {
            "move_id": str(uuid.uuid4()), "part_id": str(rng.choice(PARTS)), "quantity": "1", "kind": "consumption",
            "unit_cost": unit, "value": unit, "technician_id": str(tech), "customer_id": str(customer),
            "ticket_id": str(ticket)})


def envelope(event_type, occurred, data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1,
            "occurred_at": occurred.isoformat(), "tenant_id": str(TENANT), "correlation_id": None, "actor": None,
            "data": data}


def generate(total: int, seed: int = 7):
    rng, n, produced = random.Random(seed), 0, 0
    while produced < total:
        for event in order_events(n, rng):
            yield event
            produced += 1
            if produced >= total:
                return
        n += 1


def interleaved(in_flight: int = 200, seed: int = 11):
    """Events of many orders at once, each order's in its own order, as a live day looks: the
    events of one order are minutes or hours apart, not back to back."""
    rng, n, active = random.Random(seed), 0, []
    while True:
        while len(active) < in_flight:
            active.append(list(order_events(n, rng)))
            n += 1
        pick = rng.randrange(len(active))
        yield active[pick].pop(0)
        if not active[pick]:
            active.pop(pick)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ingest(db: Database, total: int, batch_size: int) -> None:
    started, done, batch, freshness = time.perf_counter(), 0, [], []
    last_report = started

    def flush():
        nonlocal done, batch
        created = time.perf_counter()  # a batch's events are "created" when the batch is full
        events = [EventEnvelope.model_validate(e) for e in batch]
        with UnitOfWork(db, system_context(TENANT)) as uow:
            handlers.ingest(uow, events)
        freshness.append(time.perf_counter() - created)
        done += len(batch)
        batch = []

    for event in generate(total):
        batch.append(event)
        if len(batch) >= batch_size:
            flush()
            if time.perf_counter() - last_report > 15:
                last_report = time.perf_counter()
                print(f"  … {done:,} events, {done / (last_report - started):,.0f}/s, RSS {rss_mib():.0f} MiB",
                      flush=True)
    if batch:
        flush()
    seconds = time.perf_counter() - started
    freshness.sort()
    print(f"ingested {done:,} events in {seconds:.1f} s: {done / seconds:,.0f} events/s "
          f"(batches of {batch_size}); peak RSS {rss_mib():.0f} MiB; "
          f"batch commit p99 {freshness[int(0.99 * (len(freshness) - 1))] * 1000:.0f} ms")
    # On a shared machine wall-clock rates depend on the neighbours: CPU time of this process does not.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"loader CPU {usage.ru_utime + usage.ru_stime:.1f} s: "
          f"{done / (usage.ru_utime + usage.ru_stime):,.0f} events per CPU-second (PostgreSQL's own CPU not counted)")


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def queries(db: Database, repeat: int) -> None:
    ranges = {"month": ("2026-06-01", "2026-06-30", "day"), "year": ("2026-01-01", "2026-12-31", "month")}
    print(f"{'report':<16}{'month p95 ms':>14}{'year p95 ms':>14}")
    for name in REPORT_NAMES + ("dashboard",):
        cells = []
        for date_from, date_to, group_by in ranges.values():
            query = ReportQuery(date_from=date_from, date_to=date_to, group_by=group_by, tz="Asia/Shanghai")
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                with UnitOfWork(db, system_context(TENANT)) as uow:
                    if name == "dashboard":
                        handlers.dashboard(uow, DashboardIn(tz="Asia/Shanghai"),
                                           now=dt.datetime(2026, 6, 15, 6, tzinfo=dt.timezone.utc))
                    else:
                        handlers.run_report(uow, name, query)
                samples.append((time.perf_counter() - t0) * 1000)
            cells.append(p95(samples))
        print(f"{name:<16}{cells[0]:>14.0f}{cells[1]:>14.0f}", flush=True)


def freshness(rate: float, seconds: float) -> None:
    import secrets
    import tempfile

    import kombu
    import sqlalchemy as sa

    from devstack.ephemeral import free_port_block, isolated_vhost
    from devstack.stack import Stack, StackConfig
    from reports.models import EventArchive
    from tests.servers import delete_vhost

    dbs, (vhost, amqp_uri) = create_databases(["reports"]), isolated_vhost()
    stack = Stack(StackConfig(amqp_uri=amqp_uri, database_url=lambda _: dbs.url("reports"),
                              data_dir=Path(tempfile.mkdtemp()), jwt_secret=secrets.token_urlsafe(32),
                              metrics_base_port=free_port_block(5), extra_env={"OUTBOX_POLL_SECONDS": "0.2"}))
    try:
        upgrade("reports", dbs.url("reports"))
        stack.start("reports")
        stack.wait_service_ready("reports")
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
        with db.session(None) as session:
            while session.scalar(sa.select(sa.func.count()).select_from(EventArchive)) < published:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
                session.rollback()
            lags = sorted((a - o).total_seconds() for a, o in session.execute(
                sa.select(EventArchive.archived_at, EventArchive.occurred_at)))
        db.dispose()
        print(f"live path: {published:,} events published at {published / seconds:,.0f}/s for {seconds:.0f} s; "
              f"{len(lags):,} archived; event → report p50 {lags[len(lags) // 2] * 1000:.0f} ms, "
              f"p99 {lags[int(0.99 * (len(lags) - 1))] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    finally:
        stack.stop_all()
        delete_vhost(vhost)
        drop_databases(dbs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=20, help="runs of each report for its p95")
    parser.add_argument("--freshness-rate", type=float, help="measure the live path at this many events/s")
    parser.add_argument("--freshness-seconds", type=float, default=30)
    args = parser.parse_args()
    if args.freshness_rate:
        freshness(args.freshness_rate, args.freshness_seconds)
        return
    dbs = create_databases(["reports"])
    try:
        upgrade("reports", dbs.url("reports"))
        db = Database(dbs.url("reports"), PLATFORM)
        print(f"reports ingestion into PostgreSQL ({dbs.url('reports')}), {args.events:,} events")
        ingest(db, args.events, args.batch)
        queries(db, args.queries)
        db.dispose()
    finally:
        drop_databases(dbs)


if __name__ == "__main__":
    main()
