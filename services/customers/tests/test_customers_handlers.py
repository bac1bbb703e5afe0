"""Customers handlers against a real SQLite database (unit tier, no broker)."""
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from customers import handlers
from customers.models import PLATFORM, Base
from customers.schemas import CustomerIn, EquipmentIn
from svc_common.errors import Conflict, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, sqlite_database, uow
from svc_common.validation import parse


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


CUSTOMER = {"name": "上海申能空调", "contacts": [{"name": "王经理", "phone": "13800138000"}],
            "addresses": [{"text": "上海市浦东新区世纪大道100号", "latitude": "31.235929", "longitude": "121.506058"}]}


def test_create_customer_records_contact_address_and_event(db):
    ctx = context()
    with uow(db, ctx) as u:
        customer = handlers.create_customer(u, parse(CustomerIn, CUSTOMER))
    with uow(db, ctx) as u:
        loaded = handlers.get_customer(u, customer.id)
        assert loaded.contacts[0].phone == "13800138000"
        assert loaded.addresses[0].latitude == Decimal("31.235929")
        assert loaded.tenant_id == ctx.tenant_id
    [event] = outbox_events(db)
    assert event["type"] == "customer.created"
    assert event["tenant_id"] == str(ctx.tenant_id)
    assert event["data"]["contacts"][0]["name"] == "王经理"


def test_other_tenant_cannot_see_customer_or_its_equipment(db):
    owner, stranger = context(), context()
    with uow(db, owner) as u:
        customer = handlers.create_customer(u, parse(CustomerIn, CUSTOMER))
        equipment = handlers.register_equipment(u, customer.id, parse(EquipmentIn, {"model": "KFR-72", "serial_number": "SN1"}))
    with uow(db, stranger) as u:
        with pytest.raises(NotFound):
            handlers.get_customer(u, customer.id)
        with pytest.raises(NotFound):
            handlers.get_equipment(u, equipment.id)
        assert handlers.list_customers(u, None, 0, 50) == ([], 0)
        # the same serial number is free in another tenant
        with pytest.raises(NotFound):
            handlers.register_equipment(u, customer.id, parse(EquipmentIn, {"model": "X", "serial_number": "SN1"}))


def test_duplicate_serial_is_conflict_and_writes_nothing(db):
    ctx = context()
    with uow(db, ctx) as u:
        customer = handlers.create_customer(u, parse(CustomerIn, CUSTOMER))
        handlers.register_equipment(u, customer.id, parse(EquipmentIn, {"model": "KFR-72", "serial_number": "SN1"}))
    with pytest.raises(Conflict) as err:
        with uow(db, ctx) as u:
            handlers.register_equipment(u, customer.id, parse(EquipmentIn, {"model": "Y", "serial_number": "SN1"}))
    assert err.value.errors == [{"field": "serial_number", "message": "already registered"}]
    with uow(db, ctx) as u:
        assert len(handlers.list_equipment(u, customer.id)) == 1
    assert [e["type"] for e in outbox_events(db)] == ["customer.created", "equipment.registered"]


def test_bad_input_names_the_field():
    bad = dict(CUSTOMER, addresses=[{"text": "x", "latitude": "91", "longitude": "0"}])
    with pytest.raises(ValidationFailed) as err:
        parse(CustomerIn, bad)
    assert err.value.errors[0]["field"] == "addresses.0.latitude"
    with pytest.raises(ValidationFailed) as err:
        parse(CustomerIn, {"name": "", "unknown": 1})
    assert {e["field"] for e in err.value.errors} == {"name", "unknown"}


def test_snapshot_checks_equipment_owner_and_warranty(db):
    ctx = context()
    with uow(db, ctx) as u:
        a = handlers.create_customer(u, parse(CustomerIn, CUSTOMER))
        b = handlers.create_customer(u, parse(CustomerIn, {"name": "B"}))
        eq = handlers.register_equipment(u, a.id, parse(EquipmentIn, {
            "model": "KFR-72", "serial_number": "SN9", "warranty_end": "2027-01-01"}))
    with uow(db, ctx) as u:
        snap = handlers.service_snapshot(u, a.id, eq.id, dt.date(2026, 11, 22))
        assert snap["under_warranty"] is True and snap["contact_phone"] == "13800138000"
        assert handlers.service_snapshot(u, a.id, eq.id, dt.date(2027, 1, 2))["under_warranty"] is False
        with pytest.raises(Conflict):
            handlers.service_snapshot(u, b.id, eq.id, dt.date(2026, 11, 22))
        with pytest.raises(NotFound):
            handlers.service_snapshot(u, uuid.uuid4(), None, dt.date(2026, 11, 22))
