"""Warehouses, parts, stock, requisitions, personal stock, the ledger (inventory service)."""
import uuid

from fastapi import APIRouter, Body, Depends
from inventory.schemas import (
    ApprovalIn,
    LocationOut,
    MoveOut,
    PartIn,
    PartOut,
    ReceiveIn,
    RejectIn,
    RequisitionIn,
    RequisitionOut,
    ShortfallOut,
    StockOut,
    WarehouseIn,
)

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok

router = APIRouter(responses=ERRORS, tags=["spare parts"])


@router.post("/warehouses", status_code=201, responses=ok(LocationOut, 201))
async def create_warehouse(body: WarehouseIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_warehouse", status_code=201, warehouse=body.model_dump(mode="json"))


@router.get("/warehouses", responses=ok(ItemList[LocationOut]))
async def list_warehouses(svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_warehouses")


@router.get("/warehouses/{warehouse_id}/stock", responses=ok(StockOut))
async def warehouse_stock(warehouse_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_stock", location_id=warehouse_id)


@router.post("/warehouses/{warehouse_id}/stock-in", status_code=201, responses=ok(list[MoveOut], 201))
async def stock_in(warehouse_id: uuid.UUID, body: ReceiveIn, svc: Services = Depends(services)):
    data = body.model_dump(mode="json")
    return await svc.reply("inventory", "receive_stock", status_code=201, warehouse_id=warehouse_id,
                           lines=data["lines"], note=data["note"])


@router.post("/parts", status_code=201, responses=ok(PartOut, 201))
async def create_part(body: PartIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_part", status_code=201, part=body.model_dump(mode="json"))


@router.get("/parts", responses=ok(ItemList[PartOut]))
async def list_parts(svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_parts")


@router.post("/requisitions", status_code=201, responses=ok(RequisitionOut, 201))
async def request_requisition(body: RequisitionIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "request_requisition", status_code=201,
                           requisition=body.model_dump(mode="json"))


@router.get("/requisitions", responses=ok(Page[RequisitionOut]))
async def list_requisitions(status: str | None = None, technician_id: uuid.UUID | None = None, offset: Offset = 0,
                            limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_requisitions", status=status, technician_id=technician_id,
                           offset=offset, limit=limit)


@router.get("/requisitions/{requisition_id}", responses=ok(RequisitionOut))
async def get_requisition(requisition_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_requisition", requisition_id=requisition_id)


@router.post("/requisitions/{requisition_id}/approve", responses=ok(RequisitionOut))
async def approve_requisition(requisition_id: uuid.UUID, body: ApprovalIn | None = Body(None),
                              svc: Services = Depends(services)):
    lines = body.model_dump(mode="json")["lines"] if body else None
    return await svc.reply("inventory", "approve_requisition", requisition_id=requisition_id, lines=lines)


@router.post("/requisitions/{requisition_id}/reject", responses=ok(RequisitionOut))
async def reject_requisition(requisition_id: uuid.UUID, body: RejectIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "reject_requisition", requisition_id=requisition_id, reason=body.reason)


@router.get("/technicians/{technician_id}/stock", summary="A technician's personal stock (个人备件库); 'me' for yours", responses=ok(StockOut))
async def personal_stock(technician_id: str, svc: Services = Depends(services)):
    tech = svc.principal.user_id if technician_id == "me" else technician_id
    return await svc.reply("inventory", "get_personal_stock", technician_id=tech)


@router.get("/stock-moves", summary="The stock ledger, filtered by document, part or location", responses=ok(Page[MoveOut]))
async def list_moves(ref_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                     location_id: uuid.UUID | None = None, offset: Offset = 0, limit: Limit = 100,
                     svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_moves", ref_id=ref_id, part_id=part_id, location_id=location_id,
                           offset=offset, limit=limit)


@router.get("/consumption-shortfalls", responses=ok(ItemList[ShortfallOut]))
async def list_shortfalls(svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_shortfalls")
