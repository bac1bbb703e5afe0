"""Settlement (审核结算), return visits and satisfaction (回访, 满意度), service reports (服务报告) —
tickets service. The rating page's JSON is public: the SMS link's token is the only key."""
import base64
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from pydantic import BaseModel
from tickets.desk.schemas import (
    BatchSettleIn, ManualVisitIn, OptionalNoteIn, ReportSendIn, ReportSentOut, SettlementIn, SettlementOut, VisitOut,
    VisitRateIn,
)

from svc_common.context import correlation_id_var
from svc_common.rpc_client import RemoteError

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok
from ..rate_limit import RouteLimit
from .qr_codes import client_address, too_many

router = APIRouter(responses=ERRORS, tags=["settlement and return visits"])
BINARY = {"schema": {"type": "string", "format": "binary"}}
PDF = {200: {"content": {"application/pdf": BINARY}, "description": "PDF"}}
RATINGS_PER_CLIENT = RouteLimit("ratings_per_client", 60, 3600)


class Queue(Page[SettlementOut]):
    totals: dict


class Batch(BaseModel):
    items: list[SettlementOut]


def _body(model: BaseModel | None) -> dict | None:
    return model.model_dump(mode="json") if model is not None else None


@router.get("/settlements", responses=ok(Queue),
            summary="The settlement queue with totals (unsettled count and amount, settled in 30 days)")
async def settlement_queue(status: Literal["draft", "approved", "settled", "unsettled"] | None = None,
                           offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("tickets", "settlement_queue", status=status, offset=offset, limit=limit)


@router.post("/settlements/batch-settle", responses=ok(Batch), summary="Settle many orders (all or none)")
async def batch_settle(body: BatchSettleIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "batch_settle", batch=_body(body))


@router.put("/work-orders/{ticket_id}/quote", responses=ok(SettlementOut), summary="服务报价 before the work")
async def quote_work_order(ticket_id: uuid.UUID, body: SettlementIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "build_settlement", ticket_id=ticket_id, stage="quote", settlement=_body(body))


@router.get("/work-orders/{ticket_id}/quote", responses=ok(SettlementOut))
async def get_quote(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_settlement", ticket_id=ticket_id, stage="quote")


@router.put("/work-orders/{ticket_id}/settlement", responses=ok(SettlementOut),
            summary="Final fee and cost lines: the receipt's parts and service items at catalog prices (free under "
                    "warranty) plus the lines given; a draft until settled")
async def build_settlement(ticket_id: uuid.UUID, body: SettlementIn | None = None, svc: Services = Depends(services)):
    return await svc.reply("tickets", "build_settlement", ticket_id=ticket_id, stage="final",
                           settlement=_body(body))


@router.get("/work-orders/{ticket_id}/settlement", responses=ok(SettlementOut))
async def get_settlement(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_settlement", ticket_id=ticket_id, stage="final")


@router.post("/work-orders/{ticket_id}/settlement/approve", responses=ok(SettlementOut), summary="审核")
async def approve_settlement(ticket_id: uuid.UUID, body: OptionalNoteIn | None = None,
                             svc: Services = Depends(services)):
    return await svc.reply("tickets", "approve_settlement", ticket_id=ticket_id, approval=_body(body))


@router.post("/work-orders/{ticket_id}/settlement/reject", responses=ok(SettlementOut),
             summary="退回: back to a draft with the reason (note required)")
async def reject_settlement(ticket_id: uuid.UUID, body: OptionalNoteIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "reject_settlement", ticket_id=ticket_id, rejection=_body(body))


@router.post("/work-orders/{ticket_id}/settlement/settle", responses=ok(SettlementOut),
             summary="结算: lock the lines and settle the order (ticket.settled carries them)")
async def settle_settlement(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "settle_settlement", ticket_id=ticket_id)


# -- return visits --------------------------------------------------------------------------------------

@router.post("/return-visits", status_code=201, responses=ok(VisitOut, 201),
             summary="A manual return visit (by phone) with the tenant's satisfaction dimensions and tags")
async def record_return_visit(body: ManualVisitIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "record_return_visit", status_code=201, visit=_body(body))


@router.post("/work-orders/{ticket_id}/return-visit-link", status_code=201, responses=ok(VisitOut, 201),
             summary="An automatic return visit: a rating link for the customer")
async def request_return_visit(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "request_return_visit", status_code=201, ticket_id=ticket_id)


@router.get("/return-visits", responses=ok(Page[VisitOut]))
async def list_return_visits(ticket_id: uuid.UUID | None = None,
                             status: Literal["requested", "rated"] | None = None,
                             offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_return_visits", ticket_id=ticket_id, status=status, offset=offset,
                           limit=limit)


async def _public(request: Request, method: str, **kwargs):
    context = {"correlation_id": correlation_id_var.get(),
               "locale": "en" if request.query_params.get("lang") == "en" else "zh-CN"}
    return await request.app.state.rpc.call("tickets", method, context=context, **kwargs)


@router.get("/public/visits/{token}", tags=["public"], summary="No login: the order to rate and the dimensions")
async def public_visit(token: str, request: Request):
    allowed, retry = await RATINGS_PER_CLIENT.allow(client_address(request))
    if not allowed:
        return too_many(retry)
    return await _public(request, "public_get_visit", token=token)


@router.post("/public/visits/{token}", tags=["public"], summary="No login: the customer rates the service (once)")
async def public_rate_visit(token: str, body: VisitRateIn, request: Request):
    allowed, retry = await RATINGS_PER_CLIENT.allow(client_address(request))
    if not allowed:
        return too_many(retry)
    return await _public(request, "public_rate_visit", token=token, rating=_body(body))


RATING_TEXT = {
    "zh-CN": {"title": "服务评价", "order": "工单", "done": "服务内容", "tags": "快捷评价", "comment": "意见或建议",
              "submit": "提交评价", "thanks": "感谢您的评价！", "rated": "您已评价过，感谢！", "unknown": "评价链接无效",
              "error": "提交失败，请重试"},
    "en": {"title": "Rate our service", "order": "Work order", "done": "Work done", "tags": "Quick tags",
           "comment": "Comments", "submit": "Send", "thanks": "Thank you for your rating!",
           "rated": "You have rated this service already. Thank you!", "unknown": "This rating link is unknown",
           "error": "Could not send, please try again"},
}
RATING_PAGE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="{{ locale }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ t.title }}</title><style>body{font-family:sans-serif;max-width:32rem;margin:1rem auto;padding:0 1rem}
label{display:block;margin:.6rem 0 .2rem}select,textarea{width:100%;font-size:1rem}button{margin-top:1rem;
font-size:1.1rem;padding:.5rem 1.5rem}</style></head><body><h1>{{ t.title }}</h1>
{% if not visit %}<p>{{ t.unknown }}</p>{% elif visit.status != "requested" %}<p>{{ t.rated }}</p>{% else %}
<p>{{ t.order }}: {{ visit.number }} · {{ visit.customer_name }}</p><p>{{ t.done }}: {{ visit.summary or "" }}</p>
<form id="rate">{% for d in visit.dimensions %}<label for="{{ d.key }}">{{ d.label if locale == "zh-CN"
else (d.label_en or d.label) }}</label><select id="{{ d.key }}" name="{{ d.key }}">{% for n in [5,4,3,2,1] %}
<option value="{{ n }}">{{ "★" * n }}</option>{% endfor %}</select>{% endfor %}
<label>{{ t.tags }}</label>{% for tag in visit.tags %}<label><input type="checkbox" name="tag" value="{{ tag }}">
{{ tag }}</label>{% endfor %}<label for="comment">{{ t.comment }}</label><textarea id="comment" rows="3"></textarea>
<button type="submit">{{ t.submit }}</button></form><p id="result"></p>
<script>document.getElementById("rate").onsubmit=async e=>{e.preventDefault();const f=e.target,scores={};
f.querySelectorAll("select").forEach(s=>scores[s.name]=Number(s.value));
const tags=[...f.querySelectorAll("input[name=tag]:checked")].map(i=>i.value);
const r=await fetch(location.pathname.replace(/\/page$/,""),{method:"POST",headers:{"content-type":"application/json"},
body:JSON.stringify({scores,tags,comment:document.getElementById("comment").value||null})});
document.getElementById("result").textContent=r.ok?{{ t.thanks|tojson }}:{{ t.error|tojson }};
if(r.ok)f.remove();};</script>{% endif %}</body></html>""")


@router.get("/public/visits/{token}/page", tags=["public"], response_class=HTMLResponse,
            summary="No login: the rating page the customer's SMS links to (zh-CN, ?lang=en)")
async def public_visit_page(token: str, request: Request, lang: Literal["zh-CN", "en"] = "zh-CN"):
    allowed, retry = await RATINGS_PER_CLIENT.allow(client_address(request))
    if not allowed:
        return too_many(retry)
    try:
        visit = await _public(request, "public_get_visit", token=token)
    except RemoteError as exc:
        if exc.exc_type != "NotFound":
            raise
        visit = None
    html = RATING_PAGE.render(t=RATING_TEXT[lang], locale=lang, visit=visit)
    return HTMLResponse(html, status_code=200 if visit else 404)


# -- service report -------------------------------------------------------------------------------------

@router.get("/work-orders/{ticket_id}/service-report.pdf", response_class=Response,
            responses=PDF,
            summary="服务报告: order, receipt, parts, service items, fees and signature (zh-CN or en)")
async def service_report(ticket_id: uuid.UUID, locale: Literal["zh-CN", "en"] = Query("zh-CN"),
                         svc: Services = Depends(services)):
    result = await svc.call("tickets", "service_report_pdf", ticket_id=ticket_id, locale=locale)
    return Response(base64.b64decode(result["content_base64"]), media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{result["filename"]}"'})


class ReportLinkOut(BaseModel):
    ticket_id: str
    token: str


@router.post("/work-orders/{ticket_id}/service-report/link", responses=ok(ReportLinkOut),
             summary="A portal link for the customer to the order's service report (no login)")
async def service_report_link(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "service_report_link", ticket_id=ticket_id)


@router.post("/work-orders/{ticket_id}/service-report/send", responses=ok(ReportSentOut),
             summary="Send the service report to the customer: by e-mail (the PDF attached) or SMS (the portal "
                     "link); `to` defaults to the order's contact. Emits service_report.sent")
async def send_service_report(ticket_id: uuid.UUID, body: ReportSendIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "send_service_report", ticket_id=ticket_id, sending=_body(body))


@router.get("/public/service-reports/{token}", tags=["public"], response_class=Response,
            responses=PDF,
            summary="No login: the service report behind a portal link")
async def public_service_report(token: str, request: Request, locale: Literal["zh-CN", "en"] = Query("zh-CN")):
    allowed, retry = await RATINGS_PER_CLIENT.allow(client_address(request))
    if not allowed:
        return too_many(retry)
    result = await _public(request, "public_service_report", token=token, locale=locale)
    return Response(base64.b64decode(result["content_base64"]), media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{result["filename"]}"'})


# -- custom Excel print templates -------------------------------------------------------------------------

class ReportTemplateUpload(BaseModel):
    name: str
    ticket_type: str | None = None
    filename: str
    content_base64: str


@router.get("/report-templates/fields", responses=ok(dict),
            summary="The field dictionary of an order type: placeholders for an Excel template")
async def report_template_fields(type: str | None = None, svc: Services = Depends(services)):
    return await svc.reply("tickets", "report_template_fields", type=type)


@router.post("/report-templates", status_code=201, responses=ok(dict, 201),
             summary="Upload an .xlsx template with {{placeholders}} (rows with {{parts.*}}, {{items.*}}, "
                     "{{fees.*}} repeat)")
async def upload_report_template(body: ReportTemplateUpload, svc: Services = Depends(services)):
    return await svc.reply("tickets", "upload_report_template", status_code=201, template=_body(body))


@router.get("/report-templates", responses=ok(dict))
async def list_report_templates(svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_report_templates")


@router.get("/work-orders/{ticket_id}/report-templates/{template_id}", response_class=Response,
            responses={200: {"content": {"application/pdf": BINARY, "application/vnd.openxmlformats-officedocument."
                                         "spreadsheetml.sheet": BINARY}, "description": "The filled template"}},
            summary="The template filled for this order, as XLSX or PDF")
async def fill_report_template(ticket_id: uuid.UUID, template_id: uuid.UUID,
                               format: Literal["xlsx", "pdf"] = "xlsx", locale: Literal["zh-CN", "en"] = "zh-CN",
                               svc: Services = Depends(services)):
    result = await svc.call("tickets", "fill_report_template", template_id=template_id, ticket_id=ticket_id,
                            format=format, locale=locale)
    return Response(base64.b64decode(result["content_base64"]), media_type=result["content_type"],
                    headers={"Content-Disposition": f'attachment; filename="{result["filename"]}"'})
