"""Spare-parts reports and their export (inventory service): stock by warehouse and part, movement
history, personal holdings, consumption by work order / customer / technician / part / period."""
import datetime as dt
import uuid
from typing import Literal

from fastapi import APIRouter, Depends

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok
from .parts import FILE_RESPONSE, FileFormat, file_response

router = APIRouter(responses=ERRORS, tags=["spare parts reports"])

GroupBy = Literal["work_order", "customer", "technician", "part", "day", "month"]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


@router.get("/inventory/reports/stock", responses=ok(Page[dict]),
            summary="Stock by warehouse and part (or by_part: summed over the warehouses in scope), with value at "
                    "cost; a warehouse includes those below it")
async def stock_report(warehouse_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                       category_id: uuid.UUID | None = None, below_minimum: bool = False,
                       include_children: bool = True, by_part: bool = False, offset: Offset = 0, limit: Limit = 100,
                       svc: Services = Depends(services)):
    return await svc.reply("inventory", "stock_report", warehouse_id=warehouse_id, part_id=part_id,
                           category_id=category_id, below_minimum=below_minimum, include_children=include_children,
                           by_part=by_part, offset=offset, limit=limit)


@router.get("/inventory/reports/stock/export", responses=FILE_RESPONSE)
async def export_stock_report(format: FileFormat = "xlsx", warehouse_id: uuid.UUID | None = None,
                              part_id: uuid.UUID | None = None, category_id: uuid.UUID | None = None,
                              below_minimum: bool = False, by_part: bool = False, svc: Services = Depends(services)):
    filters = {"warehouse_id": warehouse_id and str(warehouse_id), "part_id": part_id and str(part_id),
               "category_id": category_id and str(category_id), "below_minimum": below_minimum, "by_part": by_part}
    return file_response(await svc.call("inventory", "export_report", report="stock", format=format, filters=filters))


@router.get("/inventory/reports/personal-holdings", responses=ok(Page[dict]),
            summary="What every technician holds (managers); a technician sees their own")
async def personal_holdings(technician_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                            offset: Offset = 0, limit: Limit = 100, svc: Services = Depends(services)):
    return await svc.reply("inventory", "personal_holdings", technician_id=technician_id, part_id=part_id,
                           offset=offset, limit=limit)


@router.get("/inventory/reports/personal-holdings/export", responses=FILE_RESPONSE)
async def export_personal_holdings(format: FileFormat = "xlsx", technician_id: uuid.UUID | None = None,
                                   part_id: uuid.UUID | None = None, svc: Services = Depends(services)):
    filters = {"technician_id": technician_id and str(technician_id), "part_id": part_id and str(part_id)}
    return file_response(await svc.call("inventory", "export_report", report="personal", format=format,
                                        filters=filters))


@router.get("/inventory/reports/consumption", responses=ok(ItemList[dict]),
            summary="Net parts consumed on work orders (reversals deducted), quantity and cost value, grouped")
async def consumption_report(group_by: GroupBy = "work_order", date_from: dt.datetime | None = None,
                             date_to: dt.datetime | None = None, technician_id: uuid.UUID | None = None,
                             customer_id: uuid.UUID | None = None, svc: Services = Depends(services)):
    return await svc.reply("inventory", "consumption_report", group_by=group_by, date_from=_iso(date_from),
                           date_to=_iso(date_to), technician_id=technician_id, customer_id=customer_id)


@router.get("/inventory/reports/consumption/export", responses=FILE_RESPONSE)
async def export_consumption_report(format: FileFormat = "xlsx", group_by: GroupBy = "work_order",
                                    date_from: dt.datetime | None = None, date_to: dt.datetime | None = None,
                                    technician_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
                                    svc: Services = Depends(services)):
    filters = {"group_by": group_by, "date_from": _iso(date_from), "date_to": _iso(date_to),
               "technician_id": technician_id and str(technician_id), "customer_id": customer_id and str(customer_id)}
    return file_response(await svc.call("inventory", "export_report", report="consumption", format=format,
                                        filters=filters))


@router.get("/inventory/reports/moves/export", responses=FILE_RESPONSE,
            summary="The ledger (as GET /stock-moves, same filters) as a file")
async def export_moves(format: FileFormat = "xlsx", ref_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                       location_id: uuid.UUID | None = None, kind: str | None = None,
                       technician_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
                       date_from: dt.datetime | None = None, date_to: dt.datetime | None = None,
                       svc: Services = Depends(services)):
    filters = {"ref_id": ref_id, "part_id": part_id, "location_id": location_id, "kind": kind,
               "technician_id": technician_id, "customer_id": customer_id}
    filters = {k: v and str(v) for k, v in filters.items()} | {"date_from": _iso(date_from), "date_to": _iso(date_to)}
    return file_response(await svc.call("inventory", "export_report", report="moves", format=format,
                                        filters=filters))
