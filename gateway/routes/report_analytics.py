"""运营分析: every report of the reports service, its XLSX/CSV export and SVG trend chart, the
managers' dashboard and the tenant's report settings (time zone, performance weights)."""
import base64
import datetime as dt
import uuid
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response
from reports.schemas import DashboardOut, ReportOut, ReportSettingsIn, ReportSettingsOut

from ..deps import Services, services
from ..problems import ERRORS, ok

router = APIRouter(responses=ERRORS, tags=["reports"])

# URL slug → report name of the reports service
REPORTS = {
    "work-orders": ("work_orders", "工单报表: created, completed, closed, cancelled, overdue; response, arrival "
                                   "and completion times (avg, p90); SLA compliance; by status, type, priority"),
    "personnel": ("personnel", "人员报表: per technician — orders done, assists, hours on site, revenue, "
                               "satisfaction (overall, per dimension, tags), first-time-fix rate"),
    "revenue": ("revenue", "营收报表: fees, costs and gross profit per period and team (decimal strings)"),
    "customers": ("customers", "客户报表: total, new and served customers; top customers by orders and revenue"),
    "service-desk": ("service_desk", "服务台报表: requests received and converted to orders, by channel"),
    "spare-parts": ("spare_parts", "备件报表: consumption and its value by part, warehouse, technician, customer"),
    "service-items": ("service_items", "服务项目报表: usage and revenue of service items"),
    "business-plan": ("business_plan", "业务计划: planned (recurring / maintenance) orders versus done"),
    "performance": ("performance", "绩效报告: scores per technician and team by the company's weighted rules"),
    "satisfaction": ("satisfaction", "满意度报表: return visits per period and team — average stars overall and per "
                                     "dimension, tag counts, share rated by the customer"),
}
ReportSlug = Literal["work-orders", "personnel", "revenue", "customers", "service-desk", "spare-parts",
                     "service-items", "business-plan", "performance", "satisfaction"]


def report_query(
    date_from: dt.date, date_to: dt.date,
    tz: str | None = Query(None, description="IANA zone; default: the company's report time zone"),
    team_id: uuid.UUID | None = None, technician_id: uuid.UUID | None = None,
    type: str | None = Query(None, max_length=100, description="work-order type code"),
    customer_id: uuid.UUID | None = None,
    group_by: Literal["day", "week", "month"] = "day",
    offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
    top: int = Query(10, ge=1, le=100, description="length of top-N lists"),
) -> dict:
    query = {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(), "group_by": group_by,
             "offset": offset, "limit": limit, "top": top, "tz": tz, "type": type}
    for name, value in (("team_id", team_id), ("technician_id", technician_id), ("customer_id", customer_id)):
        query[name] = str(value) if value else None
    return query


def _add_report_route(slug: str, name: str, description: str) -> None:
    async def read_report(query: dict = Depends(report_query), svc: Services = Depends(services)):
        return await svc.reply("reports", "run_report", report=name, query=query)
    read_report.__name__ = f"report_{name}"
    router.add_api_route(f"/reports/{slug}", read_report, methods=["GET"], summary=description.split(":")[0],
                         description=description, responses=ok(ReportOut))


for _slug, (_name, _description) in REPORTS.items():
    _add_report_route(_slug, _name, _description)


@router.get("/reports/dashboard", responses=ok(DashboardOut), summary="首页: today, this month, open orders")
async def report_dashboard(tz: str | None = None, team_id: uuid.UUID | None = None,
                           technician_id: uuid.UUID | None = None, svc: Services = Depends(services)):
    return await svc.reply("reports", "dashboard", query={
        "tz": tz, "team_id": str(team_id) if team_id else None,
        "technician_id": str(technician_id) if technician_id else None})


@router.get("/reports/settings", responses=ok(ReportSettingsOut))
async def get_report_settings(svc: Services = Depends(services)):
    return await svc.reply("reports", "get_report_settings")


@router.put("/reports/settings", responses=ok(ReportSettingsOut),
            summary="Your company's report time zone and performance weights (admin)")
async def update_report_settings(body: ReportSettingsIn, svc: Services = Depends(services)):
    return await svc.reply("reports", "update_report_settings", settings=body.model_dump(mode="json"))


@router.get("/reports/{report}/export", summary="Every row of a report as an XLSX or CSV file",
            responses={200: {"content": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
                                         "text/csv": {}}}})
async def export_report(report: ReportSlug, format: Literal["xlsx", "csv"] = "xlsx",
                        query: dict = Depends(report_query), svc: Services = Depends(services)):
    out = await svc.call("reports", "export_report", report=REPORTS[report][0], query=query, format=format)
    return Response(base64.b64decode(out["content_base64"]), media_type=out["content_type"],
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(out['filename'])}"})


@router.get("/reports/{report}/chart.svg", summary="A report's trend per period as an SVG chart",
            responses={200: {"content": {"image/svg+xml": {}}}})
async def report_chart(report: ReportSlug, query: dict = Depends(report_query), svc: Services = Depends(services)):
    out = await svc.call("reports", "report_chart", report=REPORTS[report][0], query=query)
    return Response(out["svg"], media_type="image/svg+xml")
