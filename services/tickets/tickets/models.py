"""Tickets' own tables: work orders, their timeline and receipts, and the technician roster."""
import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class Technician(TenantScoped, Base):
    """Roster of users, kept from the gateway's user.* events (no RPC to accounts)."""
    __tablename__ = "roster"
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(40))
    phone: Mapped[str | None] = mapped_column(sa.String(30))
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerReplica(TenantScoped, Base):
    """Customers as tickets needs them for a work order, kept from customer.* events.

    Creating an order reads this instead of asking the customers service each time; a
    customer not replicated yet (created a moment ago) is asked for over RPC once.
    """
    __tablename__ = "customer_replicas"
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    contact_name: Mapped[str | None] = mapped_column(sa.String(100))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(30))
    address: Mapped[str | None] = mapped_column(sa.String(500))
    latitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EquipmentReplica(TenantScoped, Base):
    """Equipment as tickets needs it (owner, model, serial, warranty), kept from equipment.* events."""
    __tablename__ = "equipment_replicas"
    equipment_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    model: Mapped[str] = mapped_column(sa.String(200))
    serial_number: Mapped[str] = mapped_column(sa.String(100))
    warranty_end: Mapped[dt.date | None] = mapped_column(sa.Date)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ticket(TenantScoped, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "number", name="uq_ticket_number"),
        sa.UniqueConstraint("tenant_id", "request_id", name="uq_ticket_request"),
        sa.Index("ix_tickets_tenant_status", "tenant_id", "status"),
        sa.Index("ix_tickets_tenant_assignee", "tenant_id", "assignee_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(30))
    # The RPC call that created it: a redelivered create (its first worker died after the commit,
    # before acking) finds this order instead of making a second one.
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(40))
    status: Mapped[str] = mapped_column(sa.String(30))
    priority: Mapped[str] = mapped_column(sa.String(20), default="normal")
    description: Mapped[str] = mapped_column(sa.Text)
    # Snapshot of the customer when the order was created (the service report shows these).
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    customer_name: Mapped[str] = mapped_column(sa.String(200))
    contact_name: Mapped[str | None] = mapped_column(sa.String(100))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(30))
    address: Mapped[str | None] = mapped_column(sa.String(500))
    latitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    equipment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    equipment_model: Mapped[str | None] = mapped_column(sa.String(200))
    serial_number: Mapped[str | None] = mapped_column(sa.String(100))
    under_warranty: Mapped[bool | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    check_in_latitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    check_in_longitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    check_in_distance_m: Mapped[float | None]
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[str | None] = mapped_column(sa.Text)
    # Optimistic locking: of two concurrent updates of one order, the second fails (409).
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}

    timeline: Mapped[list["TimelineEntry"]] = relationship(order_by="TimelineEntry.seq", cascade="all, delete-orphan")
    # selectin: every read of an order returns its receipt lines.
    parts_used: Mapped[list["PartUsed"]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class TimelineEntry(TenantScoped, Base):
    """Every transition of an order: who, when, from where, note."""
    __tablename__ = "ticket_timeline"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int]
    action: Mapped[str] = mapped_column(sa.String(40))
    from_status: Mapped[str | None] = mapped_column(sa.String(30))
    to_status: Mapped[str] = mapped_column(sa.String(30))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    actor_role: Mapped[str | None] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.Text)
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartUsed(TenantScoped, Base):
    """Receipt lines: parts the technician used on the order."""
    __tablename__ = "ticket_parts_used"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    quantity: Mapped[Decimal] = mapped_column(sa.Numeric(18, 3))
