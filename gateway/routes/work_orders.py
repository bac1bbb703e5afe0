"""Work orders (tickets service): create, list, dispatch in every mode, field execution, closing."""
import base64
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from tickets.schemas import (
    AssignIn, BatchAssignIn, BranchIn, CheckInIn, FieldsIn, FileIn, FileOut, GrabIn, IncompleteIn, NoteIn,
    OptionalReasonIn, OutsourceIn, PublishIn, ReasonIn, ReassignIn, ReceiptIn, SettleIn, TicketIn, TicketOut,
    TimelineOut, UnitIn, VisitIn,
)

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok


class Timeline(BaseModel):
    items: list[TimelineOut]
    state_seconds: dict[str, float] = {}


class Batch(BaseModel):
    items: list[TicketOut]


router = APIRouter(responses=ERRORS, tags=["work orders"])


def _body(model: BaseModel | None) -> dict | None:
    return model.model_dump(mode="json") if model is not None else None


@router.post("/work-orders", status_code=201, responses=ok(TicketOut, 201))
async def create_work_order(body: TicketIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_ticket", status_code=201, ticket=body.model_dump(mode="json"))


@router.get("/work-orders", responses=ok(Page[TicketOut]),
            summary="Filtered, paginated list (待派单/已派单/已接单/处理中/异常工单, mine, created by me, 协同)")
async def list_work_orders(
        status: str | None = Query(None, description="one status or several, comma-separated"),
        assignee_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
        type: str | None = None, priority: str | None = None, team_id: uuid.UUID | None = None,
        branch_id: uuid.UUID | None = Query(None, description="this branch and its sub-branches"),
        scope: Literal["mine", "created", "collaborating"] | None = None,
        exceptions: bool = Query(False, description="overdue or checked in beyond the radius (异常工单)"),
        pool: bool = Query(False, description="orders in the grab pool I may grab"),
        reassignment_pending: bool = Query(False, description="reassignment requests awaiting a decision (待审批改派)"),
        q: str | None = Query(None, max_length=100, description="order number or customer name"),
        sort: str = Query("-created_at", description="created_at, updated_at, number, priority, complete_due_at; "
                                                     "- for descending"),
        offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_tickets", status=status, assignee_id=assignee_id, customer_id=customer_id,
                           type=type, priority=priority, team_id=team_id, branch_id=branch_id, scope=scope,
                           exceptions=exceptions, pool=pool, q=q, sort=sort, offset=offset, limit=limit,
                           reassignment_pending=reassignment_pending)


@router.post("/work-orders/batch-assign", responses=ok(Batch),
             summary="批量派工: many orders to one technician or one sub-branch (all or none)")
async def batch_assign_work_orders(body: BatchAssignIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "batch_assign_tickets", assignment=_body(body))


@router.get("/work-orders/{ticket_id}", responses=ok(TicketOut))
async def get_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_ticket", ticket_id=ticket_id)


@router.get("/work-orders/{ticket_id}/timeline", responses=ok(Timeline),
            summary="Progress (进度跟踪) and time spent per state (用时记录)")
async def get_work_order_timeline(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_timeline", ticket_id=ticket_id)


@router.patch("/work-orders/{ticket_id}/fields", responses=ok(TicketOut), summary="Change custom field values")
async def update_work_order_fields(ticket_id: uuid.UUID, body: FieldsIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "update_ticket_fields", ticket_id=ticket_id, fields=_body(body))


# -- dispatch --------------------------------------------------------------------------------------

@router.post("/work-orders/{ticket_id}/assign", responses=ok(TicketOut),
             summary="Assign to a primary technician plus assistants (协同人)")
async def assign_work_order(ticket_id: uuid.UUID, body: AssignIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "assign_ticket", ticket_id=ticket_id, assignment=_body(body))


@router.post("/work-orders/{ticket_id}/reassign", responses=ok(TicketOut), summary="转派 with a reason")
async def reassign_work_order(ticket_id: uuid.UUID, body: ReassignIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "reassign_ticket", ticket_id=ticket_id, assignment=_body(body))


@router.post("/work-orders/{ticket_id}/auto-dispatch", responses=ok(TicketOut),
             summary="Dispatch by the tenant's rules (skill, area, team, nearest, least open, round robin)")
async def auto_dispatch_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "auto_dispatch_ticket", ticket_id=ticket_id)


@router.post("/work-orders/{ticket_id}/publish", responses=ok(TicketOut), summary="Publish to the grab pool (工单池)")
async def publish_work_order(ticket_id: uuid.UUID, body: PublishIn | None = None, svc: Services = Depends(services)):
    return await svc.reply("tickets", "publish_ticket", ticket_id=ticket_id, publication=_body(body))


@router.post("/work-orders/{ticket_id}/grab", responses=ok(TicketOut), summary="抢单: the first grab wins, others 409")
async def grab_work_order(ticket_id: uuid.UUID, body: GrabIn | None = None, svc: Services = Depends(services)):
    return await svc.reply("tickets", "grab_ticket", ticket_id=ticket_id, grab=_body(body))


@router.post("/work-orders/{ticket_id}/accept", responses=ok(TicketOut))
async def accept_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "accept_ticket", ticket_id=ticket_id)


@router.post("/work-orders/{ticket_id}/refuse", responses=ok(TicketOut), summary="拒单, back to the queue")
async def refuse_work_order(ticket_id: uuid.UUID, body: ReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "refuse_ticket", ticket_id=ticket_id, refusal=_body(body))


@router.post("/work-orders/{ticket_id}/dispatch-to-branch", responses=ok(TicketOut),
             summary="Pass the order down to a branch (网点) queue")
async def dispatch_work_order_to_branch(ticket_id: uuid.UUID, body: BranchIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "dispatch_ticket_to_branch", ticket_id=ticket_id, dispatch=_body(body))


@router.post("/work-orders/{ticket_id}/reassignment-request", responses=ok(TicketOut),
             summary="申请改派: the branch asks its parent to take the order back")
async def request_work_order_reassignment(ticket_id: uuid.UUID, body: ReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "request_reassignment", ticket_id=ticket_id, request=_body(body))


@router.post("/work-orders/{ticket_id}/reassignment-request/approve", responses=ok(TicketOut))
async def approve_work_order_reassignment(ticket_id: uuid.UUID, body: OptionalReasonIn | None = None,
                                          svc: Services = Depends(services)):
    return await svc.reply("tickets", "approve_reassignment", ticket_id=ticket_id, decision=_body(body))


@router.post("/work-orders/{ticket_id}/reassignment-request/reject", responses=ok(TicketOut), summary="驳回")
async def reject_work_order_reassignment(ticket_id: uuid.UUID, body: ReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "reject_reassignment", ticket_id=ticket_id, decision=_body(body))


@router.post("/work-orders/{ticket_id}/outsource", responses=ok(TicketOut), summary="委外 to an external team")
async def outsource_work_order(ticket_id: uuid.UUID, body: OutsourceIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "outsource_ticket", ticket_id=ticket_id, outsourcing=_body(body))


@router.post("/work-orders/{ticket_id}/outsource/accept", responses=ok(TicketOut))
async def accept_outsourced_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "answer_outsource", ticket_id=ticket_id, accept=True)


@router.post("/work-orders/{ticket_id}/outsource/decline", responses=ok(TicketOut))
async def decline_outsourced_work_order(ticket_id: uuid.UUID, body: ReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "answer_outsource", ticket_id=ticket_id, accept=False, reason=body.reason)


# -- field execution --------------------------------------------------------------------------------

@router.post("/work-orders/{ticket_id}/check-in", responses=ok(TicketOut), summary="签到 with GPS and accuracy")
async def check_in_work_order(ticket_id: uuid.UUID, body: CheckInIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "check_in_ticket", ticket_id=ticket_id, position=_body(body))


@router.post("/work-orders/{ticket_id}/pause", responses=ok(TicketOut))
async def pause_work_order(ticket_id: uuid.UUID, body: OptionalReasonIn | None = None,
                           svc: Services = Depends(services)):
    return await svc.reply("tickets", "pause_ticket", ticket_id=ticket_id, pause=_body(body))


@router.post("/work-orders/{ticket_id}/resume", responses=ok(TicketOut))
async def resume_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "resume_ticket", ticket_id=ticket_id)


@router.post("/work-orders/{ticket_id}/files", status_code=201, responses=ok(FileOut, 201),
             summary="Upload a photo, file or signature image (base64) for the receipt")
async def upload_work_order_file(ticket_id: uuid.UUID, body: FileIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "upload_ticket_file", status_code=201, ticket_id=ticket_id, file=_body(body))


@router.get("/work-orders/{ticket_id}/files/{file_id}", response_class=Response, responses={200: {
    "description": "the file's bytes, with its content type",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def download_work_order_file(ticket_id: uuid.UUID, file_id: uuid.UUID, svc: Services = Depends(services)):
    found = await svc.call("tickets", "get_ticket_file", ticket_id=ticket_id, file_id=file_id)
    return Response(base64.b64decode(found["content_base64"]), media_type=found["content_type"])


@router.post("/work-orders/{ticket_id}/units", responses=ok(TicketOut),
             summary="数据采集: save one unit's barcodes, serials and photos; then the next, then complete")
async def save_work_order_unit(ticket_id: uuid.UUID, body: UnitIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "save_ticket_unit", ticket_id=ticket_id, unit=_body(body))


@router.post("/work-orders/{ticket_id}/feedback", responses=ok(TicketOut),
             summary="过程反馈: note a special situation on the order's timeline")
async def add_work_order_feedback(ticket_id: uuid.UUID, body: NoteIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "add_ticket_feedback", ticket_id=ticket_id, feedback=_body(body))


@router.post("/work-orders/{ticket_id}/incomplete", responses=ok(TicketOut),
             summary="未完成: the visit ends unfinished, with a reason and the next visit time")
async def report_work_order_incomplete(ticket_id: uuid.UUID, body: IncompleteIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "report_incomplete", ticket_id=ticket_id, report=_body(body))


@router.post("/work-orders/{ticket_id}/complete", responses=ok(TicketOut),
             summary="回执: notes, photos, signature, per-unit data, parts and service items")
async def complete_work_order(ticket_id: uuid.UUID, body: ReceiptIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "complete_ticket", ticket_id=ticket_id, receipt=_body(body))


# -- after completion -------------------------------------------------------------------------------

@router.post("/work-orders/{ticket_id}/approve", responses=ok(TicketOut), summary="审核 a completion")
async def approve_work_order(ticket_id: uuid.UUID, body: OptionalReasonIn | None = None,
                             svc: Services = Depends(services)):
    return await svc.reply("tickets", "approve_ticket", ticket_id=ticket_id, approval=_body(body))


@router.post("/work-orders/{ticket_id}/settle", responses=ok(TicketOut), summary="结算: fees and costs")
async def settle_work_order(ticket_id: uuid.UUID, body: SettleIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "settle_ticket", ticket_id=ticket_id, settlement=_body(body))


@router.post("/work-orders/{ticket_id}/visit", responses=ok(TicketOut), summary="回访 with satisfaction")
async def visit_work_order(ticket_id: uuid.UUID, body: VisitIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "visit_ticket", ticket_id=ticket_id, visit=_body(body))


@router.post("/work-orders/{ticket_id}/close", responses=ok(TicketOut))
async def close_work_order(ticket_id: uuid.UUID, body: OptionalReasonIn | None = None,
                           svc: Services = Depends(services)):
    return await svc.reply("tickets", "close_ticket", ticket_id=ticket_id, closing=_body(body))


@router.post("/work-orders/{ticket_id}/cancel", responses=ok(TicketOut))
async def cancel_work_order(ticket_id: uuid.UUID, body: ReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "cancel_ticket", ticket_id=ticket_id, cancellation=_body(body))


@router.post("/work-orders/{ticket_id}/reopen", responses=ok(TicketOut))
async def reopen_work_order(ticket_id: uuid.UUID, body: ReasonIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "reopen_ticket", ticket_id=ticket_id, reopening=_body(body))
