"""Equipment, product templates, service history, reminder rules and fault reports (customers service)."""
import base64
import datetime as dt
import uuid
from typing import Literal

from customers.schemas import (
    EquipmentOut,
    EquipmentPatch,
    FaultReportOut,
    HistoryOut,
    ProductTemplateIn,
    ProductTemplateOut,
    ProductTemplatePatch,
    ReminderRuleIn,
    ReminderRuleOut,
)
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok

router = APIRouter(responses=ERRORS, tags=["equipment"])

ReminderKind = Literal["warranty_expiring", "maintenance_due", "maintenance_overdue", "inspection_due",
                       "inspection_overdue"]


class WorkOrderFromEquipmentIn(BaseModel):
    """A work order for this equipment: customer, contact and install address are filled from it."""
    type: str = "repair"
    description: str = Field(min_length=1, max_length=2000)


@router.get("/equipment", responses=ok(ItemList[EquipmentOut]),
            summary="Equipment, filtered; maintenance_before / warranty_before find what falls due")
async def list_equipment(customer_id: uuid.UUID | None = None,
                         status: Literal["active", "inactive", "scrapped"] | None = None, q: str | None = None,
                         maintenance_before: dt.date | None = None, warranty_before: dt.date | None = None,
                         offset: Offset = 0, limit: Limit = 200, svc: Services = Depends(services)):
    return await svc.reply("customers", "list_equipment", customer_id=customer_id, status=status, q=q,
                           maintenance_before=maintenance_before.isoformat() if maintenance_before else None,
                           warranty_before=warranty_before.isoformat() if warranty_before else None,
                           offset=offset, limit=limit)


@router.get("/equipment/{equipment_id}", responses=ok(EquipmentOut))
async def get_equipment(equipment_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_equipment", equipment_id=equipment_id)


@router.patch("/equipment/{equipment_id}", responses=ok(EquipmentOut))
async def update_equipment(equipment_id: uuid.UUID, body: EquipmentPatch, svc: Services = Depends(services)):
    return await svc.reply("customers", "update_equipment", equipment_id=equipment_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))


@router.get("/equipment/{equipment_id}/history", responses=ok(ItemList[HistoryOut]),
            summary="Service history: the work orders of this equipment, newest first")
async def equipment_history(equipment_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_equipment_history", equipment_id=equipment_id)


@router.post("/equipment/{equipment_id}/work-orders", status_code=201,
             summary="Create a work order from equipment: customer, contact and install address come from it")
async def work_order_from_equipment(equipment_id: uuid.UUID, body: WorkOrderFromEquipmentIn,
                                    svc: Services = Depends(services)):
    equipment = await svc.call("customers", "get_equipment", equipment_id=equipment_id)
    return await svc.reply("tickets", "create_ticket", status_code=201, ticket={
        "type": body.type, "description": body.description, "customer_id": equipment["customer_id"],
        "equipment_id": equipment["id"]})


# -- product templates ------------------------------------------------------------------------
@router.post("/product-templates", status_code=201, responses=ok(ProductTemplateOut, 201))
async def create_template(body: ProductTemplateIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "create_product_template", status_code=201,
                           template=body.model_dump(mode="json"))


@router.get("/product-templates", responses=ok(ItemList[ProductTemplateOut]))
async def list_templates(q: str | None = None, svc: Services = Depends(services)):
    return await svc.reply("customers", "list_product_templates", q=q)


@router.get("/product-templates/{template_id}", responses=ok(ProductTemplateOut))
async def get_template(template_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_product_template", template_id=template_id)


@router.patch("/product-templates/{template_id}", responses=ok(ProductTemplateOut))
async def update_template(template_id: uuid.UUID, body: ProductTemplatePatch, svc: Services = Depends(services)):
    return await svc.reply("customers", "update_product_template", template_id=template_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))


# -- reminders (预警) ---------------------------------------------------------------------------
@router.get("/reminder-rules", responses=ok(ItemList[ReminderRuleOut]),
            summary="Warranty / maintenance due and overdue rules (defaults until changed)")
async def list_reminder_rules(svc: Services = Depends(services)):
    result = await svc.call("customers", "list_reminder_rules")
    return JSONResponse({"items": result["items"], "total": len(result["items"])})


@router.put("/reminder-rules/{kind}", responses=ok(ReminderRuleOut),
            summary="days: before the date (after it, for overdue); auto_create_order asks tickets for the order")
async def set_reminder_rule(kind: ReminderKind, body: ReminderRuleIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "set_reminder_rule", kind=kind, rule=body.model_dump())


# -- fault reports from the public scan page --------------------------------------------------
@router.get("/fault-reports", responses=ok(Page[FaultReportOut]),
            summary="Faults customers reported by scanning an equipment's QR code, newest first")
async def list_fault_reports(equipment_id: uuid.UUID | None = None, offset: Offset = 0, limit: Limit = 50,
                             svc: Services = Depends(services)):
    return await svc.reply("customers", "list_fault_reports", equipment_id=equipment_id, offset=offset, limit=limit)


@router.get("/fault-reports/{report_id}/photo", responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
async def fault_photo(report_id: uuid.UUID, svc: Services = Depends(services)):
    result = await svc.call("customers", "get_fault_photo", report_id=report_id)
    return Response(base64.b64decode(result["content_base64"]), media_type=result["media_type"])
