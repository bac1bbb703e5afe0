"""RPC DTOs of the notify service."""
import datetime as dt
import uuid
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from svc_common.validation import OutSchema, Schema

from .domain import HHMM, LISTS, RECIPIENT_KINDS

Channel = Literal["sms", "email", "robot", "in_app"]
Locale = Literal["zh-CN", "en"]
Status = Literal["queued", "deferred", "sending", "sent", "failed", "muted", "rate_limited"]


def _hhmm(value: str | None) -> str | None:
    if value is not None and not HHMM.match(value):
        raise ValueError("must be a time HH:MM (00:00–23:59)")
    return value


class PageIn(Schema):
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=200)


class InboxQuery(PageIn):
    unread_only: bool = False
    category: str | None = None


class DeliveryQuery(PageIn):
    channel: Channel | None = None
    status: Status | None = None
    event_type: str | None = None


# -- configuration in -----------------------------------------------------------------------

class RecipientIn(Schema):
    kind: Literal[RECIPIENT_KINDS]  # type: ignore[valid-type]
    user_ids: list[uuid.UUID] = []
    # Channels for this recipient; by default the rule's.
    channels: list[Channel] | None = None
    team_id: uuid.UUID | None = None
    role: str | None = None
    list: str | None = None  # (declared last: the name shadows the builtin in this class body)

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "users" and not self.user_ids:
            raise ValueError("user_ids: name at least one user")
        if self.kind == "list" and self.list not in LISTS:
            raise ValueError(f"list: must be one of {', '.join(LISTS)}")
        if self.kind == "role" and not self.role:
            raise ValueError("role: name the role")
        return self


class RuleIn(Schema):
    enabled: bool = True
    urgent: bool = False  # urgent messages ignore quiet hours
    recipients: list[RecipientIn] = []
    channels: list[Channel] = Field(min_length=1)


class ProviderIn(Schema):
    kind: str
    enabled: bool = True
    settings: dict = {}
    # Omitted secrets keep their stored values, so a client never needs to read them back.
    secrets: dict[str, str] = {}

    @field_validator("settings")
    @classmethod
    def _endpoint(cls, value: dict):
        endpoint = value.get("endpoint")
        if endpoint is not None and urlsplit(str(endpoint)).scheme not in ("http", "https"):
            raise ValueError("endpoint must be an http(s) URL")
        return value


class TemplateIn(Schema):
    parts: dict[str, str]


class PreferenceIn(Schema):
    muted_channels: list[Channel] = []
    quiet_start: str | None = None
    quiet_end: str | None = None
    locale: Locale | None = None

    _times = field_validator("quiet_start", "quiet_end")(_hhmm)

    @model_validator(mode="after")
    def _both(self):
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet_end: give both quiet_start and quiet_end, or neither")
        return self


class SettingsIn(Schema):
    timezone: str = "Asia/Shanghai"
    locale: Locale = "zh-CN"
    quiet_start: str | None = None
    quiet_end: str | None = None
    digest_time: str | None = "08:00"
    portal_url: str | None = None
    per_recipient_per_hour: dict[Literal["sms", "email", "robot"], int] = {}
    per_tenant_per_minute: dict[Literal["sms", "email", "robot"], int] = {}

    _times = field_validator("quiet_start", "quiet_end", "digest_time")(_hhmm)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone") from None
        return value

    @field_validator("portal_url")
    @classmethod
    def _url(cls, value: str | None):
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("per_recipient_per_hour", "per_tenant_per_minute")
    @classmethod
    def _positive(cls, value: dict):
        if any(v < 1 for v in value.values()):
            raise ValueError("limits must be at least 1")
        return value


class ListMembersIn(Schema):
    user_ids: list[uuid.UUID]


# -- out ------------------------------------------------------------------------------------

class InboxMessageOut(OutSchema):
    id: uuid.UUID
    title: str
    body: str
    event_type: str
    category: str
    ref_type: str | None
    ref_id: uuid.UUID | None
    created_at: dt.datetime
    read_at: dt.datetime | None


class DeliveryOut(OutSchema):
    id: uuid.UUID
    channel: str
    recipient: str
    user_id: uuid.UUID | None
    provider: str
    provider_message_id: str | None
    provider_response: str | None
    status: str
    attempts: int
    error: str | None
    subject: str | None
    text: str
    urgent: bool
    send_after: dt.datetime | None
    sent_at: dt.datetime | None
    event_id: uuid.UUID
    event_type: str
    created_at: dt.datetime
    updated_at: dt.datetime


# -- configuration out (documentation of the gateway's answers) -----------------------------

class ProviderOut(OutSchema):
    channel: str
    kind: str
    enabled: bool
    settings: dict
    secrets: dict[str, str | None]  # masked: "****" + last four characters
    updated_at: str | None


class RuleOut(OutSchema):
    event_type: str
    default: bool  # the built-in rule (no rule of the tenant's own)
    enabled: bool
    urgent: bool
    recipients: list[dict]
    channels: list[str]


class TemplateOut(OutSchema):
    event_type: str
    channel: str
    locale: str
    parts: dict[str, str]
    custom: bool
    variables: list[str]


class SettingsOut(OutSchema):
    timezone: str
    locale: str
    quiet_start: str | None
    quiet_end: str | None
    digest_time: str | None
    portal_url: str | None
    per_recipient_per_hour: dict[str, int]
    per_tenant_per_minute: dict[str, int]


class PreferenceOut(OutSchema):
    user_id: uuid.UUID
    muted_channels: list[str]
    quiet_start: str | None
    quiet_end: str | None
    locale: str | None


class ListOut(OutSchema):
    name: str
    user_ids: list[uuid.UUID]
    subscribed: bool
