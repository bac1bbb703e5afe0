"""The shared platform pieces, without a broker: contracts, outbox rows, idempotent claims, tenancy, errors."""
import datetime as dt
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from nameko.exceptions import deserialize, serialize
from pydantic import ValidationError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from svc_common import catalog
from svc_common.contracts import EVENTS, EventEnvelope
from svc_common.db import TenantScoped, UTCDateTime, platform_tables
from svc_common.errors import Conflict, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, sqlite_database
from svc_common.uow import UnitOfWork

ROOT = Path(__file__).resolve().parents[2]


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class Note(TenantScoped, Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
    at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def test_emit_validates_against_the_contract_and_writes_nothing_when_invalid(db):
    ctx = context()
    with pytest.raises(ValidationError):
        with UnitOfWork(db, ctx) as uow:
            uow.session.add(Note(text="state change"))
            uow.emit("customer.created", {"customer_id": "not-a-uuid", "name": "A"})
    with UnitOfWork(db, ctx) as uow:
        assert uow.session.scalars(sa.select(Note)).all() == []  # the state change rolled back with it
    assert outbox_events(db) == []


def test_emitted_envelope_carries_tenant_actor_correlation_and_parses_back(db):
    ctx = context(role="dispatcher")
    with UnitOfWork(db, ctx) as uow:
        uow.emit("customer.created", {"customer_id": str(uuid.uuid4()), "name": "申能"})
    [raw] = outbox_events(db)
    event = EventEnvelope.model_validate(raw)
    assert (event.tenant_id, event.correlation_id, event.actor.id, event.actor.role) == (
        ctx.tenant_id, ctx.correlation_id, ctx.actor_id, "dispatcher")
    assert event.occurred_at.tzinfo is not None
    assert event.payload().name == "申能"


def test_consume_claims_an_event_once_and_only_when_the_effect_commits(db):
    ctx, event_id = context(), uuid.uuid4()
    with pytest.raises(RuntimeError):
        with UnitOfWork(db, ctx) as uow:
            assert uow.consume("svc.handler", event_id) is True
            raise RuntimeError("handler failed after claiming")
    with UnitOfWork(db, ctx) as uow:  # the failed attempt left no claim: the retry does the work
        assert uow.consume("svc.handler", event_id) is True
    with UnitOfWork(db, ctx) as uow:
        assert uow.consume("svc.handler", event_id) is False and uow.duplicate
        assert uow.consume("other.handler", event_id) is True  # each consumer claims for itself


def test_sessions_are_tenant_scoped_by_construction(db):
    a, b = context(), context()
    with UnitOfWork(db, a) as uow:
        uow.session.add(Note(text="a's"))
    with UnitOfWork(db, b) as uow:
        assert uow.session.scalars(sa.select(Note)).all() == []
        assert uow.session.execute(sa.update(Note).values(text="hijack")).rowcount == 0
        uow.session.add(Note(text="b's"))
    with UnitOfWork(db, a) as uow:
        [note] = uow.session.scalars(sa.select(Note)).all()
        assert note.text == "a's" and note.tenant_id == a.tenant_id
    with pytest.raises(PermissionError):
        with UnitOfWork(db, b) as uow:
            uow.session.add(Note(text="planted", tenant_id=a.tenant_id))


def test_naive_datetimes_are_refused_and_aware_ones_come_back_in_utc(db):
    ctx = context()
    with pytest.raises(sa.exc.StatementError):
        with UnitOfWork(db, ctx) as uow:
            uow.session.add(Note(text="x", at=dt.datetime(2026, 1, 1, 8, 0)))
    shanghai = dt.timezone(dt.timedelta(hours=8))
    with UnitOfWork(db, ctx) as uow:
        uow.session.add(Note(text="y", at=dt.datetime(2026, 1, 1, 8, 0, tzinfo=shanghai)))
    with UnitOfWork(db, ctx) as uow:
        at = uow.session.scalar(sa.select(Note.at))
        assert at == dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.timezone.utc) and at.utcoffset() == dt.timedelta(0)


def test_document_numbers_are_per_tenant_series(db):
    a, b = context(), context()
    with UnitOfWork(db, a) as uow:
        assert [uow.next_number("wo", "WO") for _ in range(2)] == ["WO000001", "WO000002"]
    with UnitOfWork(db, b) as uow:
        assert uow.next_number("wo", "WO") == "WO000001"


@pytest.mark.parametrize("error", [NotFound("gone", [{"field": "id", "message": "not found"}]),
                                   Conflict("busy"), ValidationFailed("bad", [{"field": "x", "message": "m"}])])
def test_typed_errors_survive_nameko_serialization_with_their_fields(error):
    back = deserialize(serialize(error))
    assert type(back) is type(error) and back.errors == error.errors and str(back) == str(error)


def test_event_catalog_is_generated_from_the_contracts_and_up_to_date():
    document = catalog.build()
    assert (ROOT / "docs" / "asyncapi.yaml").read_text() == catalog.render(), \
        "docs/asyncapi.yaml is stale: python -m svc_common.catalog > docs/asyncapi.yaml"
    for event_type, (producer, versions) in EVENTS.items():
        channel = document["channels"][f"{producer}.events/{event_type}"]
        assert channel["bindings"]["amqp"]["exchange"]["name"] == f"{producer}.events"
        for version, contract in versions.items():
            message = document["components"]["messages"][f"{event_type}.v{version}"]
            assert message["payload"]["allOf"][1]["properties"]["data"]["$ref"].endswith(contract.__name__)
            assert contract.__name__ in document["components"]["schemas"]
