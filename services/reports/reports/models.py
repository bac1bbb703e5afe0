"""Reports' own tables: the event archive and the read models built from it."""
import datetime as dt
import uuid
from decimal import Decimal
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


# -- read models of issue 7 -----------------------------------------------------------------

class Money(sa.TypeDecorator):
    """Decimal money, exact on every backend: NUMERIC on PostgreSQL, text on SQLite (whose
    NUMERIC is a float and would round sums)."""
    impl = sa.Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(sa.String(40) if dialect.name == "sqlite" else sa.Numeric(18, 2))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


class Quantity(Money):
    impl = sa.Numeric(18, 3)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(sa.String(40) if dialect.name == "sqlite" else sa.Numeric(18, 3))


class WorkOrderFact(TenantScoped, Base):
    """One row per work order, folded from every ticket.* event (order-independent: first/latest wins)."""
    __tablename__ = "report_work_orders"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "ticket_id", name="uq_report_work_order"),
        sa.Index("ix_report_wo_created", "tenant_id", "created_at"),
        sa.Index("ix_report_wo_completed", "tenant_id", "completed_at"),
        sa.Index("ix_report_wo_settled", "tenant_id", "settled_at"),
        sa.Index("ix_report_wo_status", "tenant_id", "status"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    number: Mapped[str | None] = mapped_column(sa.String(40))
    type: Mapped[str | None] = mapped_column(sa.String(100))
    priority: Mapped[str | None] = mapped_column(sa.String(40))
    team_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    technician_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    assistant_ids: Mapped[list | None] = mapped_column(sa.JSON)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    customer_name: Mapped[str | None] = mapped_column(sa.String(200))
    plan_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    service_request_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    attrs_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # time of the event the attributes came from
    status: Mapped[str | None] = mapped_column(sa.String(40))
    status_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    overdue_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    overdue_deadlines: Mapped[list | None] = mapped_column(sa.JSON)
    reopen_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    on_site_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    fee_total: Mapped[Decimal | None] = mapped_column(Money)
    cost_total: Mapped[Decimal | None] = mapped_column(Money)
    gross_profit: Mapped[Decimal | None] = mapped_column(Money)
    visited_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[int | None] = mapped_column(sa.Integer)


class SettlementLine(TenantScoped, Base):
    """Fee and cost lines of a work order's latest settlement (replaced by a later one)."""
    __tablename__ = "report_settlement_lines"
    __table_args__ = (sa.Index("ix_report_settlement_ticket", "tenant_id", "ticket_id"),
                      sa.Index("ix_report_settlement_at", "tenant_id", "settled_at"))
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    side: Mapped[str] = mapped_column(sa.String(10))  # fee | cost
    kind: Mapped[str] = mapped_column(sa.String(40))
    ref_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    description: Mapped[str | None] = mapped_column(sa.String(500))
    quantity: Mapped[Decimal | None] = mapped_column(Quantity)
    unit_price: Mapped[Decimal | None] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    settled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ServiceItemUsage(TenantScoped, Base):
    """Service items recorded on a work order's latest completion."""
    __tablename__ = "report_service_item_usage"
    __table_args__ = (sa.Index("ix_report_item_usage_ticket", "tenant_id", "ticket_id"),
                      sa.Index("ix_report_item_usage_at", "tenant_id", "completed_at"))
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    service_item_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    completed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PartConsumption(TenantScoped, Base):
    """Consumption entries of the stock ledger (stock.moved of a consumption kind)."""
    __tablename__ = "report_part_consumption"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "move_id", name="uq_report_part_consumption"),
                      sa.Index("ix_report_part_consumption_at", "tenant_id", "moved_at"))
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    move_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_cost: Mapped[Decimal | None] = mapped_column(Money)
    value: Mapped[Decimal | None] = mapped_column(Money)
    technician_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    warehouse_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    moved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ServiceRequestFact(TenantScoped, Base):
    __tablename__ = "report_service_requests"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "request_id", name="uq_report_service_request"),
                      sa.Index("ix_report_service_requests_at", "tenant_id", "created_at"))
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    request_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    number: Mapped[str | None] = mapped_column(sa.String(40))
    channel: Mapped[str | None] = mapped_column(sa.String(40))
    event_type: Mapped[str | None] = mapped_column(sa.String(100))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    converted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(sa.String(100))


class CustomerFact(TenantScoped, Base):
    __tablename__ = "report_customers"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "customer_id", name="uq_report_customer"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PersonFact(TenantScoped, Base):
    """Names (and teams) of users, for the rows of the personnel reports."""
    __tablename__ = "report_people"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "user_id", name="uq_report_person"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    role: Mapped[str | None] = mapped_column(sa.String(40))
    team_ids: Mapped[list | None] = mapped_column(sa.JSON)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class TeamFact(TenantScoped, Base):
    __tablename__ = "report_teams"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "team_id", name="uq_report_team"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    kind: Mapped[str | None] = mapped_column(sa.String(40))
    member_ids: Mapped[list | None] = mapped_column(sa.JSON)


class ReportSettings(TenantScoped, Base):
    """A tenant's reporting settings: its time zone (days are grouped in it) and performance rules."""
    __tablename__ = "report_settings"
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_report_settings"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    time_zone: Mapped[str] = mapped_column(sa.String(64))
    performance_weights: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
