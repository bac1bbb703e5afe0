"""The reports' read models on the real PostgreSQL (migrated by Alembic, as deployed): the worked
scenario gives exactly the figures it gives on SQLite — money stays Decimal — whether the events
come one by one, in one batch, or from a rebuild of the archive."""
import importlib.util
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from devstack.ephemeral import create_databases, drop_databases
from reports import handlers
from reports.models import PLATFORM, Base
from reports.schemas import REPORT_NAMES, ReportQuery
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import Database
from svc_common.migrate import upgrade
from svc_common.testing import sqlite_database
from svc_common.uow import UnitOfWork
from tests import servers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reports_scenario", ROOT / "services/reports/tests/reports_scenario.py")
scenario = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenario)


@pytest.fixture(scope="module")
def pg():
    with servers.migrated_database("reports", PLATFORM) as db:
        yield db


def feed_one_by_one(db, events):
    for env in events:
        event = EventEnvelope.model_validate(env)
        with UnitOfWork(db, system_context(event.tenant_id)) as uow:
            handlers.consume(uow, event)


def figures(db, tenant) -> dict:
    query = ReportQuery(date_from="2026-11-10", date_to="2026-11-12")
    with UnitOfWork(db, system_context(tenant)) as uow:
        return {name: handlers.run_report(uow, name, query) for name in REPORT_NAMES}


def test_postgres_gives_the_sqlite_figures_live_batched_and_rebuilt(pg, tmp_path):
    lite = sqlite_database(tmp_path, Base.metadata, PLATFORM)
    feed_one_by_one(lite, scenario.events())
    expected = figures(lite, scenario.TENANT)
    assert expected["revenue"]["totals"]["fee_total"] == Decimal("330.50")

    live_tenant, batch_tenant = uuid.uuid4(), uuid.uuid4()
    events = scenario.events(tenant=live_tenant)
    feed_one_by_one(pg, events + events[:5])  # with redeliveries
    assert figures(pg, live_tenant) == expected

    with UnitOfWork(pg, system_context(batch_tenant)) as uow:
        batch = [EventEnvelope.model_validate(e) for e in scenario.events(tenant=batch_tenant)]
        assert handlers.ingest(uow, batch + batch[:3]) == len(batch)
    assert figures(pg, batch_tenant) == expected

    rebuilt = handlers.rebuild_now(pg, live_tenant)
    assert (rebuilt["status"], rebuilt["replayed"]) == ("done", len(events))
    assert figures(pg, live_tenant) == expected
    assert figures(pg, batch_tenant) == expected  # another tenant's rebuild left it alone


# -- rollups, concurrency and rebuilds on PostgreSQL ------------------------------------------------

sys.modules.setdefault("reports_scenario", scenario)  # as test_rollups imports it
_spec2 = importlib.util.spec_from_file_location("test_rollups_unit", ROOT / "services/reports/tests/test_rollups.py")
rollup_tests = importlib.util.module_from_spec(_spec2)
_spec2.loader.exec_module(rollup_tests)


def consume_like_the_service(db, events, batch_size=40):
    """What the batch handler does: a batch in one unit of work per company; if it fails (a deadlock,
    a lost race), its events one by one."""
    failures = 0
    for start in range(0, len(events), batch_size):
        batch = events[start:start + batch_size]
        try:
            rollup_tests.feed(db, batch, batch_size=len(batch))
        except Exception:
            failures += 1
            rollup_tests.feed(db, batch, batch_size=1)
    return failures


@pytest.fixture(scope="module")
def year_events():
    import random
    rng = random.Random(7)
    events = rollup_tests.random_orders(rng, 300)
    rng.shuffle(events)
    return events


def test_postgres_rollups_answer_like_the_rows_with_concurrent_consumers(pg, year_events):
    import threading
    by_type: dict = {}
    for event in year_events:  # one queue per event type, each with its consumer, as deployed
        by_type.setdefault(event["type"], []).append(event)
    failures = []
    threads = [threading.Thread(target=lambda evs=evs: failures.append(consume_like_the_service(pg, evs)))
               for evs in by_type.values()]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for query in rollup_tests.RANDOM_QUERIES:
        rollup_tests.assert_same(pg, rollup_tests.TENANT, **query)
    assert sum(failures) <= len(year_events) // 40  # the fallback is for rare races, not the rule


def test_a_rebuild_runs_while_the_live_consumers_keep_working(pg, tmp_path, year_events):
    """The company is held (its events archived, not projected) while its rebuild replays the archive;
    the events that arrive meanwhile are in the figures when it is done; another company never waits."""
    import random
    import threading
    tenant, other = uuid.uuid4(), uuid.uuid4()

    def of(company, events):
        return [{**e, "event_id": str(uuid.uuid4()), "tenant_id": str(company)} for e in events]
    first, later = of(tenant, year_events[:1500]), of(tenant, year_events[1500:])
    consume_like_the_service(pg, first)
    with UnitOfWork(pg, system_context(tenant, None)) as uow:
        job = handlers.start_rebuild(uow)
    done = threading.Event()

    def live():  # keeps consuming both companies during the rebuild
        rng = random.Random(3)
        for start in range(0, len(later), 25):
            consume_like_the_service(pg, later[start:start + 25] + of(other, rng.sample(year_events, 5)), 30)
        done.set()
    consumer = threading.Thread(target=live)
    consumer.start()
    handlers.run_rebuild(pg, tenant, job.id, page_size=200)
    consumer.join()
    assert done.is_set()
    with UnitOfWork(pg, system_context(tenant)) as uow:
        status = handlers.rebuild_status(uow, job.id)
        assert handlers.tenant_state(uow).rebuild_job_id is None  # released to the live projections
    assert status["status"] == "done" and status["replayed"] >= len(first)
    consume_like_the_service(pg, of(tenant, year_events[:3]))  # and live again afterwards

    lite = sqlite_database(tmp_path, Base.metadata, PLATFORM)  # every event, fed plainly
    everything = first + later + of(tenant, year_events[:3])
    rollup_tests.feed(lite, [{**e, "tenant_id": str(rollup_tests.TENANT)} for e in everything], batch_size=50)
    for query in rollup_tests.RANDOM_QUERIES[:3]:
        q = ReportQuery(**query)
        for report in ("work_orders", "personnel", "revenue", "spare_parts", "satisfaction"):
            with UnitOfWork(pg, system_context(tenant)) as uow:
                live_figures = handlers.run_report(uow, report, q, paged=False)
            with UnitOfWork(lite, system_context(rollup_tests.TENANT)) as uow:
                assert live_figures == handlers.run_report(uow, report, q, paged=False), (report, query)


def test_upgrading_a_deployment_rebuilds_the_rollups_of_existing_companies():
    """Migration 0003 on a database with events: each company gets a (stale) rebuild job, which the
    reports service takes over and runs; until then its reports read the rows."""
    import json

    import sqlalchemy as sa
    from reports.models import EventArchive, RebuildJob
    dbs = create_databases(["reports"])
    try:
        url = dbs.url("reports")
        upgrade("reports", url, revision="0002")
        tenant = uuid.uuid4()
        events = scenario.events(tenant=tenant)
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # what 0002's service archived (its read models are rebuilt anyway)
            conn.execute(sa.text(
                "INSERT INTO event_archive (event_id, tenant_id, type, occurred_at, envelope, archived_at) "
                "VALUES (:event_id, :tenant_id, :type, :occurred_at, CAST(:envelope AS JSON), now())"),
                [{"event_id": e["event_id"], "tenant_id": str(tenant), "type": e["type"],
                  "occurred_at": e["occurred_at"], "envelope": json.dumps(e)} for e in events])
        engine.dispose()
        upgrade("reports", url)
        db = Database(url, PLATFORM)
        with UnitOfWork(db, system_context(tenant)) as uow:
            job = uow.session.scalar(sa.select(RebuildJob))
            assert (job.status, job.reason, job.total) == ("running", "upgrade", len(events))
            assert uow.session.query(EventArchive).count() == len(events)
        claimed = handlers.stale_rebuilds(db)
        assert claimed == [(tenant, job.id)]
        assert handlers.stale_rebuilds(db) == []  # claimed once
        handlers.run_rebuild(db, tenant, job.id)
        query = ReportQuery(date_from="2026-11-10", date_to="2026-11-12")
        with UnitOfWork(db, system_context(tenant)) as uow:
            assert handlers.rebuild_status(uow)["status"] == "done"
            assert handlers.run_report(uow, "revenue", query)["totals"]["fee_total"] == Decimal("330.50")
            assert handlers.run_report(uow, "work_orders", query, path="rollups") == \
                handlers.run_report(uow, "work_orders", query, path="facts")
        db.dispose()
    finally:
        drop_databases(dbs)


def test_upgrading_to_0004_counts_the_customers_served_from_the_customers_rollup():
    """Migration 0004 fills the "served" rollup from the "customers" rows the old version kept: per
    company, grain and period, the customers with an order completed (m0 > 0)."""
    import datetime as dt

    import sqlalchemy as sa
    from reports.models import Rollup
    dbs = create_databases(["reports"])
    try:
        url = dbs.url("reports")
        upgrade("reports", url, revision="0003")
        a, b = uuid.uuid4(), uuid.uuid4()
        day, other_day, month = dt.date(2026, 3, 4), dt.date(2026, 3, 9), dt.date(2026, 3, 1)
        rows = [(a, "d", day, "c1", 2), (a, "d", day, "c2", 1), (a, "d", day, "c3", 0),  # c3: revenue only
                (a, "d", other_day, "c1", 1), (a, "m", month, "c1", 3), (a, "m", month, "c2", 1),
                (a, "m", month, "c3", 0), (b, "d", day, "c9", 1), (b, "m", month, "c9", 1)]
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.insert(Rollup.__table__), [
                {"tenant_id": t, "rollup": "customers", "grain": g, "period": p, "team": "", "type": "", "d1": c,
                 "d2": "", "m0": n, **{f"m{i}": 0 for i in range(1, 14)}} for t, g, p, c, n in rows])
        upgrade("reports", url)
        with engine.connect() as conn:
            served = conn.execute(sa.select(Rollup.tenant_id, Rollup.grain, Rollup.period, Rollup.m0)
                                  .where(Rollup.rollup == "served")).all()
        engine.dispose()
        assert sorted(served, key=str) == sorted([(a, "d", day, 2), (a, "d", other_day, 1), (a, "m", month, 2),
                                                  (b, "d", day, 1), (b, "m", month, 1)], key=str)
    finally:
        drop_databases(dbs)


def test_a_nul_character_in_a_payload_is_dropped_not_a_failed_batch(pg):
    """The batch writes travel as jsonb (rollups._upsert_postgres, projections.write_facts), which
    refuses U+0000: it is dropped from names and labels, and the batch commits."""
    tenant = uuid.uuid4()
    events = scenario.events(tenant=tenant)
    for env in events:
        if env["type"] == "ticket.visited":
            env["data"]["tags"] = [t + "\x00" for t in env["data"]["tags"]]
        if "customer_name" in env["data"]:
            env["data"]["customer_name"] = "上海\x00申能"
    with UnitOfWork(pg, system_context(tenant)) as uow:
        assert handlers.ingest(uow, [EventEnvelope.model_validate(e) for e in events]) == len(events)
    query = ReportQuery(date_from="2026-11-10", date_to="2026-11-12")
    with UnitOfWork(pg, system_context(tenant)) as uow:
        tags = handlers.run_report(uow, "satisfaction", query, path="rollups")["sections"]["by_tag"]
        assert tags == handlers.run_report(uow, "satisfaction", query, path="facts")["sections"]["by_tag"]
    assert {t["tag"] for t in tags} == {"准时", "等待久"}


def test_the_first_read_models_upsert_on_postgres_as_on_sqlite(pg, tmp_path):
    """technician_daily / work_order_summary: one upsert per batch (latest completion wins), the same
    figures on PostgreSQL, batched and with redeliveries, as on SQLite one by one."""
    from reports.schemas import DateRangeIn, TechnicianDailyIn
    lite, tenant = sqlite_database(tmp_path, Base.metadata, PLATFORM), uuid.uuid4()
    feed_one_by_one(lite, scenario.events())
    events = scenario.events(tenant=tenant)
    with UnitOfWork(pg, system_context(tenant)) as uow:
        handlers.ingest(uow, [EventEnvelope.model_validate(e) for e in events[::-1] + events[:4]])

    def first(db, tenant_id):
        with UnitOfWork(db, system_context(tenant_id)) as uow:
            return (handlers.technician_daily(uow, TechnicianDailyIn(date_from="2026-11-01", date_to="2026-11-30")),
                    handlers.work_order_summary(uow, DateRangeIn(date_from="2026-11-01", date_to="2026-11-30")))
    expected = first(lite, scenario.TENANT)
    assert expected[0]["total_completed"] > 0 and expected[1]["total_created"] > 0
    assert first(pg, tenant) == expected
