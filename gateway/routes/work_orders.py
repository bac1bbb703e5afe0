"""Work orders (tickets service): create, dispatch, field execution, timeline."""
import uuid

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from tickets.schemas import AssignIn, CheckInIn, ReceiptIn, TicketIn, TicketOut, TimelineOut

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok


class Timeline(BaseModel):
    items: list[TimelineOut]


router = APIRouter(responses=ERRORS, tags=["work orders"])


@router.post("/work-orders", status_code=201, responses=ok(TicketOut, 201))
async def create_work_order(body: TicketIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_ticket", status_code=201, ticket=body.model_dump(mode="json"))


@router.get("/work-orders", responses=ok(Page[TicketOut]))
async def list_work_orders(status: str | None = None, assignee_id: uuid.UUID | None = None,
                           customer_id: uuid.UUID | None = None, offset: Offset = 0, limit: Limit = 50,
                           svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_tickets", status=status, assignee_id=assignee_id, customer_id=customer_id,
                           offset=offset, limit=limit)


@router.get("/work-orders/{ticket_id}", responses=ok(TicketOut))
async def get_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_ticket", ticket_id=ticket_id)


@router.get("/work-orders/{ticket_id}/timeline", responses=ok(Timeline))
async def get_work_order_timeline(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_timeline", ticket_id=ticket_id)


@router.post("/work-orders/{ticket_id}/assign", responses=ok(TicketOut))
async def assign_work_order(ticket_id: uuid.UUID, body: AssignIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "assign_ticket", ticket_id=ticket_id, assignment=body.model_dump(mode="json"))


@router.post("/work-orders/{ticket_id}/accept", responses=ok(TicketOut))
async def accept_work_order(ticket_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "accept_ticket", ticket_id=ticket_id)


@router.post("/work-orders/{ticket_id}/check-in", responses=ok(TicketOut))
async def check_in_work_order(ticket_id: uuid.UUID, body: CheckInIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "check_in_ticket", ticket_id=ticket_id, position=body.model_dump(mode="json"))


@router.post("/work-orders/{ticket_id}/complete", responses=ok(TicketOut))
async def complete_work_order(ticket_id: uuid.UUID, body: ReceiptIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "complete_ticket", ticket_id=ticket_id, receipt=body.model_dump(mode="json"))
