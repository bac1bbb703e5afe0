"""RPC DTOs of the desk: pydantic in, JSON out."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, field_validator

from svc_common.validation import OutSchema, Schema
from tickets.schemas import Code, FieldDefIn, Priority

from .domain import CHANNELS, COMPONENTS, REPORT_FIELDS

Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(max_length=2000)]
LongText = Annotated[str, StringConstraints(max_length=20000)]


# -- settings and types -----------------------------------------------------------------------------

class AssignmentRuleIn(Schema):
    event_type: Code | None = None
    channel: Channel | None = None
    assignee_id: uuid.UUID


class DimensionIn(Schema):
    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    label: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    label_en: Annotated[str, StringConstraints(max_length=50)] | None = None


class DeskSettingsIn(Schema):
    reopen_allowed: bool | None = None
    approval_note_required: bool | None = None
    assignment_rules: list[AssignmentRuleIn] | None = Field(None, max_length=100)
    satisfaction_dimensions: list[DimensionIn] | None = Field(None, min_length=1, max_length=10)
    satisfaction_tags: list[Annotated[str, StringConstraints(min_length=1, max_length=30)]] | None = \
        Field(None, max_length=50)
    auto_return_visit: bool | None = None
    kb_approval_required: bool | None = None
    settlement_approval_required: bool | None = None
    settlement_approver_role: Literal["admin", "dispatcher"] | None = None
    settlement_approver_ids: list[uuid.UUID] | None = Field(None, max_length=50)
    report_fields: list[Literal[REPORT_FIELDS]] | None = None  # type: ignore[valid-type]


class DeskSettingsOut(OutSchema):
    reopen_allowed: bool
    approval_note_required: bool
    assignment_rules: list[dict]
    satisfaction_dimensions: list[dict]
    satisfaction_tags: list[str]
    auto_return_visit: bool
    kb_approval_required: bool
    settlement_approval_required: bool
    settlement_approver_role: str
    settlement_approver_ids: list[uuid.UUID]
    report_fields: list[str]


class RequestTypeIn(Schema):
    code: Code
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    name_en: Annotated[str, StringConstraints(max_length=100)] | None = None
    enabled: bool = True
    fields: list[FieldDefIn] = Field(default_factory=list, max_length=100)
    approval_required: bool = False
    components: list[Literal[tuple(COMPONENTS)]] = Field(default_factory=list)  # type: ignore[valid-type]
    ticket_type: Code | None = None
    due_minutes: int | None = Field(None, gt=0, le=525600)


class RequestTypeOut(OutSchema):
    code: str
    name: str
    name_en: str | None
    enabled: bool
    fields: list[dict]
    approval_required: bool
    components: list[str]
    ticket_type: str | None
    due_minutes: int | None
    sort_order: int


# -- requests ---------------------------------------------------------------------------------------

class AttachmentIn(Schema):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    content_type: Annotated[str, StringConstraints(min_length=3, max_length=100)] = "application/octet-stream"
    content_base64: str = Field(min_length=1, max_length=14_000_000)


class RequestIn(Schema):
    channel: Channel
    event_type: Code
    subject: Text200
    description: LongText = ""
    customer_id: uuid.UUID | None = None
    equipment_id: uuid.UUID | None = None
    contact_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    contact_phone: Annotated[str, StringConstraints(max_length=30)] | None = None
    custom_fields: dict = Field(default_factory=dict)
    components: dict[str, dict] = Field(default_factory=dict)
    assignee_id: uuid.UUID | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)


class RequestAssignIn(Schema):
    assignee_id: uuid.UUID
    note: Note | None = None


class RequestNoteIn(Schema):
    body: Note | None = None
    template_id: uuid.UUID | None = None
    minutes: int = Field(0, ge=0, le=100000)


class RequestCompleteIn(Schema):
    outcome: Annotated[str, StringConstraints(min_length=1, max_length=60)] = "resolved"
    note: Note | None = None
    minutes: int = Field(0, ge=0, le=100000)


class RequestReasonIn(Schema):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class OptionalNoteIn(Schema):
    note: Note | None = None


class ConvertIn(Schema):
    type: Code | None = None  # the request type's default when absent
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000)] | None = None
    priority: Priority = "normal"
    team_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None  # when the request has none yet
    equipment_id: uuid.UUID | None = None
    custom_fields: dict = Field(default_factory=dict)
    auto_dispatch: bool = False


class NoteTemplateIn(Schema):
    title: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    body: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class NoteTemplateOut(OutSchema):
    id: uuid.UUID
    title: str
    body: str


class RequestNoteOut(OutSchema):
    id: uuid.UUID
    action: str
    body: str | None
    minutes: int
    author_id: uuid.UUID | None
    at: dt.datetime


class RequestOut(OutSchema):
    id: uuid.UUID
    number: str
    channel: str
    event_type: str
    status: str
    subject: str
    description: str
    customer_id: uuid.UUID | None
    equipment_id: uuid.UUID | None
    contact_name: str | None
    contact_phone: str | None
    custom_fields: dict
    components: dict
    attachments: list[dict]
    assignee_id: uuid.UUID | None
    created_by: uuid.UUID | None
    ticket_id: uuid.UUID | None
    approval: dict | None
    outcome: str | None
    due_at: dt.datetime | None
    timed_out: bool
    state_seconds: dict
    minutes_spent: int
    created_at: dt.datetime
    updated_at: dt.datetime
    done_at: dt.datetime | None
    version: int


# -- plans ------------------------------------------------------------------------------------------

class PlanIn(Schema):
    name: Text200
    customer_id: uuid.UUID
    equipment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=200)
    rrule: Annotated[str, StringConstraints(min_length=5, max_length=500)]
    starts_at: AwareDatetime
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=50)] = "Asia/Shanghai"
    ends_at: AwareDatetime | None = None
    lead_days: int = Field(0, ge=0, le=365)
    ticket_type: Code = "maintenance"
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    priority: Priority = "normal"
    mode: Literal["assign", "pool"] = "pool"
    technician_id: uuid.UUID | None = None
    pool_team_id: uuid.UUID | None = None
    paused: bool = False  # created paused: reviewed before it runs


class PlanOut(OutSchema):
    id: uuid.UUID
    name: str
    customer_id: uuid.UUID
    equipment_ids: list[uuid.UUID]
    rrule: str
    starts_at: dt.datetime
    timezone: str
    ends_at: dt.datetime | None
    lead_days: int
    ticket_type: str
    description: str
    priority: str
    mode: str
    technician_id: uuid.UUID | None
    pool_team_id: uuid.UUID | None
    paused: bool
    ended: bool
    state: str
    next_occurrence_at: dt.datetime | None
    created_at: dt.datetime


class OccurrenceOut(OutSchema):
    plan_id: uuid.UUID
    occurrence_at: dt.datetime
    target: str
    ticket_id: uuid.UUID | None
    created_at: dt.datetime


# -- settlement -------------------------------------------------------------------------------------

class LineIn(Schema):
    kind: Literal["part", "service_item", "travel", "labour", "other"]
    ref_id: uuid.UUID | None = None
    description: Annotated[str, StringConstraints(max_length=200)] | None = None
    quantity: Decimal = Field(gt=0, max_digits=15, decimal_places=3)
    unit_price: Decimal | None = Field(None, ge=0, max_digits=15, decimal_places=2)  # catalog price when absent


class SettlementIn(Schema):
    """Lines beyond the receipt's parts and service items (which are priced from the catalog)."""
    warranty: bool | None = None  # the order's warranty status when absent
    fee_lines: list[LineIn] = Field(default_factory=list, max_length=100)
    cost_lines: list[LineIn] = Field(default_factory=list, max_length=100)
    from_receipt: bool = True  # final stage: add the receipt's parts and service items
    note: Note | None = None


class BatchSettleIn(Schema):
    ticket_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)


class SettlementOut(OutSchema):
    id: uuid.UUID
    ticket_id: uuid.UUID
    number: str
    customer_name: str
    stage: str
    status: str
    warranty: bool | None
    fee_lines: list[dict]
    cost_lines: list[dict]
    fee_total: Decimal
    cost_total: Decimal
    gross_profit: Decimal
    note: str | None
    approved_by: uuid.UUID | None
    approved_at: dt.datetime | None
    settled_at: dt.datetime | None
    created_at: dt.datetime
    version: int


# -- return visits ----------------------------------------------------------------------------------

class VisitRateIn(Schema):
    scores: dict[str, int] = Field(default_factory=dict)
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=30)]] = Field(default_factory=list,
                                                                                       max_length=20)
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ManualVisitIn(VisitRateIn):
    ticket_id: uuid.UUID


class VisitOut(OutSchema):
    id: uuid.UUID
    ticket_id: uuid.UUID
    mode: str
    status: str
    token: str | None
    scores: dict
    satisfaction: int | None
    tags: list[str]
    comment: str | None
    visitor_id: uuid.UUID | None
    created_at: dt.datetime
    rated_at: dt.datetime | None


# -- sending the service report to the customer ------------------------------------------------------

class ReportSendIn(Schema):
    channel: Literal["email", "sms"]
    to: Annotated[str, StringConstraints(min_length=3, max_length=254)] | None = None  # default: the order's contact
    locale: Literal["zh-CN", "en"] = "zh-CN"


class ReportSentOut(OutSchema):
    ticket_id: uuid.UUID
    number: str
    channel: str
    to: str
    locale: str
    token: str
    report_path: str


# -- knowledge base and announcements -----------------------------------------------------------------

ShortList = list[Annotated[str, StringConstraints(min_length=1, max_length=60)]]


class ArticleIn(Schema):
    title: Text200
    category: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    fault_type: Annotated[str, StringConstraints(max_length=100)] | None = None
    symptom: LongText | None = None
    solution: Annotated[str, StringConstraints(min_length=1, max_length=20000)]
    tags: ShortList = Field(default_factory=list, max_length=30)
    fault_codes: ShortList = Field(default_factory=list, max_length=50)
    product_models: ShortList = Field(default_factory=list, max_length=50)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)


class ArticlePatch(Schema):
    title: Text200 | None = None
    category: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    fault_type: Annotated[str, StringConstraints(max_length=100)] | None = None
    symptom: LongText | None = None
    solution: Annotated[str, StringConstraints(min_length=1, max_length=20000)] | None = None
    tags: ShortList | None = None
    fault_codes: ShortList | None = None
    product_models: ShortList | None = None


class ArticleOut(OutSchema):
    id: uuid.UUID
    title: str
    category: str
    fault_type: str | None
    symptom: str | None
    solution: str
    tags: list[str]
    fault_codes: list[str]
    product_models: list[str]
    attachments: list[dict]
    status: str
    share_token: str | None

    @field_validator("attachments")
    @classmethod
    def _without_storage_keys(cls, value: list[dict]) -> list[dict]:
        return [{k: v for k, v in a.items() if k != "storage_key"} for a in value]
    author_id: uuid.UUID | None
    reviewed_by: uuid.UUID | None
    review_note: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class AnnouncementIn(Schema):
    title: Text200
    body: Annotated[str, StringConstraints(min_length=1, max_length=20000)]
    audience: Literal["all", "teams", "roles"] = "all"
    team_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    roles: list[Literal["admin", "dispatcher", "technician", "warehouse_manager"]] = Field(default_factory=list)


class AnnouncementOut(OutSchema):
    id: uuid.UUID
    title: str
    body: str
    audience: str
    team_ids: list[uuid.UUID]
    roles: list[str]
    author_id: uuid.UUID | None
    published_at: dt.datetime


# -- custom print templates ---------------------------------------------------------------------------

class ReportTemplateIn(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    ticket_type: Code | None = None
    filename: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"(?i).+\.xlsx$")]
    content_base64: str = Field(min_length=1, max_length=2_800_000)


class ReportTemplateOut(OutSchema):
    id: uuid.UUID
    name: str
    ticket_type: str | None
    filename: str
    created_at: dt.datetime


# -- back-filled service records (补录) -------------------------------------------------------------------

class RecordLineIn(Schema):
    ref_id: uuid.UUID
    quantity: Decimal = Field(gt=0, max_digits=15, decimal_places=3)


class ServiceRecordIn(Schema):
    ticket_type: Code
    customer_id: uuid.UUID
    equipment_id: uuid.UUID | None = None
    technician_id: uuid.UUID | None = None
    done_at: AwareDatetime
    summary: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    parts_used: list[RecordLineIn] = Field(default_factory=list, max_length=100)
    service_items: list[RecordLineIn] = Field(default_factory=list, max_length=100)


class ServiceRecordOut(OutSchema):
    id: uuid.UUID
    number: str
    ticket_type: str
    customer_id: uuid.UUID
    equipment_id: uuid.UUID | None
    technician_id: uuid.UUID | None
    done_at: dt.datetime
    summary: str
    parts_used: list[dict]
    service_items: list[dict]
    status: str
    submitted_by: uuid.UUID | None
    verified_by: uuid.UUID | None
    verify_note: str | None
    verified_at: dt.datetime | None
    created_at: dt.datetime
    ticket_id: uuid.UUID | None  # the work order it is (waiting for verification until verified)
    ticket_number: str | None


class ComponentsIn(Schema):
    components: dict[str, dict]
