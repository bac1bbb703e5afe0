"""RPC DTOs of the tickets service."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from svc_common.validation import OutSchema, Schema

from .domain import TYPES

TicketType = Literal[TYPES]  # type: ignore[valid-type]


class TicketIn(Schema):
    type: TicketType
    customer_id: uuid.UUID
    equipment_id: uuid.UUID | None = None
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class AssignIn(Schema):
    technician_id: uuid.UUID
    note: str | None = Field(None, max_length=1000)


class CheckInIn(Schema):
    latitude: Decimal = Field(ge=-90, le=90)
    longitude: Decimal = Field(ge=-180, le=180)


class PartUsedIn(Schema):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0, max_digits=15, decimal_places=3)


class ReceiptIn(Schema):
    summary: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    parts_used: list[PartUsedIn] = Field(default_factory=list, max_length=100)


class PartUsedOut(OutSchema):
    part_id: uuid.UUID
    quantity: Decimal


class TimelineOut(OutSchema):
    seq: int
    action: str
    from_status: str | None
    to_status: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    note: str | None
    data: dict
    at: dt.datetime


class TicketOut(OutSchema):
    id: uuid.UUID
    number: str
    type: str
    status: str
    priority: str
    description: str
    customer_id: uuid.UUID
    customer_name: str
    contact_name: str | None
    contact_phone: str | None
    address: str | None
    latitude: Decimal | None
    longitude: Decimal | None
    equipment_id: uuid.UUID | None
    equipment_model: str | None
    serial_number: str | None
    under_warranty: bool | None
    created_by: uuid.UUID | None
    assignee_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    assigned_at: dt.datetime | None
    accepted_at: dt.datetime | None
    checked_in_at: dt.datetime | None
    check_in_latitude: Decimal | None
    check_in_longitude: Decimal | None
    check_in_distance_m: float | None
    completed_at: dt.datetime | None
    summary: str | None
    parts_used: list[PartUsedOut]
    version: int
