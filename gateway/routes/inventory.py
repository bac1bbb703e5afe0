"""Warehouses, stock, requisitions and returns, transfers, personal stock, old parts, the ledger
(inventory service)."""
import datetime as dt
import uuid

from fastapi import APIRouter, Body, Depends
from inventory.schemas import (
    ApprovalIn,
    IssueIn,
    LocationOut,
    MoveOut,
    OldPartOut,
    OldPartReturnIn,
    PartQuantityIn,
    ReceiveIn,
    RejectIn,
    RequisitionIn,
    RequisitionOut,
    ResolveIn,
    ReturnIn,
    SettingsIn,
    SettingsOut,
    ShortfallOut,
    StockOut,
    StocktakeIn,
    TransferIn,
    TransferOut,
    TransferReceiveIn,
    WarehouseIn,
    WarehouseUpdateIn,
)
from pydantic import BaseModel

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok

router = APIRouter(responses=ERRORS, tags=["spare parts"])


class LedgerCheck(BaseModel):
    balances: int
    moves: int
    agree: bool
    mismatches: list[dict]


class Availability(BaseModel):
    available: bool
    shortfalls: list[dict]


# --- settings ---------------------------------------------------------------------------------------

@router.get("/inventory-settings", responses=ok(SettingsOut))
async def get_inventory_settings(svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_settings")


@router.put("/inventory-settings", responses=ok(SettingsOut),
            summary="Per-company switches (allow_negative_stock: off by default; administrators only)")
async def update_inventory_settings(body: SettingsIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "update_settings", settings=body.model_dump(mode="json"))


# --- warehouses and their stock -----------------------------------------------------------------------

@router.post("/warehouses", status_code=201, responses=ok(LocationOut, 201),
             summary="A warehouse; parent_id nests it (headquarters → regional → office)")
async def create_warehouse(body: WarehouseIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_warehouse", status_code=201, warehouse=body.model_dump(mode="json"))


@router.get("/warehouses", responses=ok(ItemList[LocationOut]),
            summary="Warehouses you see: a warehouse manager the ones they manage and those below them")
async def list_warehouses(svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_warehouses")


@router.patch("/warehouses/{warehouse_id}", responses=ok(LocationOut))
async def update_warehouse(warehouse_id: uuid.UUID, body: WarehouseUpdateIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "update_warehouse", warehouse_id=warehouse_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))


@router.get("/warehouses/{warehouse_id}/stock", responses=ok(StockOut))
async def warehouse_stock(warehouse_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_stock", location_id=warehouse_id)


@router.post("/warehouses/{warehouse_id}/stock-in", status_code=201, responses=ok(list[MoveOut], 201),
             summary="Inbound (入库)")
async def stock_in(warehouse_id: uuid.UUID, body: ReceiveIn, svc: Services = Depends(services)):
    data = body.model_dump(mode="json")
    return await svc.reply("inventory", "receive_stock", status_code=201, warehouse_id=warehouse_id,
                           lines=data["lines"], note=data["note"])


@router.post("/warehouses/{warehouse_id}/stock-out", status_code=201, responses=ok(list[MoveOut], 201),
             summary="Outbound (出库) with its reason; all lines or none (409 naming the line short of stock)")
async def stock_out(warehouse_id: uuid.UUID, body: IssueIn, svc: Services = Depends(services)):
    data = body.model_dump(mode="json")
    return await svc.reply("inventory", "issue_stock", status_code=201, warehouse_id=warehouse_id,
                           lines=data["lines"], note=data["note"])


@router.post("/warehouses/{warehouse_id}/stocktake", status_code=201, responses=ok(ItemList[MoveOut], 201),
             summary="A stock count (盘点): each difference to the books becomes an adjustment entry")
async def stocktake(warehouse_id: uuid.UUID, body: StocktakeIn, svc: Services = Depends(services)):
    data = body.model_dump(mode="json")
    return await svc.reply("inventory", "stocktake", status_code=201, warehouse_id=warehouse_id,
                           lines=data["lines"], note=data["note"])


# --- the ledger ---------------------------------------------------------------------------------------

@router.get("/stock-moves", summary="The stock ledger (出入库记录) with filters", responses=ok(Page[MoveOut]))
async def list_moves(ref_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                     location_id: uuid.UUID | None = None, kind: str | None = None,
                     technician_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
                     date_from: dt.datetime | None = None, date_to: dt.datetime | None = None,
                     offset: Offset = 0, limit: Limit = 100, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_moves", ref_id=ref_id, part_id=part_id, location_id=location_id,
                           kind=kind, technician_id=technician_id, customer_id=customer_id,
                           date_from=date_from and date_from.isoformat(), date_to=date_to and date_to.isoformat(),
                           offset=offset, limit=limit)


@router.get("/stock-ledger/check", responses=ok(LedgerCheck),
            summary="Recompute every balance from the ledger and compare; `agree` must be true")
async def check_ledger(svc: Services = Depends(services)):
    return await svc.reply("inventory", "check_ledger")


# --- requisitions (申领) and returns (退回) -------------------------------------------------------------

@router.post("/requisitions", status_code=201, responses=ok(RequisitionOut, 201))
async def request_requisition(body: RequisitionIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "request_requisition", status_code=201,
                           requisition=body.model_dump(mode="json"))


@router.post("/stock-returns", status_code=201, responses=ok(RequisitionOut, 201),
             summary="Return (退回) parts from personal stock to a warehouse; approved or rejected like a "
                     "requisition (POST /requisitions/{id}/approve | reject)")
async def request_return(body: ReturnIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "request_return", status_code=201, stock_return=body.model_dump(mode="json"))


@router.get("/requisitions", responses=ok(Page[RequisitionOut]),
            summary="Requisitions and returns (kind=issue|return); technicians see theirs, managers their warehouses'")
async def list_requisitions(status: str | None = None, technician_id: uuid.UUID | None = None,
                            kind: str | None = None, warehouse_id: uuid.UUID | None = None, offset: Offset = 0,
                            limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_requisitions", status=status, technician_id=technician_id, kind=kind,
                           warehouse_id=warehouse_id, offset=offset, limit=limit)


@router.get("/requisitions/{requisition_id}", responses=ok(RequisitionOut))
async def get_requisition(requisition_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_requisition", requisition_id=requisition_id)


@router.post("/requisitions/{requisition_id}/approve", responses=ok(RequisitionOut),
             summary="Approve whole (no body) or partially (lines with approved_quantity)")
async def approve_requisition(requisition_id: uuid.UUID, body: ApprovalIn | None = Body(None),
                              svc: Services = Depends(services)):
    lines = body.model_dump(mode="json")["lines"] if body else None
    return await svc.reply("inventory", "approve_requisition", requisition_id=requisition_id, lines=lines)


@router.post("/requisitions/{requisition_id}/reject", responses=ok(RequisitionOut))
async def reject_requisition(requisition_id: uuid.UUID, body: RejectIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "reject_requisition", requisition_id=requisition_id, reason=body.reason)


# --- transfers (调拨) -----------------------------------------------------------------------------------

@router.post("/transfers", status_code=201, responses=ok(TransferOut, 201),
             summary="Ship parts between warehouses: they leave the source now and are in transit until received")
async def create_transfer(body: TransferIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_transfer", status_code=201, transfer=body.model_dump(mode="json"))


@router.get("/transfers", responses=ok(Page[TransferOut]))
async def list_transfers(status: str | None = None, warehouse_id: uuid.UUID | None = None, offset: Offset = 0,
                         limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_transfers", status=status, warehouse_id=warehouse_id, offset=offset,
                           limit=limit)


@router.get("/transfers/{transfer_id}", responses=ok(TransferOut))
async def get_transfer(transfer_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_transfer", transfer_id=transfer_id)


@router.post("/transfers/{transfer_id}/receive", responses=ok(TransferOut),
             summary="Receive everything in transit (no body) or the listed quantities (partial receipt)")
async def receive_transfer(transfer_id: uuid.UUID, body: TransferReceiveIn | None = Body(None),
                           svc: Services = Depends(services)):
    return await svc.reply("inventory", "receive_transfer", transfer_id=transfer_id,
                           receipt=body.model_dump(mode="json") if body else None)


# --- personal stock (个人备件库), shortfalls, old parts (旧件) ------------------------------------------------

@router.get("/technicians/{technician_id}/stock", summary="A technician's personal stock (个人备件库); 'me' for yours",
            responses=ok(StockOut))
async def personal_stock(technician_id: str, svc: Services = Depends(services)):
    tech = svc.principal.user_id if technician_id == "me" else technician_id
    return await svc.reply("inventory", "get_personal_stock", technician_id=tech)


@router.post("/technicians/{technician_id}/stock/check", responses=ok(Availability),
             summary="Does the personal stock hold these parts? (what tickets asks before completing an order)")
async def check_stock(technician_id: str, body: list[PartQuantityIn], svc: Services = Depends(services)):
    tech = svc.principal.user_id if technician_id == "me" else technician_id
    return await svc.reply("inventory", "check_stock_available", technician_id=tech,
                           parts=[line.model_dump(mode="json") for line in body])


@router.get("/consumption-shortfalls", responses=ok(ItemList[ShortfallOut]),
            summary="Parts a completed work order used beyond the technician's stock, for the warehouse manager")
async def list_shortfalls(status: str | None = None, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_shortfalls", status=status)


@router.post("/consumption-shortfalls/{shortfall_id}/resolve", responses=ok(ShortfallOut),
             summary="Close a shortfall once reconciled (the manager's note says how)")
async def resolve_shortfall(shortfall_id: uuid.UUID, body: ResolveIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "resolve_shortfall", shortfall_id=shortfall_id, resolution=body.resolution)


@router.get("/old-parts", responses=ok(Page[OldPartOut]),
            summary="Replaced parts (旧件) brought back from work orders: held by the technician until returned")
async def list_old_parts(status: str | None = None, technician_id: uuid.UUID | None = None, offset: Offset = 0,
                         limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_old_parts", status=status, technician_id=technician_id,
                           offset=offset, limit=limit)


@router.post("/old-parts/{old_part_id}/return", responses=ok(OldPartOut),
             summary="旧件返仓: the warehouse (typically a 不良品库) receives the old part")
async def return_old_part(old_part_id: uuid.UUID, body: OldPartReturnIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "return_old_part", old_part_id=old_part_id,
                           receipt=body.model_dump(mode="json"))
