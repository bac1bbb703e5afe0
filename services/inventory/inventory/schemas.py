"""RPC DTOs of the inventory service."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from typing import Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, field_validator

from svc_common.validation import OutSchema, Schema

from .domain import MOVE_KINDS, to_scale

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(max_length=500)]
# Fits Numeric(18, 3): at most 3 decimals, and small enough that balances cannot overflow.
Quantity = Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=3), AfterValidator(to_scale)]
NonNegative = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=3), AfterValidator(to_scale)]
# Money: 2 decimals, always written with both (12.5 → 12.50) so it reads the same before and after storage.
Money = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2),
                  AfterValidator(lambda value: value.quantize(Decimal("0.01")))]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Unit = Annotated[str, StringConstraints(min_length=1, max_length=20)]
Text = Annotated[str, StringConstraints(max_length=1000)]
Level = Literal["headquarters", "regional", "office"]


class WarehouseIn(Schema):
    name: Name
    manager_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    parent_id: uuid.UUID | None = None
    level: Level | None = None
    code: Code | None = None
    notes: Note | None = None


class WarehouseUpdateIn(Schema):
    """Only the fields sent are changed."""
    name: Name | None = None
    manager_ids: list[uuid.UUID] | None = Field(None, max_length=100)
    parent_id: uuid.UUID | None = None
    level: Level | None = None
    code: Code | None = None
    notes: Note | None = None


class CategoryIn(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    parent_id: uuid.UUID | None = None


class PartIn(Schema):
    code: Code
    name: Name
    unit: Unit = "个"
    min_stock: NonNegative = Decimal(0)
    category_id: uuid.UUID | None = None
    model: Annotated[str, StringConstraints(max_length=100)] | None = None
    sale_price: Money | None = None
    cost_price: Money | None = None
    barcode: Annotated[str, StringConstraints(max_length=64)] | None = None
    image_ref: Annotated[str, StringConstraints(max_length=500)] | None = None
    notes: Text | None = None
    active: bool = True


class PartUpdateIn(Schema):
    """Only the fields sent are changed (the code is the part's identity and stays)."""
    name: Name | None = None
    unit: Unit | None = None
    min_stock: NonNegative | None = None
    category_id: uuid.UUID | None = None
    model: Annotated[str, StringConstraints(max_length=100)] | None = None
    sale_price: Money | None = None
    cost_price: Money | None = None
    barcode: Annotated[str, StringConstraints(max_length=64)] | None = None
    image_ref: Annotated[str, StringConstraints(max_length=500)] | None = None
    notes: Text | None = None
    active: bool | None = None


class ServiceItemIn(Schema):
    code: Code
    name: Name
    unit: Unit = "次"
    price: Money
    cost_price: Money | None = None
    category: Annotated[str, StringConstraints(max_length=100)] | None = None
    notes: Text | None = None
    active: bool = True


class ServiceItemUpdateIn(Schema):
    name: Name | None = None
    unit: Unit | None = None
    price: Money | None = None
    cost_price: Money | None = None
    category: Annotated[str, StringConstraints(max_length=100)] | None = None
    notes: Text | None = None
    active: bool | None = None


class SettingsIn(Schema):
    allow_negative_stock: bool


class LineIn(Schema):
    part_id: uuid.UUID
    quantity: Quantity


def _one_line_per_part(lines: list) -> list:
    if len({line.part_id for line in lines}) != len(lines):
        raise ValueError("each part may appear only once")
    return lines


class ReceiveIn(Schema):
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    note: Note | None = None


class IssueIn(Schema):
    """Outbound (出库) of a warehouse: the reason is required, it is the ledger's 'why'."""
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    note: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class CountLineIn(Schema):
    part_id: uuid.UUID
    counted: NonNegative


class StocktakeIn(Schema):
    """A stock count (盘点): each listed part's counted quantity; differences become adjustments."""
    lines: Annotated[list[CountLineIn], AfterValidator(_one_line_per_part)] = Field(min_length=1, max_length=1000)
    note: Note | None = None


class TransferIn(Schema):
    from_warehouse_id: uuid.UUID
    to_warehouse_id: uuid.UUID
    lines: Annotated[list[LineIn], AfterValidator(_one_line_per_part)] = Field(min_length=1, max_length=200)
    note: Note | None = None


class ReceiptLineIn(Schema):
    part_id: uuid.UUID
    quantity: NonNegative


class TransferReceiveIn(Schema):
    """No lines: receive everything still in transit; else the listed quantities (partial receipt)."""
    lines: list[ReceiptLineIn] | None = Field(None, max_length=200)
    note: Note | None = None


class ReturnIn(Schema):
    """A technician gives parts back (退回) from personal stock to a warehouse; the manager approves."""
    warehouse_id: uuid.UUID
    lines: Annotated[list[LineIn], AfterValidator(_one_line_per_part)] = Field(min_length=1, max_length=100)
    note: Note | None = None
    technician_id: uuid.UUID | None = None


class OldPartReturnIn(Schema):
    warehouse_id: uuid.UUID
    note: Note | None = None


class PartQuantityIn(Schema):
    part_id: uuid.UUID
    quantity: Quantity


class CheckStockIn(Schema):
    technician_id: uuid.UUID
    parts: list[PartQuantityIn] = Field(max_length=200)


class MoveFilter(Schema):
    ref_id: uuid.UUID | None = None
    part_id: uuid.UUID | None = None
    location_id: uuid.UUID | None = None
    kind: Literal[MOVE_KINDS] | None = None  # type: ignore[valid-type]
    technician_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    date_from: dt.datetime | None = None
    date_to: dt.datetime | None = None


class ConsumptionFilter(Schema):
    group_by: Literal["work_order", "customer", "technician", "part", "day", "month"] = "work_order"
    date_from: dt.datetime | None = None
    date_to: dt.datetime | None = None
    technician_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None


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
    category_id: uuid.UUID | None = None
    model: str | None = None
    sale_price: Decimal | None = None
    cost_price: Decimal | None = None
    barcode: str | None = None
    image_ref: str | None = None
    notes: str | None = None
    active: bool = True
    created_at: dt.datetime


class CategoryOut(OutSchema):
    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    path: str


class ServiceItemOut(OutSchema):
    id: uuid.UUID
    code: str
    name: str
    unit: str
    price: Decimal
    cost_price: Decimal | None
    category: str | None
    notes: str | None
    active: bool
    created_at: dt.datetime


class SettingsOut(OutSchema):
    allow_negative_stock: bool


class LocationOut(OutSchema):
    id: uuid.UUID
    kind: str
    name: str
    owner_user_id: uuid.UUID | None
    manager_ids: list[uuid.UUID]
    parent_id: uuid.UUID | None = None
    level: str | None = None
    code: str | None = None
    notes: str | None = None
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
    unit_cost: Decimal | None = None
    technician_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None


class RequisitionLineOut(OutSchema):
    part_id: uuid.UUID
    quantity: Decimal
    approved_quantity: Decimal | None


class RequisitionOut(OutSchema):
    id: uuid.UUID
    number: str
    kind: str = "issue"
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
    customer_id: uuid.UUID | None = None
    warehouse_id: uuid.UUID | None = None
    manager_ids: list[uuid.UUID] | None = None
    status: str = "open"
    resolution: str | None = None
    resolved_by: uuid.UUID | None = None
    resolved_at: dt.datetime | None = None


class ResolveIn(Schema):
    resolution: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class TransferLineOut(OutSchema):
    part_id: uuid.UUID
    quantity: Decimal
    received_quantity: Decimal


class TransferOut(OutSchema):
    id: uuid.UUID
    number: str
    from_warehouse_id: uuid.UUID
    to_warehouse_id: uuid.UUID
    status: str
    note: str | None
    created_by: uuid.UUID | None
    created_at: dt.datetime
    received_at: dt.datetime | None
    lines: list[TransferLineOut]


class OldPartOut(OutSchema):
    id: uuid.UUID
    ticket_id: uuid.UUID
    ticket_number: str
    technician_id: uuid.UUID
    customer_id: uuid.UUID | None
    part_id: uuid.UUID
    quantity: Decimal
    serial_number: str | None
    status: str
    warehouse_id: uuid.UUID | None
    move_id: uuid.UUID | None
    returned_by: uuid.UUID | None
    returned_at: dt.datetime | None
    created_at: dt.datetime


class ImportReportOut(OutSchema):
    created: int
    updated: int
    rows: int


class FileOut(OutSchema):
    filename: str
    content_type: str
    content_base64: str


# --- events of other services, read defensively ----------------------------------------------------
# tickets' contracts grow fields over time; inventory reads only what it needs and ignores the rest,
# so a newer ticket.completed (service_items, old_parts ...) or a not-yet-published contract
# (ticket.reopened / ticket.cancelled) is still understood.

class _Lenient(OutSchema):
    model_config = ConfigDict(extra="ignore")


class UsedPart(_Lenient):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0)


class OldPartIn(_Lenient):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0)
    serial_number: str | None = None


class CompletedOrder(_Lenient):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    customer_id: uuid.UUID | None = None
    parts_used: list[UsedPart] = []
    old_parts: list[OldPartIn] | None = []


class ReopenedOrder(_Lenient):
    """ticket.reopened / ticket.cancelled: only an order that was completed had consumed parts."""
    ticket_id: uuid.UUID
    number: str
    from_status: str | None = None
    reason: str | None = None
