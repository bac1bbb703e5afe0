"""运营分析 through the gateway, with every service running: events published onto the bus as
their producers publish them (the worked scenario of services/reports/tests/reports_scenario.py,
for a real company), then every report, export, chart and the dashboard read back over HTTP;
a rebuild from the archive shows the same figures; and a work order driven through the API
shows up in the reports."""
import csv
import datetime as dt
import importlib.util
import io
import uuid
from pathlib import Path

import pytest
from openpyxl import load_workbook

from tests.api import eventually
from tests.e2e.test_first_flow import CUSTOMER, assign_when_roster_knows
from tests.events import publish

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reports_scenario", ROOT / "services/reports/tests/reports_scenario.py")
scenario = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenario)

RANGE = "date_from=2026-11-10&date_to=2026-11-12"
EXCHANGE = {"ticket": "tickets.events", "service_request": "tickets.events", "stock": "inventory.events",
            "customer": "customers.events", "user": "gateway.events", "team": "gateway.events"}
SLUGS = ("work-orders", "personnel", "revenue", "customers", "service-desk", "spare-parts", "service-items",
         "business-plan", "performance", "satisfaction")


@pytest.fixture(scope="module")
def company(api, stack):
    co = api.new_company()
    tenant = api.ok("GET", "/users/me", co["admin"])["tenant_id"]
    events = scenario.events(tenant=uuid.UUID(tenant))
    for event in events:
        publish(stack.config.amqp_uri, EXCHANGE[event["type"].split(".")[0]], event)
    # Each event type has its own queue, so types arrive in any order: wait for a figure of each.
    expected = {"business-plan": ("planned", 2), "revenue": ("fee_total", "330.50"), "customers": ("total", 3),
                "work-orders": ("p90_completion_minutes", 750.0), "service-desk": ("closed_without_order", 1),
                "spare-parts": ("value", "51.00"), "personnel": ("satisfaction", 4.0),
                "service-items": ("revenue", "100.00"), "satisfaction": ("rated", 2)}
    for slug, (key, value) in expected.items():
        eventually(lambda: api.ok("GET", f"/reports/{slug}?{RANGE}", co["admin"])["totals"][key] == value, timeout=30)
    eventually(lambda: [r["name"] for r in api.ok("GET", f"/reports/performance?{RANGE}", co["admin"])["rows"]]
               == ["张工", "李工"], timeout=30)
    eventually(lambda: api.ok("GET", "/reports/dashboard", co["admin"])["open_by_status"]["pending_dispatch"] == 1)
    co["events"] = len(events)
    return co


def test_every_report_reads_the_published_events(api, company):
    admin = company["admin"]
    orders = api.ok("GET", f"/reports/work-orders?{RANGE}", admin)
    assert (orders["tz"], orders["total"], orders["totals"]["created"], orders["totals"]["completed"]) == (
        "Asia/Shanghai", 3, 4, 2)
    assert orders["totals"]["p90_completion_minutes"] == 750.0 and orders["totals"]["sla_compliance"] == 0.5
    revenue = api.ok("GET", f"/reports/revenue?{RANGE}", admin)
    assert (revenue["totals"]["cost_total"], revenue["totals"]["gross_profit"]) == ("190.35", "140.15")
    people = api.ok("GET", f"/reports/personnel?{RANGE}", admin)
    assert {t["technician_name"]: t["completed"] for t in people["sections"]["technicians"]} == {"张工": 1, "李工": 1}
    assert api.ok("GET", f"/reports/customers?{RANGE}", admin)["totals"] == {"total": 3, "new": 2, "served": 2}
    assert api.ok("GET", f"/reports/service-desk?{RANGE}", admin)["totals"]["converted"] == 1
    assert api.ok("GET", f"/reports/spare-parts?{RANGE}", admin)["totals"]["value"] == "51.00"
    assert api.ok("GET", f"/reports/service-items?{RANGE}", admin)["totals"]["revenue"] == "100.00"
    performance = api.ok("GET", f"/reports/performance?{RANGE}", admin)
    assert [(r["name"], r["score"]) for r in performance["rows"]] == [("张工", 100.0), ("李工", 58.0)]


def test_satisfaction_per_dimension_and_tags(api, company):
    admin = company["admin"]
    people = api.ok("GET", f"/reports/personnel?{RANGE}", admin)["sections"]["technicians"]
    zhang = {p["technician_name"]: p for p in people}["张工"]
    assert (zhang["scores"], zhang["tags"]) == ({"态度": 4.0, "质量": 5.0}, {"准时": 1})
    report = api.ok("GET", f"/reports/satisfaction?{RANGE}", admin)
    assert report["totals"]["scores"] == {"态度": 4.0, "质量": 4.0}
    assert report["totals"]["tags"] == {"准时": 2, "等待久": 1} and report["totals"]["rated_by_customer"] == 1
    assert [(r["period"], r["team_name"], r["satisfaction"]) for r in report["rows"]] == [
        ("2026-11-11", "一组", 5.0), ("2026-11-12", "一组", 3.0)]
    assert {d["dimension"]: d["ratings"] for d in report["sections"]["by_dimension"]} == {"态度": 1, "质量": 2}
    xlsx = api.request("GET", f"/reports/personnel/export?{RANGE}&format=xlsx", admin)
    sheet = list(load_workbook(io.BytesIO(xlsx.content))["technicians"].values)
    assert "评分·质量" in sheet[0] and "标签·准时" in sheet[0]
    row = {name: value for name, value in zip(sheet[0], sheet[1 + [r[1] for r in sheet[1:]].index("张工")])}
    assert (row["评分·质量"], row["标签·准时"]) == (5, 1)


def test_filters_grouping_and_paging_over_http(api, company):
    admin = company["admin"]
    month = api.ok("GET", f"/reports/work-orders?{RANGE}&group_by=month", admin)
    assert [(r["period"], r["created"]) for r in month["rows"]] == [("2026-11-01", 4)]
    page = api.ok("GET", f"/reports/work-orders?{RANGE}&offset=2&limit=1", admin)
    assert (page["total"], [r["period"] for r in page["rows"]]) == (3, ["2026-11-12"])
    team2 = api.ok("GET", f"/reports/work-orders?{RANGE}&team_id={scenario.T2}", admin)
    assert team2["totals"]["created"] == 2
    repair = api.ok("GET", f"/reports/revenue?{RANGE}&type=maintenance", admin)
    assert repair["totals"]["fee_total"] == "200.00"
    bad = api.request("GET", f"/reports/work-orders?{RANGE}&group_by=year", admin)
    assert bad.status_code == 422 and "group_by" in bad.text
    bad_zone = api.request("GET", f"/reports/work-orders?{RANGE}&tz=Mars/Olympus", admin)
    assert bad_zone.status_code == 422 and bad_zone.json()["errors"][0]["field"] == "tz"


def test_exports_and_charts(api, company):
    admin = company["admin"]
    xlsx = api.request("GET", f"/reports/revenue/export?{RANGE}&format=xlsx", admin, headers={})
    assert xlsx.status_code == 200 and "spreadsheetml" in xlsx.headers["content-type"]
    assert "revenue_2026-11-10_2026-11-12.xlsx" in xlsx.headers["content-disposition"]
    book = load_workbook(io.BytesIO(xlsx.content))
    sheet = list(book["营收报表"].values)
    assert [str(row[sheet[0].index("毛利")]) for row in sheet[1:]] == ["90.25", "49.9"]
    csv_file = api.request("GET", f"/reports/work-orders/export?{RANGE}&format=csv&limit=1", admin)
    rows = list(csv.reader(io.StringIO(csv_file.content.decode("utf-8-sig"))))
    assert rows[0][0] == "期间" and [r[0] for r in rows[1:4]] == ["2026-11-10", "2026-11-11", "2026-11-12"]
    for slug in SLUGS:
        chart = api.request("GET", f"/reports/{slug}/chart.svg?{RANGE}", admin)
        assert chart.status_code == 200 and chart.headers["content-type"].startswith("image/svg+xml"), slug
        assert chart.text.lstrip().startswith("<svg")
    assert api.request("GET", f"/reports/nope/export?{RANGE}", admin).status_code == 422


def test_settings_dashboard_and_a_technicians_own_view(api, company):
    admin = company["admin"]
    denied = api.request("PUT", "/reports/settings", company["dispatcher"], json={"time_zone": "UTC"})
    assert denied.status_code == 403
    settings = api.ok("PUT", "/reports/settings", admin,
                      json={"time_zone": "Asia/Shanghai", "performance_weights": {"on_time_rate": 1}})
    assert settings["performance_weights"] == {"on_time_rate": 1.0}
    scores = api.ok("GET", f"/reports/performance?{RANGE}", admin)["rows"]
    assert [(r["name"], r["score"]) for r in scores] == [("张工", 100.0), ("李工", 0.0)]
    board = api.ok("GET", "/reports/dashboard", admin)
    assert board["tz"] == "Asia/Shanghai" and board["open_by_status"]["pending_dispatch"] >= 1
    assert board["pending_service_requests"] == 1
    # a technician sees their own figures only, whatever they ask for
    own = api.ok("GET", f"/reports/personnel?{RANGE}&technician_id={scenario.TECH_A}", company["tech"])
    assert own["sections"]["technicians"] == []


def test_rebuild_from_the_archive_shows_the_live_figures(api, company):
    """A background job: started (202, running), followed to done; the figures are the live ones."""
    admin = company["admin"]
    live = {slug: api.ok("GET", f"/reports/{slug}?{RANGE}", admin) for slug in SLUGS}
    assert api.request("POST", "/reports/rebuild", company["dispatcher"]).status_code == 403
    started = api.request("POST", "/reports/rebuild", admin)
    assert started.status_code == 202 and started.json()["status"] in ("running", "done")
    job = started.json()["job_id"]
    done = eventually(lambda: (j := api.ok("GET", f"/reports/rebuild/{job}", admin))["status"] == "done" and j,
                      timeout=60)
    assert done["replayed"] >= company["events"] and done["total"] == done["replayed"]
    assert api.ok("GET", "/reports/rebuild", admin)["job_id"] == job  # the latest
    assert api.request("GET", f"/reports/rebuild/{uuid.uuid4()}", admin).status_code == 404
    assert {slug: api.ok("GET", f"/reports/{slug}?{RANGE}", admin) for slug in SLUGS} == live


def test_a_work_order_done_through_the_api_is_reported(api, company):
    """The tickets service's own events (not hand-made ones) feed the reports."""
    co = api.new_company()
    customer = api.ok("POST", "/customers", co["admin"], json=CUSTOMER)
    order = api.ok("POST", "/work-orders", co["dispatcher"], json={
        "type": "repair", "customer_id": customer["id"], "description": "空调不制冷"})
    assign_when_roster_knows(api, co, order["id"])
    api.ok("POST", f"/work-orders/{order['id']}/accept", co["tech"])
    api.ok("POST", f"/work-orders/{order['id']}/check-in", co["tech"], json={"latitude": "31.2", "longitude": "121.5"})
    api.ok("POST", f"/work-orders/{order['id']}/complete", co["tech"], json={"summary": "ok", "parts_used": []})
    today = dt.datetime.now(dt.timezone.utc).date()
    window = f"date_from={today - dt.timedelta(days=1)}&date_to={today + dt.timedelta(days=1)}"
    report = eventually(lambda: (r := api.ok("GET", f"/reports/work-orders?{window}", co["admin"]))
                        ["totals"]["completed"] == 1 and r, timeout=30)
    assert report["totals"]["created"] == 1 and report["totals"]["avg_response_minutes"] is not None
    people = api.ok("GET", f"/reports/personnel?{window}", co["admin"])["sections"]["technicians"]
    assert [(p["technician_id"], p["completed"]) for p in people] == [(co["ids"]["tech"], 1)]
    assert people[0]["technician_name"] == "tech"  # from the gateway's user.created event
    board = api.ok("GET", "/reports/dashboard", co["admin"])
    assert board["today"]["completed"] + board["this_month"]["completed"] >= 1
    mine = api.ok("GET", "/reports/dashboard", co["tech"])
    assert mine["this_month"]["completed"] == 1
