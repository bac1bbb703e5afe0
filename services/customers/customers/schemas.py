"""RPC DTOs of the customers service."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from svc_common.validation import OutSchema, Schema

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 \-]{4,19}$")]


class ContactIn(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    phone: Phone | None = None


class AddressIn(Schema):
    text: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    latitude: Decimal | None = Field(None, ge=-90, le=90, decimal_places=6)
    longitude: Decimal | None = Field(None, ge=-180, le=180, decimal_places=6)


Tag = Annotated[str, StringConstraints(min_length=1, max_length=30)]


class CustomerIn(Schema):
    name: Name
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)
    addresses: list[AddressIn] = Field(default_factory=list, max_length=50)
    tags: list[Tag] = Field(default_factory=list, max_length=30)
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    # A customer with the same name or phone exists: 409 unless the caller says it is meant.
    allow_duplicate: bool = False


class CustomerPatch(Schema):
    """Fields to change; contacts / addresses given replace the whole list."""
    name: Name | None = None
    contacts: list[ContactIn] | None = Field(None, max_length=50)
    addresses: list[AddressIn] | None = Field(None, max_length=50)
    tags: list[Tag] | None = Field(None, max_length=30)
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    custom_fields: dict[str, Any] | None = None


class ChangeRequestIn(Schema):
    changes: CustomerPatch
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _something_changes(self):
        if not self.changes.model_fields_set:
            raise ValueError("changes: name at least one field to change")
        return self


class DecisionIn(Schema):
    note: Annotated[str, StringConstraints(max_length=500)] | None = None


class CustomFieldIn(Schema):
    entity: Literal["customer", "equipment"]
    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
    label: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    type: Literal["text", "number", "date", "select", "boolean"]
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100)
    required: bool = False


class CustomFieldPatch(Schema):
    label: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None = Field(None, max_length=100)
    required: bool | None = None


class CustomFieldOrderIn(Schema):
    entity: Literal["customer", "equipment"]
    keys: list[str] = Field(min_length=1, max_length=200)


class ProductTemplateIn(Schema):
    model: Name
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    brand: Annotated[str, StringConstraints(max_length=100)] | None = None
    specs: dict[str, str] = Field(default_factory=dict, max_length=100)
    maintenance_interval_days: int | None = Field(None, ge=1, le=3650)
    warranty_months: int | None = Field(None, ge=0, le=240)


class ProductTemplatePatch(Schema):
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    brand: Annotated[str, StringConstraints(max_length=100)] | None = None
    specs: dict[str, str] | None = Field(None, max_length=100)
    maintenance_interval_days: int | None = Field(None, ge=1, le=3650)
    warranty_months: int | None = Field(None, ge=0, le=240)


EquipmentStatus = Literal["active", "inactive", "scrapped"]


class EquipmentIn(Schema):
    """New equipment. With a template, model / warranty / maintenance interval default from it."""
    model: Name | None = None
    serial_number: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    template_id: uuid.UUID | None = None
    address_id: uuid.UUID | None = None
    install_date: dt.date | None = None
    warranty_end: dt.date | None = None
    maintenance_interval_days: int | None = Field(None, ge=1, le=3650)
    last_maintenance_date: dt.date | None = None
    next_maintenance_date: dt.date | None = None
    inspection_interval_days: int | None = Field(None, ge=1, le=3650)
    next_inspection_date: dt.date | None = None
    status: EquipmentStatus = "active"
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class EquipmentPatch(Schema):
    model: Name | None = None
    customer_id: uuid.UUID | None = None
    address_id: uuid.UUID | None = None
    install_date: dt.date | None = None
    warranty_end: dt.date | None = None
    maintenance_interval_days: int | None = Field(None, ge=1, le=3650)
    next_maintenance_date: dt.date | None = None
    inspection_interval_days: int | None = Field(None, ge=1, le=3650)
    next_inspection_date: dt.date | None = None
    status: EquipmentStatus | None = None
    custom_fields: dict[str, Any] | None = None


class QrBatchIn(Schema):
    size: int = Field(ge=1, le=20_000)
    note: Annotated[str, StringConstraints(max_length=200)] | None = None


class NewEquipmentIn(EquipmentIn):
    customer_id: uuid.UUID


class BindIn(Schema):
    """Bind a code to existing equipment, or register new equipment and bind it (建档贴码)."""
    equipment_id: uuid.UUID | None = None
    equipment: NewEquipmentIn | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.equipment_id is None) == (self.equipment is None):
            raise ValueError("give either equipment_id (existing equipment) or equipment (new equipment)")
        return self


class ReminderRuleIn(Schema):
    days: int = Field(ge=0, le=365)
    enabled: bool = True
    auto_create_order: bool = False


class FaultReportIn(Schema):
    description: Annotated[str, StringConstraints(max_length=2000)]
    contact_phone: Annotated[str, StringConstraints(max_length=30)]
    photo_base64: Annotated[str, StringConstraints(max_length=4_000_000)] | None = None
    photo_type: Literal["image/jpeg", "image/png", "image/webp"] | None = None


class ContactOut(OutSchema):
    id: uuid.UUID
    name: str
    phone: str | None


class AddressOut(OutSchema):
    id: uuid.UUID
    text: str
    latitude: Decimal | None
    longitude: Decimal | None


class CustomerOut(OutSchema):
    id: uuid.UUID
    name: str
    created_at: dt.datetime
    contacts: list[ContactOut]
    addresses: list[AddressOut]
    tags: list[str] = []
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    custom_fields: dict[str, Any] = {}
    updated_at: dt.datetime | None = None


class NearbyCustomerOut(OutSchema):
    """A customer near a point, at its nearest address (a map marker: no full record)."""
    customer_id: uuid.UUID
    name: str
    tags: list[str]
    owner_id: uuid.UUID | None
    team_id: uuid.UUID | None
    address_id: uuid.UUID
    address: str
    latitude: Decimal
    longitude: Decimal
    distance_m: float
    contact_name: str | None
    contact_phone: str | None


class EquipmentOut(OutSchema):
    id: uuid.UUID
    customer_id: uuid.UUID
    model: str
    serial_number: str
    install_date: dt.date | None
    warranty_end: dt.date | None
    created_at: dt.datetime
    template_id: uuid.UUID | None = None
    address_id: uuid.UUID | None = None
    status: str = "active"
    maintenance_interval_days: int | None = None
    last_maintenance_date: dt.date | None = None
    next_maintenance_date: dt.date | None = None
    inspection_interval_days: int | None = None
    last_inspection_date: dt.date | None = None
    next_inspection_date: dt.date | None = None
    custom_fields: dict[str, Any] = {}
    updated_at: dt.datetime | None = None


class HistoryOut(OutSchema):
    ticket_id: uuid.UUID
    number: str
    event_type: str
    ticket_type: str | None
    technician_id: uuid.UUID | None
    summary: str | None
    occurred_at: dt.datetime


class CustomFieldOut(OutSchema):
    id: uuid.UUID | None = None
    entity: str
    key: str
    label: str
    label_en: str | None = None
    type: str
    options: list[str] = []
    required: bool = False
    position: int
    builtin: bool = False


class ChangeRequestOut(OutSchema):
    id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    changes: dict[str, Any]
    reason: str | None
    status: str
    requested_by: uuid.UUID | None
    requested_at: dt.datetime
    decided_by: uuid.UUID | None
    decided_at: dt.datetime | None
    decision_note: str | None


class ProductTemplateOut(OutSchema):
    id: uuid.UUID
    model: str
    name: str | None
    brand: str | None
    specs: dict[str, str]
    maintenance_interval_days: int | None
    warranty_months: int | None
    created_at: dt.datetime


class QrBatchOut(OutSchema):
    id: uuid.UUID
    number: str
    size: int
    note: str | None
    created_at: dt.datetime
    created_by: uuid.UUID | None
    bound: int = 0


class QrCodeOut(OutSchema):
    id: uuid.UUID
    batch_id: uuid.UUID
    seq: int
    code: str
    status: str
    equipment_id: uuid.UUID | None
    bound_at: dt.datetime | None


class ReminderRuleOut(OutSchema):
    kind: str
    days: int
    enabled: bool
    auto_create_order: bool


class FaultReportOut(OutSchema):
    id: uuid.UUID
    number: str
    code: str
    equipment_id: uuid.UUID
    customer_id: uuid.UUID
    description: str
    contact_phone: str
    photo_type: str | None
    status: str
    created_at: dt.datetime
