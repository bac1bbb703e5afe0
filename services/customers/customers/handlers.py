"""Use cases of the customers service: plain Python over a unit of work (no nameko)."""
import datetime as dt
import uuid

import sqlalchemy as sa

from svc_common.contracts import AddressV1, ContactV1, CustomerCreatedV1, EquipmentRegisteredV1, ServiceSnapshotV1
from svc_common.errors import Conflict
from svc_common.uow import UnitOfWork

from .models import Address, Contact, Customer, Equipment
from .schemas import CustomerIn, EquipmentIn


def create_customer(uow: UnitOfWork, data: CustomerIn) -> Customer:
    customer = Customer(name=data.name, created_by=uow.ctx.actor_id)
    customer.contacts = [Contact(position=i, name=c.name, phone=c.phone) for i, c in enumerate(data.contacts)]
    customer.addresses = [Address(position=i, text=a.text, latitude=a.latitude, longitude=a.longitude)
                          for i, a in enumerate(data.addresses)]
    uow.session.add(customer)
    uow.session.flush()
    uow.emit("customer.created", CustomerCreatedV1(
        customer_id=customer.id, name=customer.name,
        contacts=[ContactV1(contact_id=c.id, name=c.name, phone=c.phone) for c in customer.contacts],
        addresses=[AddressV1(address_id=a.id, text=a.text, latitude=a.latitude, longitude=a.longitude)
                   for a in customer.addresses],
    ))
    return customer


def get_customer(uow: UnitOfWork, customer_id: uuid.UUID) -> Customer:
    return uow.get_or_404(Customer, customer_id, "customer_id", "customer")


def list_customers(uow: UnitOfWork, q: str | None, offset: int, limit: int) -> tuple[list[Customer], int]:
    query = sa.select(Customer)
    if q:
        query = query.where(Customer.name.contains(q))
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(Customer.created_at, Customer.id).offset(offset).limit(limit)).all()
    return list(rows), total


def register_equipment(uow: UnitOfWork, customer_id: uuid.UUID, data: EquipmentIn) -> Equipment:
    get_customer(uow, customer_id)
    duplicate = uow.session.scalar(sa.select(Equipment.id).where(Equipment.serial_number == data.serial_number))
    if duplicate:
        raise Conflict(f"serial number {data.serial_number} is already registered",
                       [{"field": "serial_number", "message": "already registered"}])
    equipment = Equipment(customer_id=customer_id, **data.model_dump())
    uow.session.add(equipment)
    uow.session.flush()
    uow.emit("equipment.registered", EquipmentRegisteredV1(
        equipment_id=equipment.id, customer_id=customer_id, model=equipment.model,
        serial_number=equipment.serial_number, warranty_end=equipment.warranty_end,
    ))
    return equipment


def get_equipment(uow: UnitOfWork, equipment_id: uuid.UUID) -> Equipment:
    return uow.get_or_404(Equipment, equipment_id, "equipment_id", "equipment")


def list_equipment(uow: UnitOfWork, customer_id: uuid.UUID | None) -> list[Equipment]:
    query = sa.select(Equipment).order_by(Equipment.created_at, Equipment.id)
    if customer_id:
        query = query.where(Equipment.customer_id == customer_id)
    return list(uow.session.scalars(query))


def service_snapshot(uow: UnitOfWork, customer_id: uuid.UUID, equipment_id: uuid.UUID | None,
                     today: dt.date) -> dict:
    """Customer, first contact, first address and equipment, as a work order records them."""
    customer = get_customer(uow, customer_id)
    equipment = None
    if equipment_id is not None:
        equipment = get_equipment(uow, equipment_id)
        if equipment.customer_id != customer.id:
            raise Conflict("equipment belongs to another customer",
                           [{"field": "equipment_id", "message": "belongs to another customer"}])
    contact = customer.contacts[0] if customer.contacts else None
    address = customer.addresses[0] if customer.addresses else None
    return {
        "customer_id": customer.id, "customer_name": customer.name,
        "contact_name": contact.name if contact else None, "contact_phone": contact.phone if contact else None,
        "address": address.text if address else None,
        "latitude": address.latitude if address else None, "longitude": address.longitude if address else None,
        "equipment_id": equipment.id if equipment else None,
        "equipment_model": equipment.model if equipment else None,
        "serial_number": equipment.serial_number if equipment else None,
        "under_warranty": ServiceSnapshotV1.warranty_status(equipment.warranty_end, today) if equipment else None,
    }
