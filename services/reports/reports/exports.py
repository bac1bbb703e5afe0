"""Reports as files: XLSX (openpyxl) and CSV, and trend charts as SVG (pygal).

Headers are zh-CN by default, en on request. Money stays Decimal into the XLSX cells (exact
numbers Excel can sum) and is written as a decimal string into CSV.
"""
import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

import pygal
from openpyxl import Workbook

LABELS = {
    "period": ("期间", "Period"), "created": ("新建", "Created"), "completed": ("完成", "Completed"),
    "closed": ("关闭", "Closed"), "cancelled": ("取消", "Cancelled"), "overdue": ("超时", "Overdue"),
    "avg_response_minutes": ("平均响应(分钟)", "Avg response (min)"),
    "p90_response_minutes": ("P90响应(分钟)", "P90 response (min)"),
    "avg_arrival_minutes": ("平均到达(分钟)", "Avg arrival (min)"),
    "p90_arrival_minutes": ("P90到达(分钟)", "P90 arrival (min)"),
    "avg_completion_minutes": ("平均完成(分钟)", "Avg completion (min)"),
    "p90_completion_minutes": ("P90完成(分钟)", "P90 completion (min)"),
    "sla_compliance": ("SLA达成率", "SLA compliance"), "status": ("状态", "Status"), "type": ("工单类型", "Type"),
    "priority": ("优先级", "Priority"), "technician_id": ("服务人员ID", "Technician ID"),
    "technician_name": ("服务人员", "Technician"), "name": ("名称", "Name"), "assists": ("协同", "Assists"),
    "on_site_hours": ("在场工时", "Hours on site"), "revenue": ("营收", "Revenue"),
    "satisfaction": ("满意度", "Satisfaction"), "first_time_fix_rate": ("一次修复率", "First-time fix rate"),
    "on_time_rate": ("准时率", "On-time rate"), "team_id": ("团队ID", "Team ID"), "team_name": ("团队", "Team"),
    "orders": ("工单数", "Orders"), "fee_total": ("收费合计", "Fees"), "cost_total": ("成本合计", "Costs"),
    "gross_profit": ("毛利", "Gross profit"), "gross_margin": ("毛利率", "Gross margin"), "new": ("新增客户", "New"),
    "served": ("服务客户", "Served"), "total": ("客户总数", "Total"), "customer_id": ("客户ID", "Customer ID"),
    "customer_name": ("客户", "Customer"), "channel": ("渠道", "Channel"), "received": ("受理", "Received"),
    "converted": ("转工单", "Converted"), "closed_without_order": ("直接关闭", "Closed without order"),
    "conversion_rate": ("转化率", "Conversion rate"), "event_type": ("事件类型", "Event type"),
    "part_id": ("备件ID", "Part ID"), "quantity": ("数量", "Quantity"), "value": ("金额", "Value"),
    "entries": ("出库次数", "Entries"), "warehouse_id": ("仓库ID", "Warehouse ID"),
    "service_item_id": ("服务项目ID", "Service item ID"), "billed_quantity": ("结算数量", "Billed quantity"),
    "planned": ("计划", "Planned"), "done": ("完成", "Done"), "open": ("未完成", "Open"),
    "done_rate": ("完成率", "Done rate"), "plan_id": ("计划ID", "Plan ID"), "rank": ("排名", "Rank"),
    "score": ("得分", "Score"), "side": ("收支", "Side"), "kind": ("类别", "Kind"), "amount": ("金额", "Amount"),
    "settled": ("结算单数", "Settled"),
    "visits": ("回访数", "Visits"), "rated": ("评价数", "Rated"), "rated_by_customer": ("客户自评", "Rated by customer"),
    "scores": ("分项评分", "Scores"), "tags": ("标签", "Tags"), "dimension": ("评价维度", "Dimension"),
    "average": ("平均分", "Average"), "ratings": ("评价次数", "Ratings"), "tag": ("标签", "Tag"),
    "count": ("次数", "Count"),
}
# Dict-valued columns (satisfaction per dimension, tag counts) become one column per key in files.
SUB_LABELS = {"scores": ("评分·", "Score · "), "tags": ("标签·", "Tag · ")}
TITLES = {
    "work_orders": ("工单报表", "Work orders"), "personnel": ("人员报表", "Personnel"),
    "revenue": ("营收报表", "Revenue"), "customers": ("客户报表", "Customers"),
    "service_desk": ("服务台报表", "Service desk"), "spare_parts": ("备件报表", "Spare parts"),
    "service_items": ("服务项目报表", "Service items"), "business_plan": ("业务计划", "Business plan"),
    "performance": ("绩效报告", "Performance"), "satisfaction": ("满意度报表", "Satisfaction"),
    "totals": ("合计", "Totals"),
}
# What each report's trend chart draws (its per-period rows, summed per period).
CHART_SERIES = {
    "work_orders": ("created", "completed", "overdue"), "personnel": ("completed",),
    "revenue": ("fee_total", "cost_total", "gross_profit"), "customers": ("new", "served"),
    "service_desk": ("received", "converted"), "spare_parts": ("value",), "service_items": ("revenue",),
    "business_plan": ("planned", "done"), "performance": ("score",), "satisfaction": ("satisfaction",),
}


def label(key: str, locale: str) -> str:
    en = locale.startswith("en")
    if ":" in key and key.split(":", 1)[0] in SUB_LABELS:
        prefix, name = key.split(":", 1)
        return SUB_LABELS[prefix][1 if en else 0] + name
    zh, en_label = LABELS.get(key, (key, key))
    return en_label if en else zh


def title(report: str, locale: str) -> str:
    zh, en = TITLES.get(report, (report, report))
    return en if locale.startswith("en") else zh


def columns_of(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    last = None
    for row in rows:
        keys = row.keys()
        if keys == last:  # (rows mostly share their keys: thousands of rows, a set comparison each)
            continue
        last = keys
        for key in keys:
            seen.setdefault(key, None)
    return list(seen)


def cell(value):
    """A value as an XLSX cell takes it: numbers and dates stay typed, ids and lists become text."""
    if value is None or isinstance(value, (int, float, Decimal, dt.date, str)):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(cell(value))


def flatten(columns: list[str], rows: list[dict]) -> tuple[list[str], list[dict]]:
    """Dict-valued columns (scores per dimension, tag counts) as one column per key ("scores:质量")."""
    nested = [c for c in columns if c in SUB_LABELS and any(isinstance(r.get(c), dict) for r in rows)]
    if not nested:
        return columns, rows
    keys = {c: sorted({k for r in rows for k in (r.get(c) or {})}) for c in nested}
    out_columns = []
    for c in columns:
        out_columns += [f"{c}:{k}" for k in keys[c]] if c in keys else [c]
    out_rows = [{**{k: v for k, v in r.items() if k not in keys},
                 **{f"{c}:{k}": (r.get(c) or {}).get(k) for c in keys for k in keys[c]}} for r in rows]
    return out_columns, out_rows


def _tables(report: str, result: dict, locale: str) -> list[tuple[str, list[str], list[dict]]]:
    tables = [(title(report, locale), *flatten(result["columns"], result["rows"])),
              (title("totals", locale), *flatten(list(result["totals"]), [result["totals"]]))]
    for name, rows in result["sections"].items():
        tables.append((name, *flatten(columns_of(rows), rows)))
    return tables


def to_xlsx(report: str, result: dict, locale: str) -> bytes:
    """One sheet for the rows, one for the totals, one per breakdown."""
    book = Workbook(write_only=True)
    for name, columns, rows in _tables(report, result, locale):
        sheet = book.create_sheet(name[:31])  # Excel's limit on sheet names
        sheet.append([label(c, locale) for c in columns])
        for row in rows:
            sheet.append([cell(row.get(c)) for c in columns])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def to_csv(report: str, result: dict, locale: str) -> bytes:
    """The rows, a blank line, then the totals; UTF-8 with a BOM so Excel reads the Chinese."""
    out = io.StringIO()
    writer = csv.writer(out)
    columns, rows = flatten(result["columns"], result["rows"])
    writer.writerow([label(c, locale) for c in columns])
    for row in rows:
        writer.writerow([text(row.get(c)) for c in columns])
    if result["totals"]:
        total_columns, [totals] = flatten(list(result["totals"]), [result["totals"]])
        writer.writerow([])
        writer.writerow([title("totals", locale)] + [label(c, locale) for c in total_columns])
        writer.writerow([""] + [text(totals.get(c)) for c in total_columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def trend_svg(report: str, result: dict, locale: str, periods: list) -> str:
    """A line chart of the report's main figures per period (every period of the range shown)."""
    series = CHART_SERIES[report]
    if not any("period" in row for row in result["rows"]):  # performance: one bar per technician
        chart = pygal.HorizontalBar(title=title(report, locale), width=900, height=400,
                                    disable_xml_declaration=True)
        rows = result["rows"][:30]
        chart.x_labels = [str(row.get("name") or row.get("technician_id") or "-") for row in rows]
        for key in series:
            chart.add(label(key, locale), [float(row.get(key) or 0) for row in rows])
        return chart.render(is_unicode=True)
    chart = pygal.Line(title=title(report, locale), x_label_rotation=30, show_minor_x_labels=len(periods) <= 31,
                       width=900, height=400, disable_xml_declaration=True)
    chart.x_labels = [p.isoformat() for p in periods]
    for key in series:
        per_period = {p: 0.0 for p in periods}
        for row in result["rows"]:
            if row.get("period") in per_period and row.get(key) is not None:
                per_period[row["period"]] += float(row[key])
        chart.add(label(key, locale), [per_period[p] for p in periods])
    return chart.render(is_unicode=True)
