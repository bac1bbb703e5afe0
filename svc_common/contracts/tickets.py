"""Event and RPC contracts produced by tickets."""
import uuid
from decimal import Decimal

from pydantic import AwareDatetime, Field

from svc_common.contracts.base import Contract

PRODUCER = "tickets"


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


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "ticket.created": {1: TicketCreatedV1},
    "ticket.assigned": {1: TicketAssignedV1},
    "ticket.accepted": {1: TicketAcceptedV1},
    "ticket.checked_in": {1: TicketCheckedInV1},
    "ticket.completed": {1: TicketCompletedV1},
}
