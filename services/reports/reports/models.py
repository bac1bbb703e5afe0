"""Reports' own tables: the event archive and the read models built from it."""
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class EventArchive(TenantScoped, Base):
    """Every consumed event as received, in arrival order, so read models can be rebuilt by replay."""
    __tablename__ = "event_archive"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True)
    type: Mapped[str] = mapped_column(sa.String(100), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    envelope: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    archived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CompletedWorkOrder(TenantScoped, Base):
    __tablename__ = "completed_work_orders"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "ticket_id", name="uq_completed_work_order"),
        sa.Index("ix_completed_work_orders_day", "tenant_id", "completed_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    number: Mapped[str] = mapped_column(sa.String(40))
    type: Mapped[str] = mapped_column(sa.String(100))
    technician_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    completed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CreatedWorkOrder(TenantScoped, Base):
    __tablename__ = "created_work_orders"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "ticket_id", name="uq_created_work_order"),
        sa.Index("ix_created_work_orders_day", "tenant_id", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    number: Mapped[str] = mapped_column(sa.String(40))
    type: Mapped[str] = mapped_column(sa.String(100))
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
