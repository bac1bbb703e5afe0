"""Reports (reports service, read models built from events)."""
import datetime as dt
import uuid

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from reports.schemas import TechnicianDailyOut, WorkOrderSummaryOut

from ..deps import Services, services
from ..problems import ERRORS, ok


class Rebuilt(BaseModel):
    replayed: int


router = APIRouter(responses=ERRORS, tags=["reports"])


@router.get("/reports/technician-daily", responses=ok(TechnicianDailyOut))
async def technician_daily(date_from: dt.date, date_to: dt.date, technician_id: uuid.UUID | None = None,
                           tz: str = "Asia/Shanghai", svc: Services = Depends(services)):
    return await svc.reply("reports", "technician_daily", date_from=date_from.isoformat(),
                           date_to=date_to.isoformat(), technician_id=technician_id, tz=tz)


@router.get("/reports/work-orders-summary", responses=ok(WorkOrderSummaryOut))
async def work_order_summary(date_from: dt.date, date_to: dt.date, tz: str = "Asia/Shanghai",
                             svc: Services = Depends(services)):
    return await svc.reply("reports", "work_order_summary", date_from=date_from.isoformat(),
                           date_to=date_to.isoformat(), tz=tz)


@router.post("/reports/rebuild", summary="Rebuild your company's report read models by replaying its event archive", responses=ok(Rebuilt))
async def rebuild_reports(svc: Services = Depends(services)):
    return await svc.reply("reports", "rebuild_read_models")
