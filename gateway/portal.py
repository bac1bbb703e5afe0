"""The page a QR maintenance sticker opens: /q/{code}, outside /api/v1 (it is HTML for phones).

A bound code shows the equipment to anyone (no login, no personal data) with a form to report a
fault; an unbound code shows registration (建档贴码) for a logged-in technician or admin. The page
itself reads and writes through the public and authenticated JSON routes of routes/qr_codes.py.
"""
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from svc_common.rpc_client import RemoteError

from .routes.qr_codes import SCANS_PER_CLIENT, client_address, public_call

router = APIRouter(include_in_schema=False)
templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))

TEXT = {
    "zh-CN": {
        "title": "设备信息", "model": "型号", "serial": "序列号", "status": "状态", "install_date": "安装日期",
        "warranty": "质保", "in_warranty": "在保（至 {date}）", "expired": "已过保（{date} 到期）",
        "unknown": "未登记", "next_maintenance": "下次保养", "recent": "最近服务", "none": "暂无服务记录",
        "report": "报修", "description": "故障描述", "phone": "联系电话", "photo": "照片（可选）",
        "submit": "提交报修", "sent": "已收到您的报修，单号 {number}。我们会尽快联系您。",
        "not_found": "未找到此维保码", "unbound": "此维保码尚未绑定设备",
        "register": "设备建档：请登录技术员或管理员账号后绑定设备", "tenant": "公司代码", "username": "用户名",
        "password": "密码", "login": "登录", "serial_required": "序列号", "customer": "客户",
        "bind": "建档并绑定", "bound_ok": "绑定成功", "pick": "或选择已有设备（序列号）",
        "search": "搜索客户名称或电话", "template": "产品模板",
        "statuses": {"active": "在用", "inactive": "停用", "scrapped": "报废"},
        "types": {"install": "安装", "repair": "维修", "maintenance": "保养", "inspection": "巡检"},
        "lang_switch": "English", "lang_other": "en",
    },
    "en": {
        "title": "Equipment", "model": "Model", "serial": "Serial number", "status": "Status",
        "install_date": "Installed", "warranty": "Warranty", "in_warranty": "Under warranty (until {date})",
        "expired": "Out of warranty (ended {date})", "unknown": "Not recorded", "next_maintenance": "Next maintenance",
        "recent": "Recent service", "none": "No service recorded yet", "report": "Report a fault",
        "description": "What is wrong?", "phone": "Contact phone", "photo": "Photo (optional)", "submit": "Send",
        "sent": "We received your report, number {number}. We will contact you soon.",
        "not_found": "This code is unknown", "unbound": "This code is not bound to equipment yet",
        "register": "Registration: sign in as a technician or admin to bind equipment", "tenant": "Company code",
        "username": "Username", "password": "Password", "login": "Sign in", "serial_required": "Serial number",
        "customer": "Customer", "bind": "Register and bind", "bound_ok": "Bound",
        "pick": "or pick existing equipment (serial number)", "search": "Search by name or phone",
        "template": "Product template",
        "statuses": {"active": "In use", "inactive": "Out of use", "scrapped": "Scrapped"},
        "types": {"install": "Installation", "repair": "Repair", "maintenance": "Maintenance",
                  "inspection": "Inspection"},
        "lang_switch": "中文", "lang_other": "zh-CN",
    },
}


def locale_of(request: Request) -> str:
    lang = request.query_params.get("lang")
    if lang in TEXT:
        return lang
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else "zh-CN"


@router.get("/q/{code}", response_class=HTMLResponse)
async def scan_page(code: str, request: Request):
    locale = locale_of(request)
    allowed, _ = await SCANS_PER_CLIENT.allow(client_address(request))
    if not allowed:
        return HTMLResponse("<h1>429</h1>", status_code=429)
    try:
        scan = await public_call(request, "public_scan", code=code)
    except RemoteError as exc:
        if exc.exc_type != "NotFound":
            raise
        scan = None
    html = templates.get_template("scan.html").render(t=TEXT[locale], locale=locale, code=code, scan=scan)
    return HTMLResponse(html, status_code=200 if scan else 404)
