"""Inventory's own tables: parts, locations, balances, the stock ledger, requisitions, shortfalls."""
import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow

# Quantities of parts: decimal (metres of cable, litres of refrigerant), never float.
Quantity = sa.Numeric(18, 3)


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class Part(TenantScoped, Base):
    """A catalog entry (备件品类), identified by its code within the tenant."""
    __tablename__ = "parts"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "code", name="uq_parts_code"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    unit: Mapped[str] = mapped_column(sa.String(20), default="个")
    min_stock: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Location(TenantScoped, Base):
    """Where stock is held: a warehouse (仓库) or a technician's personal stock (个人备件库)."""
    __tablename__ = "locations"
    # One personal location per technician; warehouses have no owner (NULLs never collide).
    __table_args__ = (sa.UniqueConstraint("tenant_id", "owner_user_id", name="uq_locations_owner"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(200))
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    manager_ids: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Balance(TenantScoped, Base):
    """Quantity of a part at a location: a projection of the ledger, updated in the same transaction."""
    __tablename__ = "balances"
    __table_args__ = (
        sa.UniqueConstraint("location_id", "part_id", name="uq_balances_location_part"),
        # Backstop for the conditional decrement in handlers: stock never goes negative.
        sa.CheckConstraint("quantity >= 0", name="ck_balances_not_negative"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    location_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("parts.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))


class StockMove(TenantScoped, Base):
    """One line of the immutable stock ledger (出入库记录): a quantity going from → to."""
    __tablename__ = "stock_moves"
    __table_args__ = (sa.CheckConstraint("quantity > 0", name="ck_stock_moves_positive"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("parts.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    kind: Mapped[str] = mapped_column(sa.String(30))
    from_location_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    to_location_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    ref_type: Mapped[str | None] = mapped_column(sa.String(30))
    ref_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    ref_number: Mapped[str | None] = mapped_column(sa.String(40))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    note: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


@event.listens_for(StockMove, "before_update")
@event.listens_for(StockMove, "before_delete")
def _ledger_is_append_only(mapper, connection, target) -> None:
    # A wrong movement is corrected by a new (adjustment) move, never by editing history.
    raise PermissionError("stock moves are immutable")


class Requisition(TenantScoped, Base):
    """A technician's request (申领) for parts from a warehouse into their personal stock."""
    __tablename__ = "requisitions"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "number", name="uq_requisitions_number"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(40))
    technician_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    note: Mapped[str | None] = mapped_column(sa.String(500))
    reject_reason: Mapped[str | None] = mapped_column(sa.String(500))
    requested_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    lines: Mapped[list["RequisitionLine"]] = relationship(
        back_populates="requisition", order_by="RequisitionLine.position", cascade="all, delete-orphan")


class RequisitionLine(TenantScoped, Base):
    __tablename__ = "requisition_lines"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    requisition_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("requisitions.id", ondelete="CASCADE"),
                                                      index=True)
    position: Mapped[int] = mapped_column(default=0)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("parts.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    approved_quantity: Mapped[Decimal | None] = mapped_column(Quantity)
    requisition: Mapped[Requisition] = relationship(back_populates="lines")


class ConsumptionShortfall(TenantScoped, Base):
    """A work order used more of a part than the technician's personal stock held.

    part_id is what the ticket reported, deliberately without a foreign key: the record
    must be kept even when the part is unknown here, so a manager can reconcile it.
    """
    __tablename__ = "consumption_shortfalls"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    ticket_number: Mapped[str] = mapped_column(sa.String(40))
    technician_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    requested: Mapped[Decimal] = mapped_column(Quantity)
    available: Mapped[Decimal] = mapped_column(Quantity)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
