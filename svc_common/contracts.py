"""Event envelope and versioned payload contracts, shared by producers and consumers.

A producer validates `data` against the contract before it reaches the outbox; a
consumer parses it with the same model. A breaking change is a new schema_version.
`python -m svc_common.catalog` turns this registry into the published event catalog.
"""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Actor(BaseModel):
    id: uuid.UUID | None = None
    role: str | None = None


class EventEnvelope(BaseModel):
    event_id: uuid.UUID
    type: str
    schema_version: int = 1
    occurred_at: AwareDatetime
    tenant_id: uuid.UUID
    correlation_id: str | None = None
    actor: Actor | None = None
    data: dict[str, Any]

    def payload(self) -> Contract:
        """The typed payload for this event's type and version."""
        return contract_for(self.type, self.schema_version).model_validate(self.data)


# --- gateway (accounts) ---------------------------------------------------------------

class UserV1(Contract):
    user_id: uuid.UUID
    name: str
    username: str
    role: str
    phone: str | None = None
    email: str | None = None
    active: bool = True


# --- customers ----------------------------------------------------------------------------

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


# --- tickets ------------------------------------------------------------------------------

class PartUsedV1(Contract):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0)


class TicketCreatedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    type: str
    customer_id: uuid.UUID
    equipment_id: uuid.UUID | None = None
    created_by: uuid.UUID | None = None


class TicketAssignedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    assigned_by: uuid.UUID | None = None


class TicketAcceptedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID


class TicketCheckedInV1(Contract):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    latitude: Decimal
    longitude: Decimal
    distance_m: float | None = None


class TicketCompletedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    type: str
    technician_id: uuid.UUID
    dispatcher_id: uuid.UUID | None = None
    customer_id: uuid.UUID
    customer_name: str
    equipment_id: uuid.UUID | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    completed_at: AwareDatetime
    summary: str
    parts_used: list[PartUsedV1] = []


# --- inventory ----------------------------------------------------------------------------

class RequisitionLineV1(Contract):
    part_id: uuid.UUID
    quantity: Decimal
    approved_quantity: Decimal | None = None


class RequisitionV1(Contract):
    requisition_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    warehouse_id: uuid.UUID
    status: str
    lines: list[RequisitionLineV1]
    reason: str | None = None


class StockMovedV1(Contract):
    move_id: uuid.UUID
    part_id: uuid.UUID
    quantity: Decimal
    kind: str
    from_location_id: uuid.UUID | None = None
    to_location_id: uuid.UUID | None = None
    ref_type: str | None = None
    ref_id: uuid.UUID | None = None


class StockLowV1(Contract):
    part_id: uuid.UUID
    location_id: uuid.UUID
    quantity: Decimal
    minimum: Decimal


class ConsumptionShortfallV1(Contract):
    ticket_id: uuid.UUID
    ticket_number: str
    technician_id: uuid.UUID
    part_id: uuid.UUID
    requested: Decimal
    available: Decimal


# --- notify -------------------------------------------------------------------------------

class NotificationV1(Contract):
    notification_id: uuid.UUID
    channel: str
    recipient: str
    source_event_type: str
    error: str | None = None


# type → (producing service, {version: contract})
EVENTS: dict[str, tuple[str, dict[int, type[Contract]]]] = {
    "user.created": ("gateway", {1: UserV1}),
    "user.updated": ("gateway", {1: UserV1}),
    "user.deactivated": ("gateway", {1: UserV1}),
    "customer.created": ("customers", {1: CustomerCreatedV1}),
    "equipment.registered": ("customers", {1: EquipmentRegisteredV1}),
    "ticket.created": ("tickets", {1: TicketCreatedV1}),
    "ticket.assigned": ("tickets", {1: TicketAssignedV1}),
    "ticket.accepted": ("tickets", {1: TicketAcceptedV1}),
    "ticket.checked_in": ("tickets", {1: TicketCheckedInV1}),
    "ticket.completed": ("tickets", {1: TicketCompletedV1}),
    "requisition.requested": ("inventory", {1: RequisitionV1}),
    "requisition.approved": ("inventory", {1: RequisitionV1}),
    "requisition.rejected": ("inventory", {1: RequisitionV1}),
    "stock.moved": ("inventory", {1: StockMovedV1}),
    "stock.low": ("inventory", {1: StockLowV1}),
    "consumption.shortfall": ("inventory", {1: ConsumptionShortfallV1}),
    "notification.sent": ("notify", {1: NotificationV1}),
    "notification.failed": ("notify", {1: NotificationV1}),
}


def contract_for(event_type: str, version: int = 1) -> type[Contract]:
    try:
        return EVENTS[event_type][1][version]
    except KeyError:
        raise KeyError(f"no contract for {event_type} v{version}") from None


def producer_of(event_type: str) -> str:
    return EVENTS[event_type][0]


def exchange_of(event_type: str) -> str:
    return f"{producer_of(event_type)}.events"
