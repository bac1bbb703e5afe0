"""Every report of 运营分析 over a worked set of events (reports_scenario), unit tier: SQLite,
events delivered through the service's own handlers, no broker."""
import base64
import csv
import datetime as dt
import io
import random
import uuid
from decimal import Decimal

import pytest
from openpyxl import load_workbook

import reports_scenario as s
from reports import handlers
from reports.models import PLATFORM, Base, PartConsumption, WorkOrderFact
from reports.service import InlineRebuilds, ReportsService
from svc_common.errors import Forbidden, ValidationFailed
from svc_common.testing import context, service_worker, sqlite_database, uow

RANGE = {"date_from": "2026-11-10", "date_to": "2026-11-12"}


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def deliver(db, *envelopes):
    """Each event as its own delivery (a batch of one), through the service's batch handler."""
    for env in envelopes:
        method = "on_ticket_events" if env["type"].startswith("ticket.") else "on_" + env["type"].replace(".", "_")
        getattr(service_worker(ReportsService, db, context(), method), method)([env])


def reports(db, role="manager", tenant=s.TENANT, actor=None):
    return service_worker(ReportsService, db, context(tenant, role=role, actor_id=actor), rebuilds=InlineRebuilds())


@pytest.fixture
def fed(db):
    deliver(db, *s.events())
    return db


def run(db, report, **query):
    return reports(db).run_report(report, {**RANGE, **query})


def by(rows, key):
    return {r[key]: r for r in rows}


# -- projections ----------------------------------------------------------------------------

def test_work_order_fact_folds_every_event(fed):
    with uow(fed, context(s.TENANT)) as u:
        b = u.session.query(WorkOrderFact).filter_by(ticket_id=s.B).one()
        a = u.session.query(WorkOrderFact).filter_by(ticket_id=s.A).one()
    assert (b.status, b.type, b.plan_id, b.team_id, b.technician_id) == ("settled", "maintenance", s.PLAN, s.T1,
                                                                          s.TECH_B)
    assert b.reopen_count == 1 and b.overdue_deadlines == ["complete"] and b.satisfaction == 3
    assert b.completed_at == dt.datetime(2026, 11, 11, 5, tzinfo=dt.timezone.utc)  # the latest completion
    assert b.assistant_ids == [str(s.TECH_A)]
    assert (b.fee_total, b.cost_total, b.gross_profit) == (Decimal("200.00"), Decimal("150.10"), Decimal("49.90"))
    assert (a.status, a.priority, a.service_request_id, a.on_site_seconds) == ("closed", "high", s.R1, 3600)


def test_stock_moves_other_than_consumption_are_ignored_and_value_is_derived(fed):
    with uow(fed, context(s.TENANT)) as u:
        moves = {m.part_id: m for m in u.session.query(PartConsumption)}
    assert set(moves) == {s.P1, s.P2}
    assert moves[s.P2].value == Decimal("31.00")  # no value on the event: unit_cost × quantity
    assert moves[s.P1].warehouse_id == s.WH1 and moves[s.P1].ticket_id == s.A


def test_events_in_any_order_give_the_same_figures(db, tmp_path):
    deliver(db, *s.events())
    shuffled = s.events()
    random.Random(7).shuffle(shuffled)
    other = sqlite_database(tmp_path / "other", Base.metadata, PLATFORM)
    deliver(other, *shuffled)
    for report in ("work_orders", "personnel", "revenue", "business_plan", "performance", "service_items"):
        assert run(db, report) == run(other, report), report


def test_redelivered_events_change_nothing(db):
    envelopes = s.events()
    deliver(db, *envelopes)
    before = {r: run(db, r) for r in ("work_orders", "personnel", "revenue", "spare_parts", "service_desk")}
    deliver(db, *envelopes)  # nameko redelivers the same messages
    assert {r: run(db, r) for r in before} == before


# -- reports --------------------------------------------------------------------------------

def test_work_orders_report(fed):
    report = run(fed, "work_orders")
    assert (report["tz"], report["group_by"], report["total"]) == ("Asia/Shanghai", "day", 3)
    days = by(report["rows"], "period")
    assert [(d, days[d]["created"], days[d]["completed"], days[d]["closed"], days[d]["cancelled"], days[d]["overdue"])
            for d in sorted(days)] == [("2026-11-10", 1, 1, 0, 0, 0), ("2026-11-11", 2, 1, 1, 1, 1),
                                       ("2026-11-12", 1, 0, 0, 0, 0)]
    first = days["2026-11-10"]
    assert (first["avg_response_minutes"], first["avg_arrival_minutes"], first["avg_completion_minutes"]) == (
        30.0, 60.0, 120.0)
    assert first["sla_compliance"] == 1.0 and days["2026-11-11"]["sla_compliance"] == 0.0
    totals = report["totals"]
    assert (totals["created"], totals["completed"], totals["cancelled"]) == (4, 2, 1)
    assert (totals["avg_response_minutes"], totals["p90_response_minutes"]) == (45.0, 60.0)
    assert (totals["avg_completion_minutes"], totals["p90_completion_minutes"]) == (435.0, 750.0)
    assert totals["sla_compliance"] == 0.5
    assert by(report["sections"]["by_type"], "type") == {
        "maintenance": {"type": "maintenance", "created": 2, "completed": 1},
        "repair": {"type": "repair", "created": 2, "completed": 1}}
    assert by(report["sections"]["by_status"], "status")["cancelled"]["created"] == 1
    assert by(report["sections"]["by_priority"], "priority")["high"] == {"priority": "high", "created": 1,
                                                                         "completed": 1}


def test_grouping_by_week_and_month_and_paging(fed):
    month = run(fed, "work_orders", group_by="month", date_from="2026-10-01", date_to="2026-11-30")
    assert [(r["period"], r["created"]) for r in month["rows"]] == [("2026-10-01", 0), ("2026-11-01", 4)]
    week = run(fed, "work_orders", group_by="week")
    assert [(r["period"], r["created"]) for r in week["rows"]] == [("2026-11-09", 4)]  # Monday of the week
    page = run(fed, "work_orders", offset=1, limit=1)
    assert (page["total"], page["offset"], page["limit"], [r["period"] for r in page["rows"]]) == (
        3, 1, 1, ["2026-11-11"])
    utc = run(fed, "work_orders", tz="UTC")  # B was created 16:30 UTC on the 10th
    assert by(utc["rows"], "period")["2026-11-10"]["created"] == 2


def test_filters_by_team_technician_type_and_customer(fed):
    assert run(fed, "work_orders", team_id=str(s.T2))["totals"]["created"] == 2
    assert run(fed, "work_orders", technician_id=str(s.TECH_B))["totals"]["completed"] == 1
    assert run(fed, "work_orders", type="repair")["totals"]["created"] == 2
    assert run(fed, "work_orders", customer_id=str(s.C1))["totals"]["created"] == 2
    assert run(fed, "revenue", team_id=str(s.T2))["totals"]["fee_total"] == "0.00"
    assert run(fed, "spare_parts", type="maintenance")["totals"]["value"] == "31.00"


def test_personnel_report(fed):
    report = run(fed, "personnel")
    techs = by(report["sections"]["technicians"], "technician_name")
    a, b = techs["张工"], techs["李工"]
    assert (a["completed"], a["assists"], a["on_site_hours"], a["revenue"], a["satisfaction"],
            a["first_time_fix_rate"]) == (1, 1, 1.0, "130.50", 5.0, 1.0)
    assert (b["completed"], b["on_site_hours"], b["revenue"], b["satisfaction"], b["first_time_fix_rate"],
            b["on_time_rate"]) == (1, 10.5, "200.00", 3.0, 0.0, 0.0)
    assert report["totals"]["revenue"] == "330.50" and report["totals"]["satisfaction"] == 4.0
    rows = {(r["period"], r["technician_name"]): r for r in report["rows"]}
    assert rows[("2026-11-11", "张工")]["revenue"] == "130.50" and rows[("2026-11-10", "张工")]["completed"] == 1


def test_revenue_report_is_decimal_exact(fed):
    report = run(fed, "revenue")
    assert [(r["period"], r["team_name"], r["fee_total"], r["cost_total"], r["gross_profit"]) for r in report["rows"]] \
        == [("2026-11-11", "一组", "130.50", "40.25", "90.25"), ("2026-11-12", "一组", "200.00", "150.10", "49.90")]
    totals = report["totals"]
    assert (totals["fee_total"], totals["cost_total"], totals["gross_profit"]) == ("330.50", "190.35", "140.15")
    assert Decimal(totals["gross_margin"]) == (Decimal("140.15") / Decimal("330.50")).quantize(Decimal("0.0001"))
    assert {(k["side"], k["kind"]): k["amount"] for k in report["sections"]["by_kind"]} == {
        ("cost", "labour"): "139.35", ("cost", "part"): "51.00", ("fee", "other"): "200.00",
        ("fee", "part"): "30.50", ("fee", "service_item"): "100.00"}


def test_customers_report(fed):
    report = run(fed, "customers")
    assert [(r["period"], r["new"], r["served"]) for r in report["rows"]] == [
        ("2026-11-10", 1, 1), ("2026-11-11", 1, 1), ("2026-11-12", 0, 0)]
    assert report["totals"] == {"total": 3, "new": 2, "served": 2}
    assert [(c["customer_name"], c["revenue"]) for c in report["sections"]["top_by_revenue"]] == [
        ("浦东物业", "200.00"), ("上海申能", "130.50")]
    assert {c["customer_name"] for c in report["sections"]["top_by_orders"]} == {"浦东物业", "上海申能"}


def test_service_desk_report(fed):
    report = run(fed, "service_desk")
    assert [(r["period"], r["channel"], r["received"], r["converted"], r["closed_without_order"])
            for r in report["rows"]] == [("2026-11-10", "phone", 1, 1, 0), ("2026-11-10", "portal", 1, 0, 1),
                                         ("2026-11-11", "phone", 1, 0, 0)]
    assert report["totals"] == {"received": 3, "converted": 1, "closed_without_order": 1, "conversion_rate": 0.3333}
    assert by(report["sections"]["by_channel"], "channel")["phone"]["received"] == 2


def test_spare_parts_report(fed):
    report = run(fed, "spare_parts")
    assert [(r["period"], r["part_id"], r["quantity"], r["value"]) for r in report["rows"]] == [
        ("2026-11-10", str(s.P1), "1", "20.00"), ("2026-11-11", str(s.P2), "2", "31.00")]
    assert report["totals"] == {"quantity": "3", "value": "51.00", "entries": 2}
    assert {r["name"]: r["value"] for r in report["sections"]["by_technician"]} == {"李工": "31.00", "张工": "20.00"}
    assert by(report["sections"]["by_warehouse"], "warehouse_id")[str(s.WH1)]["value"] == "20.00"
    assert by(report["sections"]["by_customer"], "customer_id")[str(s.C2)]["quantity"] == "2"


def test_a_reversed_consumption_nets_out(fed):
    deliver(fed, s.envelope("stock.moved", "2026-11-12T03:00:00", {
        "move_id": uuid.UUID(int=0x303), "part_id": s.P2, "quantity": "1", "kind": "consumption_reversal",
        "unit_cost": "15.50", "value": "15.50", "technician_id": s.TECH_B, "customer_id": s.C2, "ticket_id": s.B}))
    report = run(fed, "spare_parts")
    assert report["totals"] == {"quantity": "2", "value": "35.50", "entries": 1}
    assert by(report["sections"]["by_technician"], "name")["李工"]["value"] == "15.50"


def test_service_items_report(fed):
    report = run(fed, "service_items")
    assert [(r["period"], r["quantity"], r["orders"], r["billed_quantity"], r["revenue"]) for r in report["rows"]] \
        == [("2026-11-10", "2", 1, "0", "0.00"), ("2026-11-11", "0", 0, "2", "100.00")]
    assert report["sections"]["by_item"] == [{"service_item_id": str(s.S1), "quantity": "2", "orders": 1,
                                              "billed_quantity": "2", "revenue": "100.00"}]


def test_business_plan_report(fed):
    report = run(fed, "business_plan")
    assert [(r["period"], r["type"], r["planned"], r["done"], r["open"]) for r in report["rows"]] == [
        ("2026-11-11", "maintenance", 1, 1, 0), ("2026-11-12", "maintenance", 1, 0, 1)]
    assert report["totals"] == {"planned": 2, "done": 1, "cancelled": 0, "open": 1, "done_rate": 0.5}
    assert report["sections"]["by_plan"][0]["plan_id"] == str(s.PLAN)


def test_performance_scores_follow_the_tenants_weights(fed):
    report = run(fed, "performance")
    assert [(r["rank"], r["name"], r["score"]) for r in report["rows"]] == [(1, "张工", 100.0), (2, "李工", 58.0)]
    assert [(t["name"], t["score"]) for t in report["sections"]["teams"]] == [("一组", 79.0)]
    admin = reports(fed, role="admin")
    admin.update_report_settings({"time_zone": "Asia/Shanghai", "performance_weights": {"on_time_rate": 1}})
    again = run(fed, "performance")
    assert [(r["name"], r["score"]) for r in again["rows"]] == [("张工", 100.0), ("李工", 0.0)]
    assert again["totals"]["weights"] == {"on_time_rate": 1.0}


def test_tenant_time_zone_setting_groups_days(fed):
    admin = reports(fed, role="admin")
    assert admin.get_report_settings()["time_zone"] == "Asia/Shanghai"
    admin.update_report_settings({"time_zone": "UTC"})
    report = run(fed, "work_orders")
    assert report["tz"] == "UTC" and by(report["rows"], "period")["2026-11-10"]["created"] == 2
    with pytest.raises(Forbidden):
        reports(fed, role="dispatcher").update_report_settings({"time_zone": "UTC"})


@pytest.mark.parametrize("settings, field", [
    ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ({"performance_weights": {"speed": 1}}, "performance_weights"),
    ({"performance_weights": {"completed": -1}}, "performance_weights"),
    ({"performance_weights": {"completed": 0}}, "performance_weights"),
])
def test_bad_settings_name_the_field(db, settings, field):
    with pytest.raises(ValidationFailed) as err:
        reports(db, role="admin").update_report_settings(settings)
    assert [e["field"] for e in err.value.errors] == [field]


@pytest.mark.parametrize("report, query, field", [
    ("nope", RANGE, "report"),
    ("work_orders", {**RANGE, "group_by": "year"}, "group_by"),
    ("work_orders", {**RANGE, "limit": 0}, "limit"),
    ("work_orders", {**RANGE, "team_id": "x"}, "team_id"),
    ("work_orders", {"date_from": "2026-11-10", "date_to": "2026-11-01"}, "date_to"),
])
def test_bad_queries_name_the_field(db, report, query, field):
    with pytest.raises(ValidationFailed) as err:
        reports(db).run_report(report, query)
    assert [e["field"] for e in err.value.errors] == [field]


def test_a_technician_sees_only_their_own_figures(fed):
    tech_b = reports(fed, role="technician", actor=s.TECH_B)
    mine = tech_b.run_report("personnel", {**RANGE, "technician_id": str(s.TECH_A)})  # asks for someone else's
    # B's own order only; A appears solely as the assistant on it
    assert {t["technician_name"]: (t["completed"], t["assists"]) for t in mine["sections"]["technicians"]} == {
        "李工": (1, 0), "张工": (0, 1)}
    assert tech_b.run_report("revenue", RANGE)["totals"]["fee_total"] == "200.00"
    assert tech_b.dashboard({})["open_by_status"]["pending_dispatch"] == 0  # D is nobody's yet


def test_other_tenant_sees_nothing(fed):
    stranger = reports(fed, tenant=uuid.uuid4())
    for report in ("work_orders", "personnel", "revenue", "customers", "service_desk", "spare_parts"):
        result = stranger.run_report(report, RANGE)
        assert all(not v or v in ("0.00", "0") for r in result["rows"] for k, v in r.items() if k != "period"), report
    assert stranger.dashboard({"tz": "Asia/Shanghai"})["open_by_status"]["pending_dispatch"] == 0


def test_dashboard_today_and_this_month(fed):
    with uow(fed, context(s.TENANT)) as u:
        from reports.schemas import DashboardIn
        board = handlers.dashboard(u, DashboardIn(), now=dt.datetime(2026, 11, 12, 6, tzinfo=dt.timezone.utc))
    assert board["today"] == {"created": 1, "completed": 0, "settled": 1, "revenue": Decimal("200.00"),
                              "gross_profit": Decimal("49.90"), "active_technicians": 0}
    assert board["this_month"] == {"created": 4, "completed": 2, "settled": 2, "revenue": Decimal("330.50"),
                                   "gross_profit": Decimal("140.15"), "active_technicians": 2}
    assert board["open_by_status"]["pending_dispatch"] == 1 and board["pending_service_requests"] == 1
    assert reports(fed).dashboard({})["tz"] == "Asia/Shanghai"


# -- exports and charts ---------------------------------------------------------------------

def test_export_xlsx_has_exact_numbers_and_every_section(fed):
    out = reports(fed).export_report("revenue", RANGE, "xlsx")
    assert out["filename"] == "revenue_2026-11-10_2026-11-12.xlsx"
    book = load_workbook(io.BytesIO(base64.b64decode(out["content_base64"])))
    assert book.sheetnames == ["营收报表", "合计", "by_kind"]
    rows = list(book["营收报表"].values)
    assert rows[0][:4] == ("期间", "团队ID", "团队", "工单数")
    assert Decimal(str(rows[1][rows[0].index("收费合计")])) == Decimal("130.50")
    assert len(rows) == 3


def test_export_csv_in_english_has_all_rows_beyond_the_page(fed):
    worker = service_worker(ReportsService, fed, context(s.TENANT, role="manager"))
    worker.platform.worker_ctx.data["locale"] = "en"
    out = worker.export_report("work_orders", {**RANGE, "limit": 1}, "csv")
    text = base64.b64decode(out["content_base64"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["Period", "Created", "Completed"]
    assert [r[0] for r in rows[1:4]] == ["2026-11-10", "2026-11-11", "2026-11-12"]
    with pytest.raises(ValidationFailed):
        worker.export_report("work_orders", RANGE, "pdf")


@pytest.mark.parametrize("report", ["work_orders", "revenue", "performance"])
def test_charts_are_svg(fed, report):
    chart = reports(fed).report_chart(report, RANGE)
    assert chart["svg"].startswith("<svg") and chart["filename"].endswith(".svg")
    assert ("2026-11-11" in chart["svg"]) or report == "performance"


# -- replay ---------------------------------------------------------------------------------

ALL_REPORTS = ("work_orders", "personnel", "revenue", "customers", "service_desk", "spare_parts", "service_items",
               "business_plan", "performance")


def test_rebuild_from_the_archive_gives_the_live_figures(fed):
    live = {r: run(fed, r) for r in ALL_REPORTS}
    deliver(fed, *s.events(tenant=uuid.UUID(int=5)))  # another tenant, untouched by the rebuild
    job = reports(fed, role="admin").start_rebuild()  # run inline here; in the background in the service
    result = reports(fed, role="admin").rebuild_status(job["job_id"])
    assert (result["status"], result["replayed"], result["total"]) == ("done", len(s.events()), len(s.events()))
    assert {r: run(fed, r) for r in ALL_REPORTS} == live
    assert reports(fed, tenant=uuid.UUID(int=5)).run_report("revenue", RANGE)["totals"]["fee_total"] == "330.50"


# -- rules (domain) -------------------------------------------------------------------------

def test_percentile_is_nearest_rank_and_periods_cover_the_range():
    from reports import domain
    assert domain.p90([]) is None and domain.p90([5.0]) == 5.0
    assert domain.p90(list(map(float, range(1, 11)))) == 9.0 and domain.p90([1.0, 2.0]) == 2.0
    assert domain.periods(dt.date(2026, 11, 10), dt.date(2026, 12, 2), "week") == [
        dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 23), dt.date(2026, 11, 30)]
    assert domain.periods(dt.date(2026, 1, 31), dt.date(2026, 3, 1), "month") == [
        dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)]


@pytest.mark.parametrize("zone, instant, day", [
    ("America/New_York", "2026-03-08T04:59:00+00:00", "2026-03-07"),  # 23:59 EST, the night DST starts
    ("America/New_York", "2026-03-09T03:59:00+00:00", "2026-03-08"),  # 23:59 EDT
    ("Asia/Kathmandu", "2026-11-10T18:14:00+00:00", "2026-11-10"),    # +05:45: 23:59
    ("Asia/Kathmandu", "2026-11-10T18:15:00+00:00", "2026-11-11"),
])
def test_local_days_in_any_zone(zone, instant, day):
    from reports.queries import Window
    from reports.schemas import ReportQuery
    window = Window(ReportQuery(date_from="2026-01-01", date_to="2026-12-31"), zone)
    stamp = dt.datetime.fromisoformat(instant)
    assert window.bucket(stamp).isoformat() == day
    assert window.bucket(stamp - dt.timedelta(minutes=1)) <= window.bucket(stamp)  # cached slots agree


def test_scores_leave_out_metrics_without_data():
    from reports import domain
    weights = {"completed": 1, "satisfaction": 1}
    scored = domain.scores({"a": {"completed": 4, "satisfaction": None}, "b": {"completed": 2, "satisfaction": 5}},
                           weights)
    assert scored == {"a": 100.0, "b": 75.0}
