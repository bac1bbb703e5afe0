"""Notify's own tables: inbox, delivery log, per-tenant configuration and the replicas it needs."""
import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)

# in_app is the inbox; robot is the tenant's group robot (WeCom, DingTalk or Feishu).
CHANNELS = ("sms", "email", "robot", "in_app")
# queued → sending → sent | failed; deferred (quiet hours) → queued; the rest are final and never sent.
STATUSES = ("queued", "deferred", "sending", "sent", "failed", "muted", "rate_limited")


class InboxMessage(TenantScoped, Base):
    """A message in a user's in-app inbox (站内信)."""
    __tablename__ = "inbox_messages"
    __table_args__ = (sa.Index("ix_inbox_user_created", "tenant_id", "user_id", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    # The mobile app's inbox tabs (日报, 工单, 备件, 服务台, 审批, 系统通知 …), see domain.category_of.
    category: Mapped[str] = mapped_column(sa.String(30), default="system")
    # What the message is about, so a client can link to it (e.g. "ticket", ticket id).
    ref_type: Mapped[str | None] = mapped_column(sa.String(50))
    ref_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Delivery(TenantScoped, Base):
    """One notification to one recipient on one channel, caused by one event.

    The unique key on (event, channel, recipient) is the idempotency guarantee: a redelivered
    event, or a second notify instance, cannot make a second row, hence a second message.
    """
    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "event_id", "channel", "recipient", name="uq_delivery_source"),
        sa.Index("ix_deliveries_tenant_created", "tenant_id", "created_at"),
        # rate limits: per recipient, and per tenant and channel
        sa.Index("ix_deliveries_recipient", "tenant_id", "channel", "recipient", "created_at"),
        sa.Index("ix_deliveries_channel_created", "tenant_id", "channel", "created_at"),
        sa.Index("ix_deliveries_status_due", "status", "send_after"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(sa.String(20))
    recipient: Mapped[str] = mapped_column(sa.String(200))
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)  # when the recipient is a user
    provider: Mapped[str] = mapped_column(sa.String(50))
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(200))
    provider_response: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20))
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    subject: Mapped[str | None] = mapped_column(sa.String(200))
    text: Mapped[str] = mapped_column(sa.Text)
    # The template variables, for template-based SMS providers (Aliyun, Tencent) at send time.
    variables: Mapped[dict | None] = mapped_column(sa.JSON)
    urgent: Mapped[bool] = mapped_column(default=False)
    send_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # quiet hours end
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    event_occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProviderConfig(TenantScoped, Base):
    """The provider a tenant chose for a channel, with its settings and its secrets.

    Secrets (access keys, robot secrets, SMTP password) are never logged nor returned by the API.
    """
    __tablename__ = "provider_configs"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "channel", name="uq_provider_channel"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(sa.String(20))
    kind: Mapped[str] = mapped_column(sa.String(30))
    enabled: Mapped[bool] = mapped_column(default=True)
    settings: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    secrets: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TemplateOverride(TenantScoped, Base):
    """A tenant's own text for (event type, channel, locale), checked when saved."""
    __tablename__ = "notification_templates"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "event_type", "channel", "locale", name="uq_template"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    channel: Mapped[str] = mapped_column(sa.String(20))
    locale: Mapped[str] = mapped_column(sa.String(10))
    parts: Mapped[dict] = mapped_column(sa.JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SubscriptionRule(TenantScoped, Base):
    """Who gets told of an event type, on which channels (replaces the built-in default rule)."""
    __tablename__ = "subscription_rules"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "event_type", name="uq_rule_event"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    urgent: Mapped[bool] = mapped_column(default=False)
    recipients: Mapped[list] = mapped_column(sa.JSON)  # [{kind, user_ids?, team_id?, list?, role?}]
    channels: Mapped[list] = mapped_column(sa.JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ListMember(TenantScoped, Base):
    """A subscriber of a named list (待分配工单订阅, 工单池订阅, 管理员日报 …)."""
    __tablename__ = "list_members"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "list_name", "user_id", name="uq_list_member"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    list_name: Mapped[str] = mapped_column(sa.String(60))
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)


class UserPreference(TenantScoped, Base):
    """A user's own muted channels and quiet hours."""
    __tablename__ = "user_preferences"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "user_id", name="uq_preference_user"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    muted_channels: Mapped[list] = mapped_column(sa.JSON, default=list)
    quiet_start: Mapped[str | None] = mapped_column(sa.String(5))  # "HH:MM" in the tenant's zone
    quiet_end: Mapped[str | None] = mapped_column(sa.String(5))
    locale: Mapped[str | None] = mapped_column(sa.String(10))


class TenantSettings(TenantScoped, Base):
    """Per-tenant notification settings; absent row = the defaults of domain.TenantDefaults."""
    __tablename__ = "tenant_settings"
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_tenant_settings"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    values: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    last_digest_on: Mapped[dt.date | None] = mapped_column(sa.Date)


class UserReplica(TenantScoped, Base):
    """Recipients' names, phones and emails, kept from the gateway's user.* events."""
    __tablename__ = "user_replicas"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "user_id", name="uq_user_replica"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(50))
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    team_ids: Mapped[list] = mapped_column(sa.JSON, default=list)


class TeamReplica(TenantScoped, Base):
    """Team members, kept from the gateway's team.updated events."""
    __tablename__ = "team_replicas"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "team_id", name="uq_team_replica"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    member_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    manager_ids: Mapped[list] = mapped_column(sa.JSON, default=list)


class DigestCounter(TenantScoped, Base):
    """Per-day figures of the daily digest (管理员日报), counted from the events as they pass."""
    __tablename__ = "digest_counters"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "day", "metric", name="uq_digest_counter"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    day: Mapped[dt.date] = mapped_column(sa.Date)
    metric: Mapped[str] = mapped_column(sa.String(40))
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0)
