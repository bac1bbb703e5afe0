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
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
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
    customer: Mapped[Customer] = relationship(back_populates="contacts")


class Address(TenantScoped, Base):
    __tablename__ = "addresses"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    text: Mapped[str] = mapped_column(sa.String(500))
    latitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))
    customer: Mapped[Customer] = relationship(back_populates="addresses")


class Equipment(TenantScoped, Base):
    __tablename__ = "equipment"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "serial_number", name="uq_equipment_serial"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    serial_number: Mapped[str] = mapped_column(sa.String(100))
    install_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    warranty_end: Mapped[dt.date | None] = mapped_column(sa.Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
