"""Work-order settings (工单设置): types with their forms and flows, SLA and working hours,
check-in radius, automatic dispatch rules; and technicians' position pings."""
from fastapi import APIRouter, Depends
from pydantic import BaseModel
from tickets.schemas import (
    PositionIn, ReorderIn, SettingsIn, SettingsOut, TicketTypeIn, TicketTypeOut, TicketTypePatch,
)

from ..deps import Services, services
from ..problems import ERRORS, ok


class Types(BaseModel):
    items: list[TicketTypeOut]


router = APIRouter(responses=ERRORS, tags=["work-order settings"])


@router.get("/work-order-types", responses=ok(Types), summary="Types in display order")
async def list_work_order_types(enabled_only: bool = False, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_ticket_types", enabled_only=enabled_only)


@router.post("/work-order-types", status_code=201, responses=ok(TicketTypeOut, 201))
async def create_work_order_type(body: TicketTypeIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_ticket_type", status_code=201, ticket_type=body.model_dump(mode="json"))


@router.put("/work-order-types/order", responses=ok(Types), summary="Reorder types (codes in the new order)")
async def reorder_work_order_types(body: ReorderIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "reorder_ticket_types", order=body.model_dump(mode="json"))


@router.patch("/work-order-types/{code}", responses=ok(TicketTypeOut),
              summary="Rename, enable/disable, change fields, flow switches or team visibility")
async def update_work_order_type(code: str, body: TicketTypePatch, svc: Services = Depends(services)):
    return await svc.reply("tickets", "update_ticket_type", code=code,
                           changes=body.model_dump(mode="json", exclude_unset=True))


@router.get("/work-order-settings", responses=ok(SettingsOut))
async def get_work_order_settings(svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_ticket_settings")


@router.patch("/work-order-settings", responses=ok(SettingsOut))
async def update_work_order_settings(body: SettingsIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "update_ticket_settings", settings=body.model_dump(mode="json"))


@router.post("/technicians/me/position", summary="Position ping from the technician's app (and on/off duty)")
async def record_my_position(body: PositionIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "record_position", position=body.model_dump(mode="json"))
