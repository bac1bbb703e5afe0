"""Inventory's own tables: catalog (parts, categories, service items), locations (warehouse tree,
personal stock, in transit), balances, the stock ledger, requisitions/returns, transfers, old parts,
shortfalls, per-tenant settings."""
import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow

# Quantities of parts: decimal (metres of cable, litres of refrigerant), never float.
Quantity = sa.Numeric(18, 3)
Money = sa.Numeric(18, 2)


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class PartCategory(TenantScoped, Base):
    """A node of the parts' category tree (备件类别): 空调 → 压缩机."""
    __tablename__ = "part_categories"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "parent_id", "name", name="uq_part_categories_name"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(100))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("part_categories.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Part(TenantScoped, Base):
    """A catalog entry (备件品类), identified by its code within the tenant."""
    __tablename__ = "parts"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "code", name="uq_parts_code"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    unit: Mapped[str] = mapped_column(sa.String(20), default="个")
    min_stock: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))
    category_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("part_categories.id"), index=True)
    model: Mapped[str | None] = mapped_column(sa.String(100))  # 规格/型号
    sale_price: Mapped[Decimal | None] = mapped_column(Money)  # 销售价
    cost_price: Mapped[Decimal | None] = mapped_column(Money)  # 出库价 (cost of a consumed unit)
    barcode: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    image_ref: Mapped[str | None] = mapped_column(sa.String(500))
    notes: Mapped[str | None] = mapped_column(sa.String(1000))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServiceItem(TenantScoped, Base):
    """A priced service (服务项目: 上门费, 清洗, 加氟 ...) settled beside parts on a work order."""
    __tablename__ = "service_items"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "code", name="uq_service_items_code"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    unit: Mapped[str] = mapped_column(sa.String(20), default="次")
    price: Mapped[Decimal] = mapped_column(Money)
    cost_price: Mapped[Decimal | None] = mapped_column(Money)
    category: Mapped[str | None] = mapped_column(sa.String(100))
    notes: Mapped[str | None] = mapped_column(sa.String(1000))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class InventorySettings(TenantScoped, Base):
    """Per-tenant switches; a tenant without a row has the defaults."""
    __tablename__ = "inventory_settings"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_inventory_settings_tenant"),)
    allow_negative_stock: Mapped[bool] = mapped_column(default=False)


class Location(TenantScoped, Base):
    """Where stock is held: a warehouse (仓库, nestable: headquarters → regional → office),
    a technician's personal stock (个人备件库), or the tenant's in-transit location of transfers."""
    __tablename__ = "locations"
    # One personal location per technician; warehouses have no owner (NULLs never collide).
    __table_args__ = (sa.UniqueConstraint("tenant_id", "owner_user_id", name="uq_locations_owner"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(200))
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    manager_ids: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    level: Mapped[str | None] = mapped_column(sa.String(20))  # headquarters | regional | office
    code: Mapped[str | None] = mapped_column(sa.String(64))
    notes: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Balance(TenantScoped, Base):
    """Quantity of a part at a location: a projection of the ledger, updated in the same transaction."""
    __tablename__ = "balances"
    # No CHECK (quantity >= 0): a tenant may allow negative stock; the conditional decrement in
    # handlers keeps every other tenant's stock from going below zero.
    __table_args__ = (sa.UniqueConstraint("location_id", "part_id", name="uq_balances_location_part"),)
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
    kind: Mapped[str] = mapped_column(sa.String(30), index=True)
    from_location_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    to_location_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    ref_type: Mapped[str | None] = mapped_column(sa.String(30))
    ref_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    ref_number: Mapped[str | None] = mapped_column(sa.String(40))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    note: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Cost at the time of the movement, and who/for whom: consumption reports read these.
    unit_cost: Mapped[Decimal | None] = mapped_column(Money)
    technician_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)


@event.listens_for(StockMove, "before_update")
@event.listens_for(StockMove, "before_delete")
def _ledger_is_append_only(mapper, connection, target) -> None:
    # A wrong movement is corrected by a new (adjustment) move, never by editing history.
    raise PermissionError("stock moves are immutable")


class Requisition(TenantScoped, Base):
    """A technician's request (申领) for parts from a warehouse into their personal stock, or
    (kind "return", 退回) to give parts back from personal stock: both approved by the manager."""
    __tablename__ = "requisitions"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "number", name="uq_requisitions_number"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(40))
    technician_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20), default="issue", server_default="issue")
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
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    warehouse_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)  # whose managers must reconcile it
    manager_ids: Mapped[list[str] | None] = mapped_column(sa.JSON)
    # An open exception until a manager reconciles it (e.g. books the missing requisition) and resolves it.
    status: Mapped[str] = mapped_column(sa.String(20), default="open", server_default="open", index=True)
    resolution: Mapped[str | None] = mapped_column(sa.String(500))
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Transfer(TenantScoped, Base):
    """A transfer (调拨) between warehouses: shipped into transit at once, received in one or more parts."""
    __tablename__ = "transfers"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "number", name="uq_transfers_number"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(40))
    from_warehouse_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    to_warehouse_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(30), index=True)
    note: Mapped[str | None] = mapped_column(sa.String(500))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lines: Mapped[list["TransferLine"]] = relationship(
        back_populates="transfer", order_by="TransferLine.position", cascade="all, delete-orphan")


class TransferLine(TenantScoped, Base):
    __tablename__ = "transfer_lines"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    transfer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("parts.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    received_quantity: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))
    transfer: Mapped[Transfer] = relationship(back_populates="lines")


class OldPart(TenantScoped, Base):
    """A replaced part (旧件) brought back from a work order, held by the technician until returned
    to a warehouse (then it enters that warehouse's stock through the ledger)."""
    __tablename__ = "old_parts"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    ticket_number: Mapped[str] = mapped_column(sa.String(40))
    technician_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    part_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)  # as reported; no FK (see shortfalls)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    serial_number: Mapped[str | None] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(20), index=True)  # held | returned | void
    warehouse_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    move_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    returned_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    returned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
