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
    __table_args__ = (sa.Index("ix_event_archive_replay", "tenant_id", "id"),)  # a tenant's replay in pages
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)  # first in the indexes below: none of its own
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    envelope: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    archived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CompletedWorkOrder(TenantScoped, Base):
    __tablename__ = "completed_work_orders"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "ticket_id", name="uq_completed_work_order"),
        sa.Index("ix_completed_work_orders_day", "tenant_id", "completed_at"),
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)  # first in the indexes below: none of its own
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
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)  # first in the indexes below: none of its own
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
        # no index on status (it changes with almost every event: updates could not be HOT); the
        # open orders by status are a rollup ("open")
        # the filters the rollups leave to the rows (selective ones): by technician, by customer
        sa.Index("ix_report_wo_technician", "tenant_id", "technician_id", "completed_at"),
        sa.Index("ix_report_wo_customer", "tenant_id", "customer_id"),
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)  # first in the indexes below: none of its own
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
    # 补录: recorded after the fact (ticket.created / ticket.completed backfilled): counts as work done,
    # left out of the response / arrival / completion times and SLA figures.
    backfilled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    # The latest return visit's ratings: dimension → stars, quick tags, rated by the customer or staff.
    visit_scores: Mapped[dict | None] = mapped_column(sa.JSON)
    visit_tags: Mapped[list | None] = mapped_column(sa.JSON)
    visit_by_customer: Mapped[bool | None] = mapped_column(sa.Boolean)
    # Summaries of the latest settlement and completion, so that the rollups are a function of this
    # row alone: "side|kind" → amount; service item → quantity; billed service item → [quantity, amount].
    settlement_kinds: Mapped[dict | None] = mapped_column(sa.JSON)
    items_used: Mapped[dict | None] = mapped_column(sa.JSON)
    items_billed: Mapped[dict | None] = mapped_column(sa.JSON)


class PartConsumption(TenantScoped, Base):
    """Consumption entries of the stock ledger (stock.moved of a consumption kind)."""
    __tablename__ = "report_part_consumption"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "move_id", name="uq_report_part_consumption"),
                      sa.Index("ix_report_part_consumption_at", "tenant_id", "moved_at"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)  # first in the indexes below: none of its own
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
    __table_args__ = (sa.UniqueConstraint("tenant_id", "customer_id", name="uq_report_customer"),
                      sa.Index("ix_report_customers_created", "tenant_id", "created_at"))
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


# -- rollups (pre-aggregated figures, maintained with the read models) ----------------------------

ROLLUP_MEASURES = 14  # m0 … m13: each rollup gives them its own meaning (rollups.SPECS)
TIMING_MEASURES = ("r", "a", "c")  # response, arrival, completion
HISTOGRAM_BUCKETS = 64  # per timing measure (rollups.bucket_of)


class Rollup(TenantScoped, Base):
    """Additive figures per company, rollup, grain (d: local day, m: local month) and period, and the
    rollup's dimensions ('' when absent, so that the key has no NULLs). Money is in cents and quantities
    in thousandths (integers: exact sums in SQL on every backend). Maintained by the projections in
    the same transaction as the rows they sum, by the difference each changed row makes."""
    __tablename__ = "report_rollups"
    __table_args__ = (sa.PrimaryKeyConstraint("tenant_id", "rollup", "grain", "period", "team", "type", "d1", "d2",
                                              name="pk_report_rollups"),)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)  # the key leads with it: no index of its own
    rollup: Mapped[str] = mapped_column(sa.String(16))
    grain: Mapped[str] = mapped_column(sa.String(1))
    period: Mapped[dt.date] = mapped_column(sa.Date)
    team: Mapped[str] = mapped_column(sa.String(36))
    type: Mapped[str] = mapped_column(sa.String(100))
    d1: Mapped[str] = mapped_column(sa.String(100))
    d2: Mapped[str] = mapped_column(sa.String(200))


class TimingHistogram(TenantScoped, Base):
    """Counts of response / arrival / completion times per log-spaced bucket (rollups.bucket_of), per
    company, grain, period, team and type: the p90 of a large window is read from these (percentiles
    do not add up; bucket counts do)."""
    __tablename__ = "report_timing_histograms"
    __table_args__ = (sa.PrimaryKeyConstraint("tenant_id", "grain", "period", "team", "type",
                                              name="pk_report_timing_histograms"),)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)
    grain: Mapped[str] = mapped_column(sa.String(1))
    period: Mapped[dt.date] = mapped_column(sa.Date)
    team: Mapped[str] = mapped_column(sa.String(36))
    type: Mapped[str] = mapped_column(sa.String(100))


# The measure and bucket columns, added to the mapped classes (declarative maps them like the others).
for _i in range(ROLLUP_MEASURES):
    setattr(Rollup, f"m{_i}", sa.Column(f"m{_i}", sa.BigInteger, nullable=False, default=0))
for _m in TIMING_MEASURES:
    for _i in range(HISTOGRAM_BUCKETS):
        setattr(TimingHistogram, f"{_m}{_i}", sa.Column(f"{_m}{_i}", sa.Integer, nullable=False, default=0))


class TenantState(TenantScoped, Base):
    """Per company: the time zone its rollups are kept in, and the rebuild that holds its live
    projections off (while set, consumers archive its events and leave the read models to the job)."""
    __tablename__ = "report_tenant_state"
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_report_tenant_state"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    rollup_zone: Mapped[str] = mapped_column(sa.String(64))
    rebuild_job_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)


class RebuildJob(TenantScoped, Base):
    """A rebuild of a company's read models from its archive, run in the background (handlers.run_rebuild)."""
    __tablename__ = "report_rebuild_jobs"
    __table_args__ = (sa.Index("ix_report_rebuild_jobs_status", "status", "heartbeat_at"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(sa.String(20))  # running | done | failed
    reason: Mapped[str] = mapped_column(sa.String(40))  # requested | time_zone
    requested_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    time_zone: Mapped[str] = mapped_column(sa.String(64))
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # archived events when it started
    replayed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    high_water: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # last archive id of the first pass
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
