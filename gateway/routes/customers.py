"""Customers: records, duplicates, nearby, import/export, custom fields, change requests (customers service)."""
import base64
import uuid
from typing import Annotated, Any, Literal

from customers.schemas import (
    ChangeRequestIn,
    ChangeRequestOut,
    CustomerIn,
    CustomerOut,
    CustomerPatch,
    CustomFieldIn,
    CustomFieldOrderIn,
    CustomFieldOut,
    CustomFieldPatch,
    DecisionIn,
    EquipmentIn,
    EquipmentOut,
    FaultReportOut,
    NearbyCustomerOut,
)
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok, problem

router = APIRouter(responses=ERRORS, tags=["customers"])

Entity = Literal["customer", "equipment"]
FileFormat = Literal["xlsx", "csv"]


class DuplicateOut(BaseModel):
    customer: CustomerOut
    matched_on: list[str]


class CustomerDetailOut(BaseModel):
    customer: CustomerOut
    equipment: list[EquipmentOut]
    change_requests: list[ChangeRequestOut]
    work_orders: list[dict[str, Any]]
    work_orders_total: int
    service_events: list[dict[str, Any]]
    fault_reports: list[FaultReportOut]


class Imported(BaseModel):
    imported: int


# Static paths first: /customers/{customer_id} would otherwise take "nearby" for an id.
@router.get("/customers/duplicates", responses=ok(ItemList[DuplicateOut]),
            summary="Customers that share this name (case and spaces ignored) or this phone")
async def find_duplicates(name: str | None = None, phone: str | None = None, exclude_id: uuid.UUID | None = None,
                          svc: Services = Depends(services)):
    return await svc.reply("customers", "find_duplicate_customers", name=name, phone=phone, exclude_id=exclude_id)


@router.get("/customers/nearby", responses=ok(ItemList[NearbyCustomerOut]),
            summary="Customers with an address within radius_m of a point, nearest first")
async def nearby_customers(latitude: Annotated[float, Query(ge=-90, le=90)],
                           longitude: Annotated[float, Query(ge=-180, le=180)],
                           radius_m: Annotated[float, Query(gt=0, le=200_000)] = 5000, limit: Limit = 50,
                           svc: Services = Depends(services)):
    return await svc.reply("customers", "nearby_customers", latitude=str(latitude), longitude=str(longitude),
                           radius_m=radius_m, limit=limit)


@router.get("/customers/export", summary="All customers as an XLSX or CSV file (the import format)",
            responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument."
                                                                   "spreadsheetml.sheet": {}}}})
async def export_customers(format: FileFormat = "xlsx", svc: Services = Depends(services)):
    result = await svc.call("customers", "export_customers", format=format)
    return Response(base64.b64decode(result["content_base64"]), media_type=result["media_type"],
                    headers={"Content-Disposition": f'attachment; filename="{result["filename"]}"'})


@router.post("/customers/import", responses=ok(Imported),
             summary="Import customers from an XLSX or CSV file sent as the request body; all or nothing: "
                     "on any error nothing is imported and `errors` lists each row and column (rows.<n>.<column>)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string", "format": "binary"}},
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                     {"schema": {"type": "string", "format": "binary"}}}}})
async def import_customers(request: Request, format: FileFormat | None = None, svc: Services = Depends(services)):
    content = await request.body()
    if not content:
        return problem(422, "file: send the file as the request body", [{"field": "file", "message": "empty body"}])
    if format is None:
        format = "csv" if "csv" in request.headers.get("content-type", "") else "xlsx"
    return await svc.reply("customers", "import_customers", content_base64=base64.b64encode(content).decode(),
                           format=format)


@router.post("/customers", status_code=201, responses=ok(CustomerOut, 201))
async def create_customer(body: CustomerIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "create_customer", status_code=201, customer=body.model_dump(mode="json"))


@router.get("/customers", responses=ok(Page[CustomerOut]))
async def list_customers(q: str | None = None, tag: str | None = None, owner_id: uuid.UUID | None = None,
                         team_id: uuid.UUID | None = None, offset: Offset = 0, limit: Limit = 50,
                         svc: Services = Depends(services)):
    return await svc.reply("customers", "list_customers", q=q, tag=tag, owner_id=owner_id, team_id=team_id,
                           offset=offset, limit=limit)


@router.get("/customers/{customer_id}", responses=ok(CustomerOut))
async def get_customer(customer_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_customer", customer_id=customer_id)


@router.patch("/customers/{customer_id}", responses=ok(CustomerOut),
              summary="Edit a customer (admin, dispatcher); others send a change request")
async def update_customer(customer_id: uuid.UUID, body: CustomerPatch, svc: Services = Depends(services)):
    return await svc.reply("customers", "update_customer", customer_id=customer_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))


@router.get("/customers/{customer_id}/detail", responses=ok(CustomerDetailOut),
            summary="The customer with equipment, change requests and related work orders")
async def customer_detail(customer_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_customer_detail", customer_id=customer_id)


@router.post("/customers/{customer_id}/equipment", status_code=201, responses=ok(EquipmentOut, 201))
async def register_equipment(customer_id: uuid.UUID, body: EquipmentIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "register_equipment", status_code=201, customer_id=customer_id,
                           equipment=body.model_dump(mode="json"))


@router.get("/customers/{customer_id}/equipment", responses=ok(ItemList[EquipmentOut]))
async def list_customer_equipment(customer_id: uuid.UUID, svc: Services = Depends(services)):
    await svc.call("customers", "get_customer", customer_id=customer_id)  # 404 for an unknown customer
    return await svc.reply("customers", "list_equipment", customer_id=customer_id)


# -- change requests (轻流 客户资料变更) ------------------------------------------------------------
@router.post("/customers/{customer_id}/change-requests", status_code=201, responses=ok(ChangeRequestOut, 201),
             summary="Request a change of customer data; applied only when approved")
async def request_change(customer_id: uuid.UUID, body: ChangeRequestIn, svc: Services = Depends(services)):
    payload = {"changes": body.changes.model_dump(mode="json", exclude_unset=True), "reason": body.reason}
    return await svc.reply("customers", "request_customer_change", status_code=201, customer_id=customer_id,
                           request=payload)


@router.get("/customer-change-requests", responses=ok(Page[ChangeRequestOut]))
async def list_change_requests(status: Literal["pending", "approved", "rejected"] | None = None,
                               customer_id: uuid.UUID | None = None, offset: Offset = 0, limit: Limit = 50,
                               svc: Services = Depends(services)):
    return await svc.reply("customers", "list_change_requests", status=status, customer_id=customer_id,
                           offset=offset, limit=limit)


@router.get("/customer-change-requests/{request_id}", responses=ok(ChangeRequestOut))
async def get_change_request(request_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_change_request", request_id=request_id)


@router.post("/customer-change-requests/{request_id}/approve", responses=ok(ChangeRequestOut))
async def approve_change_request(request_id: uuid.UUID, body: DecisionIn | None = None,
                                 svc: Services = Depends(services)):
    return await svc.reply("customers", "approve_change_request", request_id=request_id,
                           decision=(body or DecisionIn()).model_dump())


@router.post("/customer-change-requests/{request_id}/reject", responses=ok(ChangeRequestOut))
async def reject_change_request(request_id: uuid.UUID, body: DecisionIn | None = None,
                                svc: Services = Depends(services)):
    return await svc.reply("customers", "reject_change_request", request_id=request_id,
                           decision=(body or DecisionIn()).model_dump())


# -- custom fields ----------------------------------------------------------------------------
@router.get("/custom-fields", responses=ok(ItemList[CustomFieldOut]),
            summary="Built-in (fixed) and the company's own fields of customers or equipment, in order")
async def list_custom_fields(entity: Entity = "customer", svc: Services = Depends(services)):
    result = await svc.call("customers", "list_custom_fields", entity=entity)
    return JSONResponse({"items": result["items"], "total": len(result["items"])})


@router.post("/custom-fields", status_code=201, responses=ok(CustomFieldOut, 201))
async def add_custom_field(body: CustomFieldIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "add_custom_field", status_code=201, field=body.model_dump(mode="json"))


@router.put("/custom-fields/order", responses=ok(ItemList[CustomFieldOut]),
            summary="Reorder the company's own fields (built-in ones stay first)")
async def reorder_custom_fields(body: CustomFieldOrderIn, svc: Services = Depends(services)):
    result = await svc.call("customers", "reorder_custom_fields", order=body.model_dump(mode="json"))
    return JSONResponse({"items": result["items"], "total": len(result["items"])})


@router.patch("/custom-fields/{entity}/{key}", responses=ok(CustomFieldOut))
async def update_custom_field(entity: Entity, key: str, body: CustomFieldPatch, svc: Services = Depends(services)):
    return await svc.reply("customers", "update_custom_field", entity=entity, key=key,
                           changes=body.model_dump(mode="json", exclude_unset=True))


class Deleted(BaseModel):
    deleted: str


@router.delete("/custom-fields/{entity}/{key}", responses=ok(Deleted),
               summary="Delete a company field; values already stored are kept but no longer shown or checked")
async def delete_custom_field(entity: Entity, key: str, svc: Services = Depends(services)):
    return await svc.reply("customers", "delete_custom_field", entity=entity, key=key)
