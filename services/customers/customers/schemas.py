"""RPC DTOs of the customers service."""
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import Field, StringConstraints

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


class CustomerIn(Schema):
    name: Name
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)
    addresses: list[AddressIn] = Field(default_factory=list, max_length=50)


class EquipmentIn(Schema):
    model: Name
    serial_number: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    install_date: dt.date | None = None
    warranty_end: dt.date | None = None


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


class EquipmentOut(OutSchema):
    id: uuid.UUID
    customer_id: uuid.UUID
    model: str
    serial_number: str
    install_date: dt.date | None
    warranty_end: dt.date | None
    created_at: dt.datetime
