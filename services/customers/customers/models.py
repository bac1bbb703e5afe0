"""Customers' own tables: customers, contacts, addresses, equipment."""
import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class Customer(TenantScoped, Base):
    __tablename__ = "customers"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200))
    # Lower-cased name without spaces: duplicate detection compares this.
    name_key: Mapped[str] = mapped_column(sa.String(200), default="", index=True)
    tags: Mapped[list] = mapped_column(sa.JSON, default=list)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    team_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)  # the gateway's team, as a plain id
    custom_fields: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, onupdate=utcnow)
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    # selectin: a customer is almost always read with its contacts and addresses (one query each).
    contacts: Mapped[list["Contact"]] = relationship(back_populates="customer", order_by="Contact.position",
                                                     cascade="all, delete-orphan", lazy="selectin")
    addresses: Mapped[list["Address"]] = relationship(back_populates="customer", order_by="Address.position",
                                                      cascade="all, delete-orphan", lazy="selectin")


class Contact(TenantScoped, Base):
    __tablename__ = "contacts"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(sa.String(100))
    phone: Mapped[str | None] = mapped_column(sa.String(30))
    phone_key: Mapped[str | None] = mapped_column(sa.String(30), index=True)  # digits only, for duplicates
    customer: Mapped[Customer] = relationship(back_populates="contacts")


class Address(TenantScoped, Base):
    __tablename__ = "addresses"
    # Nearby search narrows by a latitude band first (then longitude, then exact distance).
    __table_args__ = (sa.Index("ix_addresses_geo", "tenant_id", "latitude", "longitude"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    text: Mapped[str] = mapped_column(sa.String(500))
    latitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    customer: Mapped[Customer] = relationship(back_populates="addresses")


class Equipment(TenantScoped, Base):
    __tablename__ = "equipment"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "serial_number", name="uq_equipment_serial"),
                      sa.Index("ix_equipment_warranty_end", "tenant_id", "warranty_end"),
                      sa.Index("ix_equipment_next_maintenance", "tenant_id", "next_maintenance_date"),
                      sa.Index("ix_equipment_next_inspection", "tenant_id", "next_inspection_date"))
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    serial_number: Mapped[str] = mapped_column(sa.String(100))
    install_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    warranty_end: Mapped[dt.date | None] = mapped_column(sa.Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    template_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("product_templates.id"))
    address_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("addresses.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(sa.String(20), default="active")
    maintenance_interval_days: Mapped[int | None] = mapped_column(sa.Integer)
    last_maintenance_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    next_maintenance_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    inspection_interval_days: Mapped[int | None] = mapped_column(sa.Integer)  # 巡检
    last_inspection_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    next_inspection_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    custom_fields: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, onupdate=utcnow)


class CustomFieldDef(TenantScoped, Base):
    """A tenant's own field on customers or equipment (built-in fields are not rows: they are fixed)."""
    __tablename__ = "custom_field_defs"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "entity", "key", name="uq_custom_field_key"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    entity: Mapped[str] = mapped_column(sa.String(20))  # customer | equipment
    key: Mapped[str] = mapped_column(sa.String(50))
    label: Mapped[str] = mapped_column(sa.String(100))
    type: Mapped[str] = mapped_column(sa.String(20))  # text | number | date | select | boolean
    options: Mapped[list] = mapped_column(sa.JSON, default=list)
    required: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)


class ChangeRequest(TenantScoped, Base):
    """A requested change of customer data (轻流): applied only when approved; old and new kept."""
    __tablename__ = "change_requests"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(20))
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    changes: Mapped[dict] = mapped_column(sa.JSON)  # field → {"old": ..., "new": ...}
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")  # pending | approved | rejected
    requested_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(sa.String(500))


class ProductTemplate(TenantScoped, Base):
    __tablename__ = "product_templates"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "model", name="uq_product_template_model"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    model: Mapped[str] = mapped_column(sa.String(200))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    brand: Mapped[str | None] = mapped_column(sa.String(100))
    specs: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    maintenance_interval_days: Mapped[int | None] = mapped_column(sa.Integer)
    warranty_months: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EquipmentHistory(TenantScoped, Base):
    """Service history of a piece of equipment, built from tickets' events."""
    __tablename__ = "equipment_history"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    equipment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("equipment.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    number: Mapped[str] = mapped_column(sa.String(30))
    event_type: Mapped[str] = mapped_column(sa.String(50))
    ticket_type: Mapped[str | None] = mapped_column(sa.String(50))
    technician_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    summary: Mapped[str | None] = mapped_column(sa.String(2000))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class QrBatch(TenantScoped, Base):
    __tablename__ = "qr_batches"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(20))
    size: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)


class QrCode(TenantScoped, Base):
    """A QR maintenance code (维保编码). `code` is random and globally unique: the scan URL carries
    only it, so it must not be guessable and must lead to exactly one tenant."""
    __tablename__ = "qr_codes"
    __table_args__ = (sa.Index("ix_qr_codes_batch_seq", "batch_id", "seq"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    batch_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("qr_batches.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(sa.Integer)
    code: Mapped[str] = mapped_column(sa.String(20), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="unused")  # unused | bound
    equipment_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("equipment.id"), index=True)
    bound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    bound_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)


class ReminderRule(TenantScoped, Base):
    """预警 rule of a tenant; a kind without a row uses domain.DEFAULT_RULES."""
    __tablename__ = "reminder_rules"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "kind", name="uq_reminder_rule_kind"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(sa.String(40))
    days: Mapped[int] = mapped_column(sa.Integer)
    enabled: Mapped[bool] = mapped_column(default=True)
    auto_create_order: Mapped[bool] = mapped_column(default=False)


class ReminderSent(TenantScoped, Base):
    """One row per (equipment, kind, due date): the claim that makes each reminder fire once,
    across restarts and concurrent instances (INSERT ... ON CONFLICT DO NOTHING)."""
    __tablename__ = "reminders_sent"
    equipment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("equipment.id", ondelete="CASCADE"),
                                                    primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    due_date: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FaultReport(TenantScoped, Base):
    """A fault reported by a customer from the public scan page."""
    __tablename__ = "fault_reports"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(20))
    code: Mapped[str] = mapped_column(sa.String(20))
    equipment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("equipment.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    description: Mapped[str] = mapped_column(sa.String(2000))
    contact_phone: Mapped[str] = mapped_column(sa.String(30))
    photo: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    photo_type: Mapped[str | None] = mapped_column(sa.String(30))
    status: Mapped[str] = mapped_column(sa.String(20), default="new")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
