"""The rollups give the figures the rows give: every report read both ways (queries.use_rollups
forced), over the worked scenario and over a random year of work orders whose events arrive in any
order, in batches of any size, with redeliveries, reassignments, reopenings, re-settlements,
cancellations, backfilled orders, ratings and reversed part consumption. Unit tier (SQLite)."""
import datetime as dt
import random
import uuid
from decimal import Decimal

import pytest

import reports_scenario as s
from reports import handlers, rollups
from reports.models import PLATFORM, Base, Rollup
from reports.schemas import REPORT_NAMES, DashboardIn, ReportQuery
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.testing import sqlite_database
from svc_common.uow import UnitOfWork

ROLLED_UP = [r for r in REPORT_NAMES if r != "service_desk"]
# filters each report's rollups answer (others read the rows whatever the path)
SUPPORTED = {"work_orders": {"team_id", "type"}, "personnel": {"team_id"}, "revenue": {"team_id", "type"},
             "customers": set(), "spare_parts": set(), "service_items": set(), "business_plan": {"type"},
             "performance": {"team_id"}, "satisfaction": {"team_id"}}


def feed(db, envelopes, batch_size=1):
    by_tenant = {}
    for env in envelopes:
        by_tenant.setdefault(env["tenant_id"], []).append(EventEnvelope.model_validate(env))
    for tenant, events in by_tenant.items():
        for start in range(0, len(events), batch_size):
            with UnitOfWork(db, system_context(uuid.UUID(tenant))) as uow:
                handlers.consume_batch(uow, events[start:start + batch_size])


def both_ways(db, tenant, report, **query):
    q = ReportQuery(**query)
    out = []
    for path in ("facts", "rollups"):
        with UnitOfWork(db, system_context(tenant)) as uow:
            out.append(handlers.run_report(uow, report, q, paged=False, path=path))
    return out


def assert_same(db, tenant, reports=ROLLED_UP, **query):
    for report in reports:
        if any(query.get(f) is not None and f not in SUPPORTED[report]
               for f in ("team_id", "technician_id", "type", "customer_id")):
            continue
        rows, rolled = both_ways(db, tenant, report, **query)
        assert rolled == rows, (report, query)


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


QUERIES = [
    {"date_from": "2026-11-10", "date_to": "2026-11-12"},
    {"date_from": "2026-11-10", "date_to": "2026-11-12", "group_by": "week"},
    {"date_from": "2026-11-01", "date_to": "2026-11-30", "group_by": "month"},  # a whole month: month rows
    {"date_from": "2026-10-15", "date_to": "2026-12-10", "group_by": "month"},  # a month and two edges
    {"date_from": "2026-11-11", "date_to": "2026-11-11"},
    {"date_from": "2026-11-10", "date_to": "2026-11-12", "team_id": str(s.T1)},
    {"date_from": "2026-11-10", "date_to": "2026-11-12", "type": "maintenance"},
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_scenario_reads_the_same_from_the_rollups(db, query):
    feed(db, s.events())
    assert_same(db, s.TENANT, **query)


def test_rollups_are_used_by_default_and_the_rows_when_they_cannot_answer(db):
    from reports import queries
    feed(db, s.events())
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        def path(tz="Asia/Shanghai", **filters):
            window = queries.Window(ReportQuery(date_from="2026-11-10", date_to="2026-11-12", **filters), tz)
            return queries.use_rollups(uow, window, frozenset({"team_id"}))
        assert path() and path(team_id=str(s.T1))
        assert not path(technician_id=str(s.TECH_A)) and not path(customer_id=str(s.C1))
        assert not path(tz="UTC")  # rollups are kept in the company's zone: another one reads the rows
        assert uow.session.query(Rollup).count() > 0
        utc = ReportQuery(date_from="2026-11-10", date_to="2026-11-12", tz="UTC")
        assert handlers.run_report(uow, "work_orders", utc) == handlers.run_report(uow, "work_orders", utc, path="facts")


# -- a random year ------------------------------------------------------------------------------

TENANT = uuid.UUID(int=0xBEEF)
TEAMS = [uuid.UUID(int=0x700 + i) for i in range(3)]
TECHS = [uuid.UUID(int=0xA00 + i) for i in range(5)]
CUSTOMERS = [uuid.UUID(int=0xC00 + i) for i in range(6)]
ITEMS = [uuid.UUID(int=0x500 + i) for i in range(3)]
PARTS = [uuid.UUID(int=0xF00 + i) for i in range(3)]
PLANS = [uuid.UUID(int=0x900 + i) for i in range(2)]


def envelope(event_type, at, data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1, "occurred_at": at.isoformat(),
            "tenant_id": str(TENANT), "correlation_id": None, "actor": None, "data": s._json(data)}


def random_orders(rng: random.Random, n: int) -> list[dict]:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    events = [envelope("team.updated", start, {"team_id": t, "name": f"组{i}", "member_ids": []})
              for i, t in enumerate(TEAMS)]
    events += [envelope("user.created", start, {"user_id": t, "name": f"工{i}", "role": "technician"})
               for i, t in enumerate(TECHS)]
    events += [envelope("customer.created", start + dt.timedelta(days=rng.randrange(300)),
                        {"customer_id": c, "name": f"客户{i}"}) for i, c in enumerate(CUSTOMERS[:4])]
    for k in range(n):
        ticket, at = uuid.uuid4(), start + dt.timedelta(minutes=rng.randrange(365 * 24 * 60))
        type_ = rng.choice(("repair", "maintenance", None))
        base = {"ticket_id": ticket, "number": f"WO{k:05d}", "customer_id": rng.choice(CUSTOMERS),
                "team_id": rng.choice(TEAMS + [None])}
        if type_:
            base["type"] = type_
        tech = rng.choice(TECHS)
        backfilled = rng.random() < 0.1

        def add(event_type, minutes, **data):
            payload = {**base, **data}
            events.append(envelope(event_type, at + dt.timedelta(minutes=minutes), {
                k: v for k, v in payload.items() if v is not None}))
        add("ticket.created", 0, priority=rng.choice(("high", "normal", None)), backfilled=backfilled,
            plan_id=rng.choice(PLANS) if type_ == "maintenance" and rng.random() < 0.7 else None)
        if rng.random() < 0.1:
            add("ticket.cancelled", rng.randrange(10, 300))
            continue
        add("ticket.assigned", 5, technician_id=tech, assistant_ids=[rng.choice(TECHS)] if rng.random() < 0.3 else [])
        if rng.random() < 0.2:  # reassigned, to another team too
            tech = rng.choice(TECHS)
            add("ticket.assigned", 20, technician_id=tech, team_id=rng.choice(TEAMS))
        if rng.random() < 0.8:
            add("ticket.accepted", rng.randrange(10, 2000), technician_id=tech)
        if rng.random() < 0.8:
            add("ticket.checked_in", rng.randrange(2000, 4000), technician_id=tech)
        if rng.random() < 0.15:
            add("ticket.overdue", 4000, technician_id=tech, deadline="complete")
        if rng.random() < 0.15:
            continue  # still open
        done = rng.randrange(4000, 40000)
        items = [{"service_item_id": rng.choice(ITEMS), "quantity": str(rng.choice((1, 2, "0.5")))}
                 for _ in range(rng.randrange(3))]
        add("ticket.completed", done, technician_id=tech, completed_at=(at + dt.timedelta(minutes=done)).isoformat(),
            customer_name="客户X", summary="ok", service_items=items, backfilled=backfilled,
            on_site_seconds=rng.choice((None, 0, 1800)))
        if rng.random() < 0.5:
            move = uuid.uuid4()
            moved = {"move_id": move, "part_id": rng.choice(PARTS), "quantity": "2", "kind": "consumption",
                     "unit_cost": "10.50", "technician_id": tech, "customer_id": base["customer_id"],
                     "warehouse_id": rng.choice((None, TEAMS[0])), "ticket_id": ticket}
            events.append(envelope("stock.moved", at + dt.timedelta(minutes=done), moved))
            if rng.random() < 0.3:
                events.append(envelope("stock.moved", at + dt.timedelta(minutes=done + rng.randrange(2000)),
                                       {**moved, "move_id": uuid.uuid4(), "quantity": "1",
                                        "kind": "consumption_reversal", "value": "10.50"}))
        if rng.random() < 0.15:  # reopened and completed again later
            add("ticket.reopened", done + 60, technician_id=tech)
            done += rng.randrange(100, 5000)
            add("ticket.completed", done, technician_id=tech, completed_at=(at + dt.timedelta(minutes=done)).isoformat(),
                customer_name="客户X", summary="again")
        for settlement in range(rng.choice((0, 1, 1, 2))):
            fee = Decimal(rng.randrange(0, 50000)) / 100
            lines = [{"kind": "service_item", "ref_id": rng.choice(ITEMS + [None]), "description": "x",
                      "quantity": rng.choice(("1", None)), "unit_price": str(fee), "amount": str(fee)}]
            settled = done + 1440 * (settlement + 1)
            add("ticket.settled", settled, technician_id=tech, settled_at=(at + dt.timedelta(minutes=settled)).isoformat(),
                currency="CNY", fee_lines=lines, cost_lines=[{"kind": "labour", "amount": "12.34"}],
                fee_total=str(fee), cost_total="12.34", gross_profit=str(fee - Decimal("12.34")))
        if rng.random() < 0.6:
            visited = done + 3000
            add("ticket.visited", visited, technician_id=tech, visited_at=(at + dt.timedelta(minutes=visited)).isoformat(),
                satisfaction=rng.choice((None, 3, 4, 5)),
                scores={d: rng.randint(1, 5) for d in rng.sample(("质量", "效率", "态度"), rng.randrange(3))},
                tags=rng.sample(("准时", "专业", "礼貌"), rng.randrange(3)), by_customer=rng.random() < 0.5)
        if rng.random() < 0.7:
            add("ticket.closed", done + 5000, technician_id=tech)
    return events


RANDOM_QUERIES = [
    {"date_from": "2026-01-01", "date_to": "2026-12-31", "group_by": "month"},
    {"date_from": "2026-03-01", "date_to": "2026-03-31"},
    {"date_from": "2026-02-10", "date_to": "2026-06-20", "group_by": "week"},
    {"date_from": "2026-02-10", "date_to": "2026-06-20", "group_by": "month"},
    {"date_from": "2026-01-01", "date_to": "2026-12-31", "group_by": "month", "team_id": str(TEAMS[1])},
    {"date_from": "2026-01-01", "date_to": "2026-12-31", "group_by": "month", "type": "maintenance"},
    {"date_from": "2026-01-01", "date_to": "2026-12-31", "group_by": "month", "team_id": str(TEAMS[0]),
     "type": "repair"},
    # top lists cut short, with ties at the cut (a week: one or two orders per customer)
    {"date_from": "2026-03-02", "date_to": "2026-03-15", "top": 2},
    {"date_from": "2026-01-01", "date_to": "2026-12-31", "group_by": "month", "top": 3},
]


@pytest.fixture(scope="module")
def random_year(tmp_path_factory):
    rng = random.Random(20261)
    events = random_orders(rng, 400)
    rng.shuffle(events)  # one queue per event type: any order
    events += rng.sample(events, 60)  # redeliveries
    db = sqlite_database(tmp_path_factory.mktemp("year"), Base.metadata, PLATFORM)
    for start in range(0, len(events), 97):  # batches of varied size, as the consumer makes them
        feed(db, events[start:start + 97], batch_size=rng.choice((1, 7, 50)))
    return db


@pytest.mark.parametrize("query", RANDOM_QUERIES)
def test_a_random_year_reads_the_same_from_the_rollups(random_year, query):
    assert_same(random_year, TENANT, **query)


@pytest.mark.parametrize("period", [{"date_from": "2026-06-01", "date_to": "2026-06-30"},
                                    {"date_from": "2026-03-04", "date_to": "2026-05-20", "group_by": "week"},
                                    {"date_from": "2026-03-04", "date_to": "2026-04-20", "group_by": "month"},
                                    {"date_from": "2026-01-01", "date_to": "2026-12-31", "group_by": "month"}])
def test_a_page_of_personnel_is_the_slice_of_all_its_rows(random_year, period):
    # the rollups build only the page's rows (rollup_queries.LazyRows), reading the ratings of the page's
    # periods only: pages of 7 give the same rows as the whole report and as the row-by-row report's pages
    paged = {}
    for path in ("facts", "rollups"):
        with UnitOfWork(random_year, system_context(TENANT)) as uow:
            whole = handlers.run_report(uow, "personnel", ReportQuery(**period), paged=False, path=path)
            pages = [handlers.run_report(uow, "personnel", ReportQuery(**period, offset=start, limit=7), path=path)
                     for start in range(0, len(whole["rows"]), 7)]
        assert len(pages) > 1, path
        assert [row for page in pages for row in page["rows"]] == list(whole["rows"])
        assert all(page["total"] == len(whole["rows"]) for page in pages)
        assert all((page["totals"], page["sections"], page["columns"]) == (
            whole["totals"], whole["sections"], whole["columns"]) for page in pages)
        paged[path] = [row for page in pages for row in page["rows"]]
    assert paged["rollups"] == paged["facts"]
    assert any(row["scores"] or row["tags"] for row in paged["rollups"])  # ratings were read


def test_the_dashboard_reads_the_same_from_the_rollups(random_year):
    for now in (dt.datetime(2026, 3, 15, 6, tzinfo=dt.timezone.utc), dt.datetime(2026, 11, 30, 20, tzinfo=dt.timezone.utc)):  # Dec 1st local
        for team in (None, TEAMS[2]):
            boards = []
            for path in ("facts", "rollups"):
                with UnitOfWork(random_year, system_context(TENANT)) as uow:
                    boards.append(handlers.dashboard(uow, DashboardIn(team_id=team), now=now, path=path))
            assert boards[0] == boards[1]
            assert team or now.month == 11 or boards[0]["this_month"]["created"] > 0


def test_a_rebuild_gives_the_same_rollups(random_year):
    def table():
        with UnitOfWork(random_year, system_context(TENANT)) as uow:
            return sorted((r.rollup, r.grain, r.period, r.team, r.type, r.d1, r.d2,
                           tuple(getattr(r, f"m{i}") for i in range(14))) for r in uow.session.query(Rollup)
                          if any(getattr(r, f"m{i}") for i in range(14)))
    live = table()
    assert handlers.rebuild_now(random_year, TENANT)["status"] == "done"
    assert table() == live
    assert_same(random_year, TENANT, **RANDOM_QUERIES[0])


def test_the_served_counts_are_the_customers_with_a_completion_per_day_and_month(random_year):
    # "served" is kept from the crossings of zero of the customers rows (rollups.Deltas._served), not
    # summed from contributions: each day's and month's count is its customers rows with completed > 0
    with UnitOfWork(random_year, system_context(TENANT)) as uow:
        rows = uow.session.query(Rollup).filter(Rollup.rollup.in_(("customers", "served"))).all()
    expected, served = {}, {}
    for r in rows:
        if r.rollup == "customers" and r.m0 > 0:
            expected[(r.grain, r.period)] = expected.get((r.grain, r.period), 0) + 1
        elif r.rollup == "served" and r.m0:
            served[(r.grain, r.period)] = r.m0
    assert served == expected
    assert {grain for grain, _ in served} == {"d", "m"}
    # reopened orders completed again on another day left rows with no completion (and no revenue):
    # customers went back to 0 and were taken off that day's count
    assert any(r.rollup == "customers" and r.grain == "d" and r.m0 == 0 and r.m2 == 0 for r in rows)


def test_p90_from_the_buckets_is_close_to_the_exact_one(random_year, monkeypatch):
    query = ReportQuery(date_from="2026-01-01", date_to="2026-12-31", group_by="month")
    with UnitOfWork(random_year, system_context(TENANT)) as uow:
        exact = handlers.run_report(uow, "work_orders", query, paged=False, path="rollups")
    monkeypatch.setattr(rollups, "EXACT_TIMING_LIMIT", 0)
    with UnitOfWork(random_year, system_context(TENANT)) as uow:
        estimated = handlers.run_report(uow, "work_orders", query, paged=False, path="rollups")
    compared = 0
    for a, b in zip(exact["rows"] + [exact["totals"]], estimated["rows"] + [estimated["totals"]]):
        for name in ("response", "arrival", "completion"):
            key = f"p90_{name}_minutes"
            assert (a[key] is None) == (b[key] is None)
            if a[key]:
                assert abs(b[key] - a[key]) <= a[key] * (rollups.RATIO - 1) + 0.1, (key, a[key], b[key])
                compared += 1
        for key in ("avg_response_minutes", "sla_compliance", "created"):  # exact either way
            assert a[key] == b[key]
    assert compared > 20


def test_the_bucket_p90s_are_the_companys_own(random_year, monkeypatch):
    monkeypatch.setattr(rollups, "EXACT_TIMING_LIMIT", -1)  # the histograms even for a company with no orders
    query = ReportQuery(date_from="2026-01-01", date_to="2026-12-31", group_by="month")
    with UnitOfWork(random_year, system_context(TENANT)) as uow:
        own = handlers.run_report(uow, "work_orders", query, paged=False, path="rollups")
    with UnitOfWork(random_year, system_context(uuid.uuid4())) as uow:
        stranger = handlers.run_report(uow, "work_orders", query, paged=False, path="rollups")
    assert own["totals"]["p90_completion_minutes"] is not None
    assert [r for r in stranger["rows"] + [stranger["totals"]]
            if any(r[f"p90_{name}_minutes"] is not None for name in ("response", "arrival", "completion"))] == []


def test_backfilled_orders_count_as_done_but_not_in_times_or_sla(db):
    tenant = uuid.uuid4()
    events = []
    for n, backfilled in enumerate((False, True)):
        ticket = uuid.uuid4()
        base = {"ticket_id": ticket, "number": f"WO{n}", "type": "repair", "customer_id": s.C1, "team_id": s.T1}
        created = dt.datetime(2026, 11, 10, 1, tzinfo=dt.timezone.utc) - dt.timedelta(days=30 * backfilled)
        events += [
            s.envelope("ticket.created", created.isoformat()[:19], {**base, "backfilled": backfilled}, tenant),
            s.envelope("ticket.accepted", (created + dt.timedelta(minutes=30)).isoformat()[:19],
                       {**base, "technician_id": s.TECH_A}, tenant),
            s.envelope("ticket.completed", "2026-11-10T05:00:00", {
                **base, "technician_id": s.TECH_A, "completed_at": "2026-11-10T05:00:00+00:00", "customer_name": "x",
                "summary": "ok", "backfilled": backfilled}, tenant)]
    feed(db, events, batch_size=3)
    for path in ("facts", "rollups"):
        with UnitOfWork(db, system_context(tenant)) as uow:
            query = ReportQuery(date_from="2026-11-10", date_to="2026-11-10")
            orders = handlers.run_report(uow, "work_orders", query, path=path)["totals"]
            people = handlers.run_report(uow, "personnel", query, path=path)["totals"]
        assert orders["completed"] == 2 and people["completed"] == 2  # both are work done
        assert (orders["avg_response_minutes"], orders["p90_completion_minutes"]) == (30.0, 240.0)  # the live one only
        assert orders["sla_compliance"] == 1.0 and people["on_time_rate"] == 1.0


def test_ratings_per_dimension_and_tags(db):
    tenant = uuid.uuid4()
    events = []
    for n, (tech, team, scores, tags, by_customer) in enumerate([
            (s.TECH_A, s.T1, {"质量": 5, "态度": 4}, ["准时", "专业"], True),
            (s.TECH_A, s.T1, {"质量": 3}, ["准时"], False),
            (s.TECH_B, s.T2, {}, ["礼貌"], True)]):
        base = {"ticket_id": uuid.uuid4(), "number": f"WO{n}", "type": "repair", "customer_id": s.C1, "team_id": team,
                "technician_id": tech}
        events.append(s.envelope("ticket.visited", "2026-11-11T02:00:00", {
            **base, "visited_at": "2026-11-11T02:00:00+00:00", "satisfaction": 4 + (n == 0), "scores": scores,
            "tags": tags, "by_customer": by_customer}, tenant))
    feed(db, events, batch_size=2)
    query = ReportQuery(date_from="2026-11-10", date_to="2026-11-12")
    for path in ("facts", "rollups"):
        with UnitOfWork(db, system_context(tenant)) as uow:
            people = handlers.run_report(uow, "personnel", query, path=path)
            report = handlers.run_report(uow, "satisfaction", query, path=path)
        a = {t["technician_id"]: t for t in people["sections"]["technicians"]}[str(s.TECH_A)]
        assert (a["scores"], a["tags"], a["satisfaction"]) == ({"质量": 4.0, "态度": 4.0}, {"准时": 2, "专业": 1}, 4.5)
        assert report["totals"]["rated_by_customer"] == 2 and report["totals"]["tags"] == {"准时": 2, "专业": 1, "礼貌": 1}
        teams = {r["team_name"] or r["team_id"]: r for r in report["rows"]}
        assert teams[str(s.T1)]["scores"] == {"质量": 4.0, "态度": 4.0} and teams[str(s.T2)]["tags"] == {"礼貌": 1}
        assert report["sections"]["by_dimension"] == [{"dimension": "态度", "average": 4.0, "ratings": 1},
                                                      {"dimension": "质量", "average": 4.0, "ratings": 2}]


# -- rebuild jobs -------------------------------------------------------------------------------

def test_a_rebuild_holds_the_company_and_catches_up_on_what_arrived_meanwhile(db):
    from reports.models import TenantState
    events = s.events()
    feed(db, events[:15])
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        job = handlers.start_rebuild(uow)
    feed(db, events[15:])  # the live consumers keep going: archived, not projected (the job will)
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        assert uow.session.query(TenantState).one().rebuild_job_id == job.id
        held = handlers.run_report(uow, "revenue", ReportQuery(date_from="2026-11-10", date_to="2026-11-12"))
    assert held["totals"]["fee_total"] == Decimal("0.00")  # the settlements are after the first 15 events
    handlers.run_rebuild(db, s.TENANT, job.id, page_size=7)
    assert_same(db, s.TENANT, **QUERIES[0])
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        status = handlers.rebuild_status(uow, job.id)
        assert uow.session.query(TenantState).one().rebuild_job_id is None
        revenue = handlers.run_report(uow, "revenue", ReportQuery(date_from="2026-11-10", date_to="2026-11-12"))
    assert (status["status"], status["total"], status["replayed"]) == ("done", len(events), len(events))
    assert revenue["totals"]["fee_total"] == Decimal("330.50")


def test_a_failed_rebuild_says_why_keeps_the_company_held_and_can_be_started_again(db):
    import sqlalchemy as sa
    from reports.models import EventArchive
    from svc_common.errors import Conflict
    feed(db, s.events())
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        first = handlers.start_rebuild(uow)
        with pytest.raises(Conflict):
            handlers.start_rebuild(uow)  # one at a time
        bad = uow.session.scalars(sa.select(EventArchive).order_by(EventArchive.id)).first()
        bad.envelope = {**bad.envelope, "tenant_id": "not a uuid"}
    handlers.run_rebuild(db, s.TENANT, first.id)
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        failed = handlers.rebuild_status(uow, first.id)
        assert handlers.tenant_state(uow).rebuild_job_id == first.id  # still held: its figures are partial
        bad = uow.session.scalars(sa.select(EventArchive).order_by(EventArchive.id)).first()
        bad.envelope = {**bad.envelope, "tenant_id": str(s.TENANT)}  # the archive is repaired
    assert failed["status"] == "failed" and "tenant_id" in failed["error"]
    assert handlers.rebuild_now(db, s.TENANT)["status"] == "done"
    assert_same(db, s.TENANT, **QUERIES[0])


def test_a_stale_job_is_taken_over_and_its_old_runner_stops(db):
    from reports.models import RebuildJob
    feed(db, s.events())
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        job = handlers.start_rebuild(uow)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=handlers.REBUILD_STALE_SECONDS + 1)
    assert handlers.stale_rebuilds(db, now=later) == [(s.TENANT, job.id)]  # its runner stopped beating
    with pytest.raises(handlers.RebuildSuperseded):  # the old runner (attempt 1) may not write any more
        handlers._page(db, s.TENANT, job.id, 1, lambda uow, job: None)
    handlers.run_rebuild(db, s.TENANT, job.id)  # the new runner, attempt 2
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        assert (uow.session.get(RebuildJob, job.id).status, uow.session.get(RebuildJob, job.id).attempts) == ("done", 2)
    assert_same(db, s.TENANT, **QUERIES[0])


def test_a_new_time_zone_rebuilds_the_rollups_in_it(db):
    from reports.models import TenantState
    from reports.schemas import ReportSettingsIn
    feed(db, s.events())
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        settings, job = handlers.update_report_settings(uow, ReportSettingsIn(time_zone="America/New_York"))
    assert job is not None and settings["time_zone"] == "America/New_York"
    handlers.run_rebuild(db, s.TENANT, job.id)
    with UnitOfWork(db, system_context(s.TENANT)) as uow:
        assert uow.session.query(TenantState).one().rollup_zone == "America/New_York"
    assert_same(db, s.TENANT, date_from="2026-11-09", date_to="2026-11-12", tz="America/New_York")
    with UnitOfWork(db, system_context(s.TENANT)) as uow:  # unchanged zone: no rebuild
        assert handlers.update_report_settings(uow, ReportSettingsIn(time_zone="America/New_York"))[1] is None
