"""Notify's own tables: the in-app inbox and the delivery log."""
import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)

CHANNELS = ("sms", "in_app")


class InboxMessage(TenantScoped, Base):
    """A message in a user's in-app inbox (站内信)."""
    __tablename__ = "inbox_messages"
    __table_args__ = (sa.Index("ix_inbox_user_created", "tenant_id", "user_id", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    # What the message is about, so a client can link to it (e.g. "ticket", ticket id).
    ref_type: Mapped[str | None] = mapped_column(sa.String(50))
    ref_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Delivery(TenantScoped, Base):
    """One notification to one recipient on one channel, caused by one event.

    Retries of the same event update the same row (attempts, status, error), hence the
    unique key on the source event, channel and recipient.
    """
    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "event_id", "channel", "recipient", name="uq_delivery_source"),
        sa.Index("ix_deliveries_tenant_created", "tenant_id", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(sa.String(20))
    recipient: Mapped[str] = mapped_column(sa.String(200))
    provider: Mapped[str] = mapped_column(sa.String(50))
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(20))  # sent | failed
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    text: Mapped[str] = mapped_column(sa.Text)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
