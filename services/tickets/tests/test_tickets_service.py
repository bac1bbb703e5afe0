"""The tickets service layer (nameko worker_factory, SQLite, no broker): JSON in, JSON out."""
import uuid

import pytest

from svc_common.errors import Conflict, NotFound, ValidationFailed
from svc_common.testing import context, service_worker, sqlite_database
from tickets import handlers
from tickets.models import PLATFORM, Base
from tickets.service import TicketsService


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


SNAPSHOT = {"customer_name": "申能", "contact_name": "王", "contact_phone": "13800000000", "address": "上海",
            "latitude": "31.2", "longitude": "121.5", "equipment_id": None, "equipment_model": None,
            "serial_number": None, "under_warranty": None}


def test_create_asks_customers_only_when_the_replica_has_not_got_the_customer(db):
    office = context(role="dispatcher")
    worker = service_worker(TicketsService, db, office)
    customer_id = str(uuid.uuid4())
    worker.customers.get_service_snapshot.return_value = {"customer_id": customer_id, **SNAPSHOT}
    order = worker.create_ticket({"type": "repair", "customer_id": customer_id, "description": "不制冷"})
    assert (order["number"], order["status"], order["customer_name"]) == ("WO000001", "pending_dispatch", "申能")
    worker.customers.get_service_snapshot.assert_called_once_with(customer_id=customer_id, equipment_id=None)

    worker.on_customer_created({"event_id": str(uuid.uuid4()), "type": "customer.created", "schema_version": 1,
                                "occurred_at": "2026-11-22T10:00:00+00:00", "tenant_id": str(office.tenant_id),
                                "data": {"customer_id": customer_id, "name": "申能（已复制）"}})
    worker.customers.get_service_snapshot.reset_mock()
    second = worker.create_ticket({"type": "repair", "customer_id": customer_id, "description": "异响"})
    assert second["customer_name"] == "申能（已复制）"
    worker.customers.get_service_snapshot.assert_not_called()


def test_bad_ids_and_bodies_are_field_errors(db):
    worker = service_worker(TicketsService, db, context(role="dispatcher"))
    with pytest.raises(ValidationFailed) as err:
        worker.get_ticket("not-a-uuid")
    assert err.value.errors == [{"field": "ticket_id", "message": "must be a UUID"}]
    with pytest.raises(ValidationFailed) as err:
        worker.create_ticket({"type": "Tele port!", "customer_id": str(uuid.uuid4())})
    assert {e["field"] for e in err.value.errors} == {"type", "description"}
    with pytest.raises(NotFound):
        worker.get_ticket(str(uuid.uuid4()))


def test_losing_an_optimistic_lock_race_is_a_409(db, monkeypatch):
    """The race itself runs on PostgreSQL in tests/integration/test_services.py; here, its mapping."""
    from sqlalchemy.orm.exc import StaleDataError

    worker = service_worker(TicketsService, db, context(role="dispatcher"))

    def lose_the_race(uow, ticket_id):
        raise StaleDataError("UPDATE statement on table 'tickets' expected to update 1 row(s); 0 were matched.")

    monkeypatch.setattr(handlers, "accept_ticket", lose_the_race)
    with pytest.raises(Conflict) as err:
        worker.accept_ticket(str(uuid.uuid4()))
    assert err.value.errors == [{"field": "version", "message": "concurrent update"}]


def test_bad_pagination_is_a_field_error(db):
    worker = service_worker(TicketsService, db, context(role="dispatcher"))
    with pytest.raises(ValidationFailed) as err:
        worker.list_tickets(offset="x")
    assert err.value.errors[0]["field"] == "offset"
    with pytest.raises(ValidationFailed) as err:
        worker.list_tickets(limit=0)
    assert err.value.errors[0]["field"] == "limit"
    assert worker.list_tickets(limit=10_000)["limit"] == 200


def test_a_redelivered_create_returns_the_order_it_already_created(db):
    """RabbitMQ redelivers an RPC whose worker died after committing but before acking:
    the same request id must not create a second order."""
    import dataclasses
    office = dataclasses.replace(context(role="dispatcher"), request_id="req-1")
    customer_id = str(uuid.uuid4())
    first_worker = service_worker(TicketsService, db, office)
    first_worker.customers.get_service_snapshot.return_value = {"customer_id": customer_id, **SNAPSHOT}
    body = {"type": "repair", "customer_id": customer_id, "description": "x"}
    first = first_worker.create_ticket(body)
    redelivered = service_worker(TicketsService, db, office)  # another instance takes the redelivery
    redelivered.customers.get_service_snapshot.return_value = {"customer_id": customer_id, **SNAPSHOT}
    assert redelivered.create_ticket(body)["id"] == first["id"]
    another_call = service_worker(TicketsService, db, dataclasses.replace(office, request_id="req-2"))
    another_call.customers.get_service_snapshot.return_value = {"customer_id": customer_id, **SNAPSHOT}
    assert another_call.create_ticket(body)["id"] != first["id"]
    assert first_worker.list_tickets()["total"] == 2
