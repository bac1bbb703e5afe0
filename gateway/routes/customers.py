"""Customers and their equipment (customers service)."""
import uuid

from customers.schemas import CustomerIn, CustomerOut, EquipmentIn, EquipmentOut
from fastapi import APIRouter, Depends

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, ItemList, Page, ok

router = APIRouter(responses=ERRORS, tags=["customers"])


@router.post("/customers", status_code=201, responses=ok(CustomerOut, 201))
async def create_customer(body: CustomerIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "create_customer", status_code=201, customer=body.model_dump(mode="json"))


@router.get("/customers", responses=ok(Page[CustomerOut]))
async def list_customers(q: str | None = None, offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("customers", "list_customers", q=q, offset=offset, limit=limit)


@router.get("/customers/{customer_id}", responses=ok(CustomerOut))
async def get_customer(customer_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_customer", customer_id=customer_id)


@router.post("/customers/{customer_id}/equipment", status_code=201, responses=ok(EquipmentOut, 201))
async def register_equipment(customer_id: uuid.UUID, body: EquipmentIn, svc: Services = Depends(services)):
    return await svc.reply("customers", "register_equipment", status_code=201, customer_id=customer_id,
                           equipment=body.model_dump(mode="json"))


@router.get("/customers/{customer_id}/equipment", responses=ok(ItemList[EquipmentOut]))
async def list_customer_equipment(customer_id: uuid.UUID, svc: Services = Depends(services)):
    await svc.call("customers", "get_customer", customer_id=customer_id)  # 404 for an unknown customer
    return await svc.reply("customers", "list_equipment", customer_id=customer_id)


@router.get("/equipment/{equipment_id}", responses=ok(EquipmentOut))
async def get_equipment(equipment_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("customers", "get_equipment", equipment_id=equipment_id)
