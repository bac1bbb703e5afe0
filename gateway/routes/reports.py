"""Reports (reports service, read models built from events): the first daily reports, and rebuilding
a company's read models from its event archive as a background job."""
import datetime as dt
import uuid

from fastapi import APIRouter, Depends
from reports.schemas import RebuildJobOut, TechnicianDailyOut, WorkOrderSummaryOut

from ..deps import Services, services
from ..problems import ERRORS, ok

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


@router.post("/reports/rebuild", status_code=202, responses=ok(RebuildJobOut, 202),
             summary="Rebuild your company's report read models from its event archive (admin, background job)",
             description="Starts a job and answers at once with it (`job_id`, `status: running`). The reports keep "
                         "taking in events meanwhile; your company's figures are complete again when the job is "
                         "`done`. One job at a time per company (409 while one runs).")
async def rebuild_reports(svc: Services = Depends(services)):
    return await svc.reply("reports", "start_rebuild", status_code=202)


@router.get("/reports/rebuild", responses=ok(RebuildJobOut), summary="Your company's latest rebuild job")
async def latest_rebuild(svc: Services = Depends(services)):
    return await svc.reply("reports", "rebuild_status")


@router.get("/reports/rebuild/{job_id}", responses=ok(RebuildJobOut),
            summary="A rebuild job: running, done or failed, and how many events it replayed of the archive's total")
async def rebuild_status(job_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("reports", "rebuild_status", job_id=str(job_id))
