"""RPC DTOs of the inventory service."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from svc_common.validation import OutSchema, Schema

from .domain import to_scale

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(max_length=500)]
# Fits Numeric(18, 3): at most 3 decimals, and small enough that balances cannot overflow.
Quantity = Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=3), AfterValidator(to_scale)]
NonNegative = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=3), AfterValidator(to_scale)]


class WarehouseIn(Schema):
    name: Name
    manager_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)


class PartIn(Schema):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Name
    unit: Annotated[str, StringConstraints(min_length=1, max_length=20)] = "个"
    min_stock: NonNegative = Decimal(0)


class LineIn(Schema):
    part_id: uuid.UUID
    quantity: Quantity


class ReceiveIn(Schema):
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    note: Note | None = None


class RequisitionIn(Schema):
    warehouse_id: uuid.UUID
    lines: list[LineIn] = Field(min_length=1, max_length=100)
    note: Note | None = None
    technician_id: uuid.UUID | None = None

    @field_validator("lines")
    @classmethod
    def _one_line_per_part(cls, lines: list[LineIn]) -> list[LineIn]:
        # Approval addresses lines by part, so a part appears once.
        if len({line.part_id for line in lines}) != len(lines):
            raise ValueError("each part may appear only once")
        return lines


class ApprovalLineIn(Schema):
    part_id: uuid.UUID
    approved_quantity: NonNegative


class ApprovalIn(Schema):
    lines: list[ApprovalLineIn] | None = Field(None, max_length=100)


class RejectIn(Schema):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class PartOut(OutSchema):
    id: uuid.UUID
    code: str
    name: str
    unit: str
    min_stock: Decimal
    created_at: dt.datetime


class LocationOut(OutSchema):
    id: uuid.UUID
    kind: str
    name: str
    owner_user_id: uuid.UUID | None
    manager_ids: list[uuid.UUID]
    created_at: dt.datetime


class StockItemOut(OutSchema):
    part_id: uuid.UUID
    part_code: str
    part_name: str
    unit: str
    quantity: Decimal


class StockOut(OutSchema):
    location: LocationOut | None
    items: list[StockItemOut]


class MoveOut(OutSchema):
    id: uuid.UUID
    part_id: uuid.UUID
    quantity: Decimal
    kind: str
    from_location_id: uuid.UUID | None
    to_location_id: uuid.UUID | None
    ref_type: str | None
    ref_id: uuid.UUID | None
    ref_number: str | None
    actor_id: uuid.UUID | None
    note: str | None
    created_at: dt.datetime


class RequisitionLineOut(OutSchema):
    part_id: uuid.UUID
    quantity: Decimal
    approved_quantity: Decimal | None


class RequisitionOut(OutSchema):
    id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    warehouse_id: uuid.UUID
    status: str
    note: str | None
    reject_reason: str | None
    requested_by: uuid.UUID | None
    decided_by: uuid.UUID | None
    decided_at: dt.datetime | None
    created_at: dt.datetime
    lines: list[RequisitionLineOut]


class ShortfallOut(OutSchema):
    id: uuid.UUID
    ticket_id: uuid.UUID
    ticket_number: str
    technician_id: uuid.UUID
    part_id: uuid.UUID
    requested: Decimal
    available: Decimal
    created_at: dt.datetime
