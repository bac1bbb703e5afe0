"""Service desk (服务台, tickets service): requests from every channel, their types and forms,
assignment, approval, notes and templates, conversion into work orders; the desk's settings."""
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from tickets.desk.schemas import (
    ComponentsIn, ConvertIn, DeskSettingsIn, DeskSettingsOut, NoteTemplateIn, NoteTemplateOut, OptionalNoteIn,
    RequestAssignIn, RequestCompleteIn, RequestIn, RequestNoteIn, RequestNoteOut, RequestOut, RequestReasonIn,
    RequestTypeIn, RequestTypeOut, ServiceRecordIn, ServiceRecordOut,
)
from tickets.schemas import TicketOut

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok, problem

router = APIRouter(responses=ERRORS, tags=["service desk"])


class Items(BaseModel):
    items: list[dict]


class Converted(BaseModel):
    request: RequestOut
    ticket: TicketOut


def _body(model: BaseModel | None) -> dict | None:
    return model.model_dump(mode="json") if model is not None else None


# -- settings, types, templates ----------------------------------------------------------------------

@router.get("/service-desk/settings", responses=ok(DeskSettingsOut), summary="服务台设置")
async def get_desk_settings(svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_desk_settings")


@router.put("/service-desk/settings", responses=ok(DeskSettingsOut),
            summary="Return of done requests, required approval notes, assignment rules, satisfaction "
                    "dimensions and tags, knowledge and settlement approval (subscribers: /notification-lists)")
async def update_desk_settings(body: DeskSettingsIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "update_desk_settings", settings=_body(body))


@router.get("/service-request-types", responses=ok(Items), summary="事件类型 with their forms")
async def list_request_types(svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_request_types")


@router.put("/service-request-types/{code}", responses=ok(RequestTypeOut), summary="Create or replace a type")
async def save_request_type(code: str, body: RequestTypeIn, svc: Services = Depends(services)):
    if body.code != code:
        return problem(422, "code in the body must be the one in the path", [{"field": "code", "message": "mismatch"}])
    return await svc.reply("tickets", "save_request_type", request_type=_body(body))


@router.get("/service-desk/note-templates", responses=ok(Items), summary="备注模板")
async def list_note_templates(svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_note_templates")


@router.post("/service-desk/note-templates", status_code=201, responses=ok(NoteTemplateOut, 201))
async def create_note_template(body: NoteTemplateIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_note_template", status_code=201, template=_body(body))


@router.delete("/service-desk/note-templates/{template_id}", responses=ok(dict))
async def delete_note_template(template_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "delete_note_template", template_id=template_id)


# -- requests -------------------------------------------------------------------------------------------

@router.post("/service-requests", status_code=201, responses=ok(RequestOut, 201),
             summary="A request from phone, portal, QR scan, chat or API (服务事件)")
async def create_service_request(body: RequestIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_service_request", status_code=201, request=_body(body))


@router.get("/service-requests", responses=ok(Page[RequestOut]),
            summary="待分配 / 待处理 / 处理中 / 已完成 / 已取消 / 异常事件, mine, created by me")
async def list_service_requests(
        status: str | None = Query(None, description="one status or several, comma-separated"),
        event_type: str | None = None, channel: str | None = None, assignee_id: uuid.UUID | None = None,
        customer_id: uuid.UUID | None = None, scope: Literal["mine", "created"] | None = None,
        exceptions: bool = Query(False, description="paused or timed out (异常事件)"),
        q: str | None = Query(None, max_length=100, description="number, subject, contact"),
        offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_service_requests", status=status, event_type=event_type, channel=channel,
                           assignee_id=assignee_id, customer_id=customer_id, scope=scope, exceptions=exceptions, q=q,
                           offset=offset, limit=limit)


@router.get("/service-requests/counts", responses=ok(dict), summary="Counts per tab of the desk")
async def service_request_counts(svc: Services = Depends(services)):
    return await svc.reply("tickets", "service_request_counts")


@router.get("/service-requests/{request_id}", responses=ok(RequestOut))
async def get_service_request(request_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_service_request", request_id=request_id)


@router.get("/service-requests/{request_id}/notes", responses=ok(Items), summary="Notes and time spent (用时)")
async def list_service_request_notes(request_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_service_request_notes", request_id=request_id)


@router.post("/service-requests/{request_id}/notes", status_code=201, responses=ok(RequestNoteOut, 201))
async def add_service_request_note(request_id: uuid.UUID, body: RequestNoteIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "add_service_request_note", status_code=201, request_id=request_id,
                           note=_body(body))


@router.get("/service-request-components", responses=ok(Items),
            summary="附加组件 a request type can add: shipping, return / exchange, quality, complaint")
async def list_request_components(svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_request_components")


@router.patch("/service-requests/{request_id}/components", responses=ok(RequestOut),
              summary="Fill in or change add-on components (e.g. the tracking number once shipped)")
async def update_service_request_components(request_id: uuid.UUID, body: ComponentsIn,
                                            svc: Services = Depends(services)):
    return await svc.reply("tickets", "update_service_request_components", request_id=request_id,
                           components=_body(body))


@router.post("/service-requests/{request_id}/assign", responses=ok(RequestOut))
async def assign_service_request(request_id: uuid.UUID, body: RequestAssignIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "assign_service_request", request_id=request_id, assignment=_body(body))


@router.post("/service-requests/{request_id}/start", responses=ok(RequestOut))
async def start_service_request(request_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "start_service_request", request_id=request_id)


@router.post("/service-requests/{request_id}/pause", responses=ok(RequestOut))
async def pause_service_request(request_id: uuid.UUID, body: RequestReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "pause_service_request", request_id=request_id, pause=_body(body))


@router.post("/service-requests/{request_id}/resume", responses=ok(RequestOut))
async def resume_service_request(request_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "resume_service_request", request_id=request_id)


@router.post("/service-requests/{request_id}/complete", responses=ok(RequestOut))
async def complete_service_request(request_id: uuid.UUID, body: RequestCompleteIn | None = None,
                                   svc: Services = Depends(services)):
    return await svc.reply("tickets", "complete_service_request", request_id=request_id, completion=_body(body))


@router.post("/service-requests/{request_id}/cancel", responses=ok(RequestOut))
async def cancel_service_request(request_id: uuid.UUID, body: RequestReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "cancel_service_request", request_id=request_id, cancellation=_body(body))


@router.post("/service-requests/{request_id}/reopen", responses=ok(RequestOut),
             summary="退回事件: a done request back to not-done (when the settings allow it)")
async def reopen_service_request(request_id: uuid.UUID, body: RequestReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "reopen_service_request", request_id=request_id, reopening=_body(body))


@router.post("/service-requests/{request_id}/approval", responses=ok(RequestOut), summary="Ask for approval (审批)")
async def request_approval(request_id: uuid.UUID, body: OptionalNoteIn | None = None,
                           svc: Services = Depends(services)):
    return await svc.reply("tickets", "request_service_request_approval", request_id=request_id,
                           approval=_body(body))


@router.post("/service-requests/{request_id}/approval/approve", responses=ok(RequestOut))
async def approve_request(request_id: uuid.UUID, body: OptionalNoteIn | None = None,
                          svc: Services = Depends(services)):
    return await svc.reply("tickets", "decide_service_request_approval", request_id=request_id, approve=True,
                           decision=_body(body))


@router.post("/service-requests/{request_id}/approval/reject", responses=ok(RequestOut))
async def reject_request(request_id: uuid.UUID, body: OptionalNoteIn | None = None,
                         svc: Services = Depends(services)):
    return await svc.reply("tickets", "decide_service_request_approval", request_id=request_id, approve=False,
                           decision=_body(body))


@router.post("/service-requests/{request_id}/convert", status_code=201, responses=ok(Converted, 201),
             summary="服务事件转工单: a work order linked both ways, attachments carried over")
async def convert_service_request(request_id: uuid.UUID, body: ConvertIn | None = None,
                                  svc: Services = Depends(services)):
    return await svc.reply("tickets", "convert_service_request", status_code=201, request_id=request_id,
                           conversion=_body(body))


@router.get("/work-orders/{ticket_id}/service-request", responses=ok(RequestOut),
            summary="The service request a work order came from")
async def get_work_order_service_request(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_ticket_service_request", ticket_id=ticket_id)


# -- back-filled service records (补录) --------------------------------------------------------------------

@router.post("/service-records", status_code=201, responses=ok(ServiceRecordOut, 201),
             summary="补录: work done before it was recorded; waits for verification")
async def submit_service_record(body: ServiceRecordIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "submit_service_record", status_code=201, record=_body(body))


@router.get("/service-records", responses=ok(Page[ServiceRecordOut]))
async def list_service_records(status: Literal["pending", "verified", "rejected"] | None = None,
                               customer_id: uuid.UUID | None = None, equipment_id: uuid.UUID | None = None,
                               offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_service_records", status=status, customer_id=customer_id,
                           equipment_id=equipment_id, offset=offset, limit=limit)


@router.post("/service-records/{record_id}/verify", responses=ok(ServiceRecordOut))
async def verify_service_record(record_id: uuid.UUID, body: OptionalNoteIn | None = None,
                                svc: Services = Depends(services)):
    return await svc.reply("tickets", "verify_service_record", record_id=record_id, approve=True,
                           verification=_body(body))


@router.post("/service-records/{record_id}/reject", responses=ok(ServiceRecordOut))
async def reject_service_record(record_id: uuid.UUID, body: OptionalNoteIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "verify_service_record", record_id=record_id, approve=False,
                           verification=_body(body))
