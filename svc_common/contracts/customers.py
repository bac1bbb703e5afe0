"""Event and RPC contracts produced by customers."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

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
    # The install address (one of the customer's): a work order for this equipment goes there.
    address_id: uuid.UUID | None = None
    address: str | None = None
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    status: str | None = None
    next_maintenance_date: dt.date | None = None


class CustomerUpdatedV1(Contract):
    """The customer after a change (direct edit or an approved change request); `changed` names the fields."""
    customer_id: uuid.UUID
    name: str
    changed: list[str] = []
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    tags: list[str] = []
    contacts: list[ContactV1] = []
    addresses: list[AddressV1] = []


class ChangeV1(Contract):
    field: str
    old: Any = None
    new: Any = None


class CustomerChangeRequestedV1(Contract):
    request_id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    customer_name: str
    requested_by: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    changes: list[ChangeV1]
    reason: str | None = None


class CustomerChangeApprovedV1(Contract):
    request_id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    customer_name: str
    requested_by: uuid.UUID | None = None
    approved_by: uuid.UUID | None = None
    changes: list[ChangeV1]


class CustomerChangeRejectedV1(Contract):
    request_id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    customer_name: str
    requested_by: uuid.UUID | None = None
    rejected_by: uuid.UUID | None = None
    reason: str | None = None


class EquipmentUpdatedV1(Contract):
    equipment_id: uuid.UUID
    customer_id: uuid.UUID
    model: str
    serial_number: str
    status: str
    warranty_end: dt.date | None = None
    next_maintenance_date: dt.date | None = None
    address_id: uuid.UUID | None = None
    address: str | None = None
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    changed: list[str] = []


class QrCodeBoundV1(Contract):
    code: str
    batch_id: uuid.UUID
    equipment_id: uuid.UUID
    customer_id: uuid.UUID
    serial_number: str
    bound_by: uuid.UUID | None = None


class EquipmentDueV1(Contract):
    """equipment.warranty_expiring / maintenance_due / maintenance_overdue / inspection_due /
    inspection_overdue: once per equipment and due date."""
    equipment_id: uuid.UUID
    customer_id: uuid.UUID
    customer_name: str
    contact_name: str | None = None
    contact_phone: str | None = None
    model: str
    serial_number: str
    due_date: dt.date
    days_left: int  # negative once overdue
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    # The tenant's rule asks for the maintenance / inspection work order to be created (tickets acts on it:
    # type maintenance or inspection, for equipment_id and customer_id).
    create_work_order: bool = False


class EquipmentFaultReportedV1(Contract):
    """A customer reported a fault from the public QR scan page: a service-desk request to open
    (channel qr_scan). The photo stays in customers (`photo_url` is the gateway path to it)."""
    report_id: uuid.UUID
    number: str
    channel: str = "qr_scan"
    equipment_id: uuid.UUID
    customer_id: uuid.UUID
    customer_name: str
    contact_phone: str
    description: str
    model: str
    serial_number: str
    under_warranty: bool | None = None
    has_photo: bool = False
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None


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
    "customer.updated": {1: CustomerUpdatedV1},
    "customer.change_requested": {1: CustomerChangeRequestedV1},
    "customer.change_approved": {1: CustomerChangeApprovedV1},
    "customer.change_rejected": {1: CustomerChangeRejectedV1},
    "equipment.updated": {1: EquipmentUpdatedV1},
    "qrcode.bound": {1: QrCodeBoundV1},
    "equipment.warranty_expiring": {1: EquipmentDueV1},
    "equipment.maintenance_due": {1: EquipmentDueV1},
    "equipment.maintenance_overdue": {1: EquipmentDueV1},
    "equipment.inspection_due": {1: EquipmentDueV1},
    "equipment.inspection_overdue": {1: EquipmentDueV1},
    "equipment.fault_reported": {1: EquipmentFaultReportedV1},
}
