"""Event and RPC contracts produced by customers."""
import datetime as dt
import uuid
from decimal import Decimal

from svc_common.contracts.base import Contract

PRODUCER = "customers"


class ContactV1(Contract):
    contact_id: uuid.UUID
    name: str
    phone: str | None = None


class AddressV1(Contract):
    address_id: uuid.UUID
    text: str
    latitude: Decimal | None = None
    longitude: Decimal | None = None


class CustomerCreatedV1(Contract):
    customer_id: uuid.UUID
    name: str
    contacts: list[ContactV1] = []
    addresses: list[AddressV1] = []


class EquipmentRegisteredV1(Contract):
    equipment_id: uuid.UUID
    customer_id: uuid.UUID
    model: str
    serial_number: str
    warranty_end: dt.date | None = None


class ServiceSnapshotV1(Contract):
    """RPC contract of customers.get_service_snapshot (and of tickets' replica of it): what a work
    order copies from the customer and equipment when it is created."""
    customer_id: uuid.UUID
    customer_name: str
    contact_name: str | None = None
    contact_phone: str | None = None
    address: str | None = None
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    equipment_id: uuid.UUID | None = None
    equipment_model: str | None = None
    serial_number: str | None = None
    under_warranty: bool | None = None

    @staticmethod
    def warranty_status(warranty_end: dt.date | None, today: dt.date) -> bool | None:
        """Under warranty on `today`; None when the equipment has no warranty end."""
        return None if warranty_end is None else warranty_end >= today


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "customer.created": {1: CustomerCreatedV1},
    "equipment.registered": {1: EquipmentRegisteredV1},
}
