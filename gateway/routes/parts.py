"""The spare-parts catalog: parts, category tree, service items (服务项目), import and export (inventory service)."""
import base64
import uuid
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from inventory.schemas import (
    CategoryIn,
    CategoryOut,
    ImportReportOut,
    PartIn,
    PartOut,
    PartUpdateIn,
    ServiceItemIn,
    ServiceItemOut,
    ServiceItemUpdateIn,
)

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok, problem

router = APIRouter(responses=ERRORS, tags=["spare parts catalog"])

FileFormat = Literal["xlsx", "csv"]
CatalogKind = Literal["parts", "service_items"]
FILE_RESPONSE = {200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument."
                                                               "spreadsheetml.sheet": {}}}}
UPLOAD = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "format": "binary"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}}


def file_response(result: dict) -> Response:
    """A file the service built (base64 over RPC) as a download."""
    name = result["filename"]
    return Response(base64.b64decode(result["content_base64"]), media_type=result["content_type"],
                    headers={"Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"})


async def _import(kind: CatalogKind, request: Request, format: FileFormat | None, svc: Services):
    content = await request.body()
    if not content:
        return problem(422, "file: send the file as the request body", [{"field": "file", "message": "empty body"}])
    if format is None:
        format = "csv" if "csv" in request.headers.get("content-type", "") else "xlsx"
    return await svc.reply("inventory", "import_catalog", kind=kind, format=format,
                           content_base64=base64.b64encode(content).decode())


# Static paths first: /parts/{part_id} would otherwise take "export" for an id.
@router.get("/parts/export", responses=FILE_RESPONSE, summary="The parts catalog as XLSX or CSV (the import format)")
async def export_parts(format: FileFormat = "xlsx", svc: Services = Depends(services)):
    return file_response(await svc.call("inventory", "export_catalog", kind="parts", format=format))


@router.post("/parts/import", responses=ok(ImportReportOut), openapi_extra=UPLOAD,
             summary="Create or update parts (by code) from an XLSX or CSV body; all or nothing: on any error "
                     "nothing is imported and `errors` names each row and column (rows.<row>.<column>)")
async def import_parts(request: Request, format: FileFormat | None = None, svc: Services = Depends(services)):
    return await _import("parts", request, format, svc)


@router.post("/parts", status_code=201, responses=ok(PartOut, 201))
async def create_part(body: PartIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_part", status_code=201, part=body.model_dump(mode="json"))


@router.get("/parts", responses=ok(Page[PartOut]),
            summary="Parts by code; q searches code, name and model; category_id includes its subcategories")
async def list_parts(q: str | None = None, category_id: uuid.UUID | None = None, barcode: str | None = None,
                     active: bool | None = None, offset: Offset = 0, limit: Limit = 500,
                     svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_parts", q=q, category_id=category_id, barcode=barcode, active=active,
                           offset=offset, limit=limit)


@router.get("/parts/{part_id}", responses=ok(PartOut))
async def get_part(part_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("inventory", "get_part", part_id=part_id)


@router.patch("/parts/{part_id}", responses=ok(PartOut))
async def update_part(part_id: uuid.UUID, body: PartUpdateIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "update_part", part_id=part_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))


@router.post("/part-categories", status_code=201, responses=ok(CategoryOut, 201))
async def create_category(body: CategoryIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_category", status_code=201, category=body.model_dump(mode="json"))


@router.get("/part-categories", responses=ok(ItemList[CategoryOut]), summary="The category tree, with each path")
async def list_categories(svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_categories")


@router.get("/service-items/export", responses=FILE_RESPONSE, summary="Service items as XLSX or CSV")
async def export_service_items(format: FileFormat = "xlsx", svc: Services = Depends(services)):
    return file_response(await svc.call("inventory", "export_catalog", kind="service_items", format=format))


@router.post("/service-items/import", responses=ok(ImportReportOut), openapi_extra=UPLOAD,
             summary="Create or update service items (by code) from an XLSX or CSV body; all or nothing")
async def import_service_items(request: Request, format: FileFormat | None = None,
                               svc: Services = Depends(services)):
    return await _import("service_items", request, format, svc)


@router.post("/service-items", status_code=201, responses=ok(ServiceItemOut, 201),
             summary="A priced service item (服务项目) settled beside parts on work orders")
async def create_service_item(body: ServiceItemIn, svc: Services = Depends(services)):
    return await svc.reply("inventory", "create_service_item", status_code=201, item=body.model_dump(mode="json"))


@router.get("/service-items", responses=ok(ItemList[ServiceItemOut]))
async def list_service_items(q: str | None = None, active: bool | None = None, svc: Services = Depends(services)):
    return await svc.reply("inventory", "list_service_items", q=q, active=active)


@router.patch("/service-items/{service_item_id}", responses=ok(ServiceItemOut))
async def update_service_item(service_item_id: uuid.UUID, body: ServiceItemUpdateIn,
                              svc: Services = Depends(services)):
    return await svc.reply("inventory", "update_service_item", service_item_id=service_item_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))
