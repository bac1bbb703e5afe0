"""RPC DTOs of the tickets service."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from svc_common.validation import OutSchema, Schema

from .domain import DISPATCH_RULES, FIELD_KINDS

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{1,39}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Note = Annotated[str, StringConstraints(max_length=1000)]
Priority = Literal["low", "normal", "high", "urgent"]


class TicketIn(Schema):
    type: Code
    customer_id: uuid.UUID
    equipment_id: uuid.UUID | None = None
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    priority: Priority = "normal"
    team_id: uuid.UUID | None = None
    skill: Annotated[str, StringConstraints(max_length=60)] | None = None
    area: Annotated[str, StringConstraints(max_length=60)] | None = None
    custom_fields: dict = Field(default_factory=dict)
    plan_id: uuid.UUID | None = None
    service_request_id: uuid.UUID | None = None
    auto_dispatch: bool = False


class FieldsIn(Schema):
    custom_fields: dict


# -- dispatch ---------------------------------------------------------------------------------

class AssignIn(Schema):
    technician_id: uuid.UUID
    assistant_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)
    note: Note | None = None


class BatchAssignIn(Schema):
    """批量派工: many orders to one technician (with assistants) or to one sub-branch (branch_id)."""
    ticket_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)
    technician_id: uuid.UUID | None = None
    assistant_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)
    branch_id: uuid.UUID | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def one_target(self):
        if (self.technician_id is None) == (self.branch_id is None):
            raise ValueError("give either technician_id or branch_id")
        return self


class NoteIn(Schema):
    note: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ReassignIn(Schema):
    technician_id: uuid.UUID
    assistant_ids: list[uuid.UUID] | None = None
    reason: Reason


class ReasonIn(Schema):
    reason: Reason


class OptionalReasonIn(Schema):
    reason: Note | None = None


class PublishIn(Schema):
    team_id: uuid.UUID | None = None  # only this team's members see it in the pool
    note: Note | None = None


class GrabIn(Schema):
    planned_at: AwareDatetime | None = None  # 预计处理时间, chosen when grabbing


class BranchIn(Schema):
    branch_id: uuid.UUID
    note: Note | None = None


class OutsourceIn(Schema):
    team_id: uuid.UUID
    note: Note | None = None


# -- field execution --------------------------------------------------------------------------

class CheckInIn(Schema):
    latitude: Decimal = Field(ge=-90, le=90)
    longitude: Decimal = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)


class PositionIn(Schema):
    latitude: Decimal = Field(ge=-90, le=90)
    longitude: Decimal = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)
    on_duty: bool | None = None


class FileIn(Schema):
    kind: Literal["photo", "file", "signature"]
    filename: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    content_type: Annotated[str, StringConstraints(min_length=3, max_length=100)] = "application/octet-stream"
    content_base64: str = Field(min_length=1, max_length=14_000_000)  # ≈10 MB


class PartUsedIn(Schema):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0, max_digits=15, decimal_places=3)


class OldPartIn(PartUsedIn):
    serial_number: Annotated[str, StringConstraints(max_length=100)] | None = None


class ServiceItemIn(Schema):
    service_item_id: uuid.UUID
    quantity: Decimal = Field(gt=0, max_digits=15, decimal_places=3)


class UnitIn(Schema):
    """One installed unit (Gree: indoor/outdoor units), with its codes and photos."""
    barcode: Annotated[str, StringConstraints(max_length=100)] | None = None
    serial_number: Annotated[str, StringConstraints(max_length=100)] | None = None
    model: Annotated[str, StringConstraints(max_length=200)] | None = None
    photo_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)
    data: dict = Field(default_factory=dict)


class ReceiptIn(Schema):
    summary: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    notes: Annotated[str, StringConstraints(max_length=5000)] | None = None
    parts_used: list[PartUsedIn] = Field(default_factory=list, max_length=100)
    old_parts: list[OldPartIn] = Field(default_factory=list, max_length=100)
    service_items: list[ServiceItemIn] = Field(default_factory=list, max_length=100)
    photo_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    file_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    signature_id: uuid.UUID | None = None
    units: list[UnitIn] = Field(default_factory=list, max_length=200)
    fault_type: Annotated[str, StringConstraints(max_length=100)] | None = None  # 故障类型
    custom_fields: dict | None = None


class IncompleteIn(Schema):
    """未完成: both the reason and the next visit are required (云维保)."""
    reason: Reason
    next_visit_at: AwareDatetime
    notes: Annotated[str, StringConstraints(max_length=5000)] | None = None


class MoneyLineIn(Schema):
    kind: Literal["part", "service_item", "travel", "labour", "other"]
    ref_id: uuid.UUID | None = None
    description: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    quantity: Decimal = Field(gt=0, max_digits=15, decimal_places=3)
    unit_price: Decimal = Field(ge=0, max_digits=15, decimal_places=2)


class SettleIn(Schema):
    warranty: bool | None = None
    fee_lines: list[MoneyLineIn] = Field(default_factory=list, max_length=100)
    cost_lines: list[MoneyLineIn] = Field(default_factory=list, max_length=100)


class VisitIn(Schema):
    satisfaction: int | None = Field(None, ge=1, le=5)
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


# -- settings: types, SLA, dispatch -----------------------------------------------------------

class FieldDefIn(Schema):
    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    label: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    kind: Literal[FIELD_KINDS]  # type: ignore[valid-type]
    required: bool = False
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(default_factory=list)
    min: Decimal | None = None
    max: Decimal | None = None
    max_length: int | None = Field(None, ge=1, le=10000)


class FlowIn(Schema):
    acceptance_required: bool = True
    approval_required: bool = False
    settlement: bool = False
    return_visit: bool = False
    close_roles: list[Literal["admin", "dispatcher", "technician"]] = Field(
        default_factory=lambda: ["admin", "dispatcher"], min_length=1)
    reopen_allowed: bool = False


class TicketTypeIn(Schema):
    code: Code
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    name_en: Annotated[str, StringConstraints(max_length=100)] | None = None
    enabled: bool = True
    fields: list[FieldDefIn] = Field(default_factory=list, max_length=100)
    flow: FlowIn = Field(default_factory=FlowIn)
    team_ids: list[uuid.UUID] = Field(default_factory=list)


class TicketTypePatch(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    name_en: Annotated[str, StringConstraints(max_length=100)] | None = None
    enabled: bool | None = None
    fields: list[FieldDefIn] | None = Field(None, max_length=100)
    flow: FlowIn | None = None
    team_ids: list[uuid.UUID] | None = None


class ReorderIn(Schema):
    codes: list[Code] = Field(min_length=1)


class SlaRuleIn(Schema):
    """Working minutes from creation to respond (accept), arrive (check in), complete."""
    respond_minutes: float | None = Field(None, gt=0, le=525_600)
    arrive_minutes: float | None = Field(None, gt=0, le=525_600)
    complete_minutes: float | None = Field(None, gt=0, le=525_600)


class WorkingHoursIn(Schema):
    timezone: str = "Asia/Shanghai"
    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(18, 0)


class SettingsIn(Schema):
    check_in_radius_m: int | None = Field(None, ge=10, le=100_000)
    working_hours: WorkingHoursIn | None = None
    sla_rules: dict[Priority, SlaRuleIn] | None = None
    dispatch_rules: list[Literal[DISPATCH_RULES]] | None = None  # type: ignore[valid-type]


# -- out ----------------------------------------------------------------------------------------

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


class FileOut(OutSchema):
    id: uuid.UUID
    ticket_id: uuid.UUID
    kind: str
    filename: str
    content_type: str
    size: int
    uploaded_by: uuid.UUID | None
    created_at: dt.datetime


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
    assistant_ids: list[uuid.UUID]
    team_id: uuid.UUID | None
    branch_id: uuid.UUID | None
    backfilled: bool = False  # 补录: entered after the work was done
    outsource_status: str | None
    reassignment_request: dict | None
    pool_team_id: uuid.UUID | None
    skill: str | None
    area: str | None
    custom_fields: dict
    created_at: dt.datetime
    updated_at: dt.datetime
    assigned_at: dt.datetime | None
    accepted_at: dt.datetime | None
    checked_in_at: dt.datetime | None
    check_in_latitude: Decimal | None
    check_in_longitude: Decimal | None
    check_in_distance_m: float | None
    check_in_accuracy_m: float | None
    check_in_flagged: bool
    completed_at: dt.datetime | None
    summary: str | None
    receipt: dict
    completed_by_branch: bool
    incomplete_reason: str | None
    next_visit_at: dt.datetime | None
    parts_used: list[PartUsedOut]
    respond_due_at: dt.datetime | None
    arrive_due_at: dt.datetime | None
    complete_due_at: dt.datetime | None
    overdue: list[str]
    status_since: dt.datetime | None
    state_seconds: dict
    paused_at: dt.datetime | None
    cancel_reason: str | None
    approved_at: dt.datetime | None
    settled_at: dt.datetime | None
    settlement: dict | None
    visited_at: dt.datetime | None
    satisfaction: int | None
    visit_comment: str | None
    closed_at: dt.datetime | None
    version: int


class TicketTypeOut(OutSchema):
    code: str
    name: str
    name_en: str | None
    builtin: bool
    enabled: bool
    sort_order: int
    fields: list[dict]
    flow: dict
    team_ids: list[uuid.UUID]


class SettingsOut(OutSchema):
    check_in_radius_m: int
    working_hours: dict | None
    sla_rules: dict
    dispatch_rules: list[str]
