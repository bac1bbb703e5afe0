"""RPC DTOs of the notify service."""
import datetime as dt
import uuid
from typing import Literal

from pydantic import Field

from svc_common.validation import OutSchema, Schema


class PageIn(Schema):
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=200)


class InboxQuery(PageIn):
    unread_only: bool = False


class DeliveryQuery(PageIn):
    channel: Literal["sms", "in_app"] | None = None


class InboxMessageOut(OutSchema):
    id: uuid.UUID
    title: str
    body: str
    event_type: str
    ref_type: str | None
    ref_id: uuid.UUID | None
    created_at: dt.datetime
    read_at: dt.datetime | None


class DeliveryOut(OutSchema):
    id: uuid.UUID
    channel: str
    recipient: str
    provider: str
    provider_message_id: str | None
    status: str
    attempts: int
    error: str | None
    text: str
    event_id: uuid.UUID
    event_type: str
    created_at: dt.datetime
    updated_at: dt.datetime
