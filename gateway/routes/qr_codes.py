"""QR maintenance codes (维保编码): batches, label export (ZIP of PNG, PDF sheet), scan, bind, and the
public scan API behind the sticker's page (customers service)."""
import asyncio
import os
import tempfile
import uuid
from typing import Literal

from customers import labels
from customers.schemas import BindIn, EquipmentOut, FaultReportIn, QrBatchIn, QrBatchOut, QrCodeOut
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask

from svc_common.context import correlation_id_var

from ..deps import Limit, Offset, Services, services
from ..models import Tenant
from ..problems import ERRORS, Page, ok, problem
from ..rate_limit import RouteLimit

router = APIRouter(responses=ERRORS, tags=["qr-codes"])


class BoundOut(BaseModel):
    code: QrCodeOut
    equipment: EquipmentOut


def scan_prefix(request: Request) -> str:
    """What a sticker encodes is this prefix + its code: the gateway's public page of the code.
    PUBLIC_BASE_URL is the address phones reach (behind a proxy the request's host may be internal)."""
    base = os.environ.get("PUBLIC_BASE_URL") or str(request.base_url)
    return f"{base.rstrip('/')}/q/"


def company_name(request: Request, tenant_id: uuid.UUID) -> str:
    with request.app.state.db.session(None) as session:
        tenant = session.get(Tenant, tenant_id)
        return tenant.name if tenant else ""


async def _file_response(render, suffix: str, media_type: str, filename: str) -> FileResponse:
    """Render into a temporary file in a worker thread (thousands of labels: seconds of CPU, no event
    loop stall, bounded memory) and stream it; the file is removed after sending."""
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    try:
        with handle:
            await asyncio.to_thread(render, handle)
    except BaseException:
        os.unlink(handle.name)
        raise
    return FileResponse(handle.name, media_type=media_type, filename=filename,
                        background=BackgroundTask(os.unlink, handle.name))


@router.post("/qr-batches", status_code=201, responses=ok(QrBatchOut, 201),
             summary="Create a batch of unused QR maintenance codes (up to 20,000)")
async def create_batch(body: QrBatchIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "create_qr_batch", status_code=201, batch=body.model_dump())


@router.get("/qr-batches", responses=ok(Page[QrBatchOut]))
async def list_batches(offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("customers", "list_qr_batches", offset=offset, limit=limit)


@router.get("/qr-batches/{batch_id}", responses=ok(QrBatchOut))
async def get_batch(batch_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_qr_batch", batch_id=batch_id)


@router.get("/qr-codes", responses=ok(Page[QrCodeOut]), summary="Codes with their status (unused / bound)")
async def list_codes(batch_id: uuid.UUID | None = None, status: Literal["unused", "bound"] | None = None,
                     offset: Offset = 0, limit: Limit = 100, svc: Services = Depends(services)):
    return await svc.reply("customers", "list_qr_codes", batch_id=batch_id, status=status, offset=offset,
                           limit=limit)


@router.get("/qr-batches/{batch_id}/labels.zip", summary="The batch as a ZIP of PNG labels",
            responses={200: {"content": {"application/zip": {}}}})
async def batch_zip(batch_id: uuid.UUID, request: Request, svc: Services = Depends(services)):
    result = await svc.call("customers", "get_qr_batch_codes", batch_id=batch_id)
    company = company_name(request, svc.principal.tenant_id)
    number = result["batch"]["number"]
    codes = [(seq, code) for seq, code in result["codes"]]
    return await _file_response(
        lambda out: labels.write_zip(out, codes, scan_prefix(request), company, number),
        ".zip", "application/zip", f"{number}.zip")


@router.get("/qr-batches/{batch_id}/labels.pdf", summary="The batch as a printable PDF label sheet (A4, 4 × 6)",
            responses={200: {"content": {"application/pdf": {}}}})
async def batch_pdf(batch_id: uuid.UUID, request: Request, svc: Services = Depends(services)):
    result = await svc.call("customers", "get_qr_batch_codes", batch_id=batch_id)
    company = company_name(request, svc.principal.tenant_id)
    codes = [(seq, code) for seq, code in result["codes"]]
    return await _file_response(lambda out: labels.write_pdf(out, codes, scan_prefix(request), company),
                                ".pdf", "application/pdf", f"{result['batch']['number']}.pdf")


@router.get("/qr-codes/{code}/label.png", summary="One code's label alone",
            responses={200: {"content": {"image/png": {}}}})
async def code_png(code: str, request: Request, svc: Services = Depends(services)):
    row = await svc.call("customers", "get_qr_code", code=code)
    company = company_name(request, svc.principal.tenant_id)
    png = await asyncio.to_thread(labels.label_png, scan_prefix(request) + row["code"], row["code"], company)
    return Response(png, media_type="image/png")


@router.get("/qr-codes/{code}/label.pdf", summary="One code's label alone, as a PDF",
            responses={200: {"content": {"application/pdf": {}}}})
async def code_pdf(code: str, request: Request, svc: Services = Depends(services)):
    row = await svc.call("customers", "get_qr_code", code=code)
    company = company_name(request, svc.principal.tenant_id)
    return await _file_response(
        lambda out: labels.write_pdf(out, [(row["seq"], row["code"])], scan_prefix(request), company,
                                     columns=1, rows=1), ".pdf", "application/pdf", f"{row['code']}.pdf")


@router.get("/scan/{code}", summary="A logged-in scan: registration for an unbound code (can_bind), "
                                    "the equipment and customer for a bound one")
async def scan(code: str, svc: Services = Depends(services)):
    return await svc.reply("customers", "scan_qr_code", code=code)


@router.post("/qr-codes/{code}/bind", responses=ok(BoundOut),
             summary="建档贴码: bind an unused code to existing equipment, or register new equipment and bind it "
                     "(technician, admin)")
async def bind(code: str, body: BindIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "bind_qr_code", code=code, binding=body.model_dump(mode="json"))


# -- public (no login): what the sticker's page reads and posts ---------------------------------
# Per client address: a few reports an hour; per code: a sticker is not a chat channel.
REPORTS_PER_CLIENT = RouteLimit("fault_reports_per_client", int(os.environ.get("FAULT_REPORTS_PER_HOUR", "5")), 3600)
REPORTS_PER_CODE = RouteLimit("fault_reports_per_code", int(os.environ.get("FAULT_REPORTS_PER_CODE_PER_HOUR", "10")),
                              3600)
SCANS_PER_CLIENT = RouteLimit("public_scans_per_client", 120, 60)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def public_call(request: Request, method: str, **kwargs):
    context = {"correlation_id": correlation_id_var.get(),
               "locale": "en" if request.query_params.get("lang") == "en" else "zh-CN"}
    return await request.app.state.rpc.call("customers", method, context=context, **kwargs)


def too_many(retry_after: int) -> Response:
    return problem(429, "提交过于频繁，请稍后再试 / too many requests, try again later",
                   headers={"Retry-After": str(retry_after)})


@router.get("/public/qr/{code}", tags=["public"],
            summary="No login: a code's equipment, warranty and recent service (no personal data)")
async def public_scan(code: str, request: Request):
    allowed, retry = await SCANS_PER_CLIENT.allow(client_address(request))
    if not allowed:
        return too_many(retry)
    return await public_call(request, "public_scan", code=code)


class FaultReported(BaseModel):
    number: str
    created_at: str


@router.post("/public/qr/{code}/fault-reports", status_code=201, tags=["public"], responses=ok(FaultReported, 201),
             summary="No login: report a fault of the equipment behind a code (rate-limited)")
async def public_report_fault(code: str, body: FaultReportIn, request: Request):
    for limiter, key in ((REPORTS_PER_CLIENT, client_address(request)), (REPORTS_PER_CODE, code.upper())):
        allowed, retry = await limiter.allow(key)
        if not allowed:
            return too_many(retry)
    result = await public_call(request, "report_fault", code=code, report=body.model_dump())
    return JSONResponse(result, status_code=201)
