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
    # For automatic dispatch: skills / product lines, service areas, teams (from team.updated).
    skills: Mapped[list] = mapped_column(sa.JSON, default=list)
    areas: Mapped[list] = mapped_column(sa.JSON, default=list)
    team_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    # Last known position (check-ins and position pings) and whether they take work now.
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    position_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    on_duty: Mapped[bool] = mapped_column(default=True)
    last_assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Every change bumps it: the in-memory dispatch index reloads rows changed since its last look.
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class TeamReplica(TenantScoped, Base):
    """Teams, branches (网点), centres and external teams, kept from the gateway's team.updated."""
    __tablename__ = "team_replicas"
    team_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    kind: Mapped[str] = mapped_column(sa.String(20))
    member_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    manager_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketType(TenantScoped, Base):
    """A work-order type of a tenant: its form (custom fields) and its flow switches."""
    __tablename__ = "ticket_types"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "code", name="uq_ticket_type_code"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(100))
    name_en: Mapped[str | None] = mapped_column(sa.String(100))
    builtin: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    fields: Mapped[list] = mapped_column(sa.JSON, default=list)
    flow: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    team_ids: Mapped[list] = mapped_column(sa.JSON, default=list)  # empty: visible to every team
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TenantSettings(TenantScoped, Base):
    """Per-tenant work-order settings (工单设置): check-in radius, SLA, working hours, dispatch rules."""
    __tablename__ = "ticket_settings"
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_ticket_settings_tenant"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    check_in_radius_m: Mapped[int] = mapped_column(default=500)
    working_hours: Mapped[dict | None] = mapped_column(sa.JSON)
    sla_rules: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    dispatch_rules: Mapped[list] = mapped_column(sa.JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class StoredFile(TenantScoped, Base):
    """A photo, file or signature attached to an order; the bytes live in the storage backend."""
    __tablename__ = "ticket_files"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    filename: Mapped[str] = mapped_column(sa.String(200))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int]
    storage_key: Mapped[str] = mapped_column(sa.String(300))
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


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
        sa.Index("ix_tickets_tenant_created", "tenant_id", "created_at"),
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
    # -- dispatch ---------------------------------------------------------------------------------
    assistant_ids: Mapped[list] = mapped_column(sa.JSON, default=list)  # 协同人
    team_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)          # team the order is for
    branch_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)  # whose queue holds it
    branch_path: Mapped[list] = mapped_column(sa.JSON, default=list)    # branches it went through
    outsource_status: Mapped[str | None] = mapped_column(sa.String(20))  # offered|accepted|declined
    outsourced_from_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    reassignment_request: Mapped[dict | None] = mapped_column(sa.JSON)
    pool_team_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    skill: Mapped[str | None] = mapped_column(sa.String(60))
    area: Mapped[str | None] = mapped_column(sa.String(60))
    custom_fields: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # -- clocks -----------------------------------------------------------------------------------
    status_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state_seconds: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    status_before_pause: Mapped[str | None] = mapped_column(sa.String(30))
    paused_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    respond_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    arrive_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    complete_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    overdue: Mapped[list] = mapped_column(sa.JSON, default=list)  # deadlines already raised
    # -- field execution --------------------------------------------------------------------------
    check_in_accuracy_m: Mapped[float | None]
    check_in_flagged: Mapped[bool] = mapped_column(default=False)
    receipt: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    completed_by_branch: Mapped[bool] = mapped_column(default=False)
    incomplete_reason: Mapped[str | None] = mapped_column(sa.Text)
    next_visit_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # -- after completion -------------------------------------------------------------------------
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    settlement: Mapped[dict | None] = mapped_column(sa.JSON)
    visited_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[int | None]
    visit_comment: Mapped[str | None] = mapped_column(sa.Text)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # 补录: work done before it was recorded, entered afterwards and verified by the office (no SLA, no
    # dispatch; its events say so).
    backfilled: Mapped[bool] = mapped_column(default=False)
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
