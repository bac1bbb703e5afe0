"""Dispatch modes against the real PostgreSQL (the tickets migrations, real row versions):
exactly one winner among 50 concurrent grabs; manual, batch and automatic dispatch; overdue raised
once by two concurrent SLA scans."""
import datetime as dt
import os
import threading
import uuid
from decimal import Decimal

import pytest
from sqlalchemy.orm.exc import StaleDataError

from svc_common.context import RequestContext
from svc_common.contracts import UserV1
from svc_common.errors import Conflict
from svc_common.uow import UnitOfWork
from svc_common.validation import parse
from tests import servers
from tickets import handlers, spatial
from tickets.models import PLATFORM
from tickets.schemas import AssignIn, BatchAssignIn, PublishIn, SettingsIn, TicketIn

pytestmark = pytest.mark.integration

SNAPSHOT = {"customer_name": "云维保客户", "contact_name": "张", "contact_phone": "13800000000", "address": "上海",
            "latitude": Decimal("31.230000"), "longitude": Decimal("121.470000"), "equipment_id": None,
            "equipment_model": None, "serial_number": None, "under_warranty": None}


@pytest.fixture(scope="module")
def db():
    os.environ.setdefault("DB_POOL_SIZE", "50")
    with servers.migrated_database("tickets", PLATFORM) as database:  # the migrations must work on PostgreSQL
        yield database


def office_of(tenant):
    return RequestContext(tenant_id=tenant, actor_id=uuid.uuid4(), actor_role="dispatcher")


def technicians(db, tenant, n, **position):
    out = []
    with UnitOfWork(db, office_of(tenant)) as uow:
        for i in range(n):
            user_id = uuid.uuid4()
            handlers.apply_user_event(uow, "user.created", UserV1(user_id=user_id, name=f"师傅{i}",
                                                                  username=f"t{i}", role="technician"))
            out.append(user_id)
        uow.session.flush()
        for i, user_id in enumerate(out):
            if position:
                tech = uow.session.get(handlers.Technician, user_id)
                tech.latitude = position["lat"] + i * 0.01
                tech.longitude = position["lng"]
    return out


def order(db, office, **fields):
    data = parse(TicketIn, {"type": "maintenance", "customer_id": str(uuid.uuid4()), "description": "保养",
                            **fields})
    with UnitOfWork(db, office) as uow:
        return handlers.create_ticket(uow, data, {"customer_id": data.customer_id, **SNAPSHOT})


def outbox_types(db, tenant, ticket_id):
    with db.session(None) as s:
        rows = s.execute(PLATFORM.outbox.select().where(PLATFORM.outbox.c.tenant_id == tenant)).all()
    return [r.type for r in rows if r.envelope["data"].get("ticket_id") == str(ticket_id)]


def test_exactly_one_of_50_concurrent_grabs_wins(db):
    tenant = uuid.uuid4()
    office = office_of(tenant)
    techs = technicians(db, tenant, 50)
    ticket = order(db, office)
    with UnitOfWork(db, office) as uow:
        handlers.publish_to_pool(uow, ticket.id, PublishIn())
    barrier = threading.Barrier(50)
    outcomes, lock = [], threading.Lock()

    def grab(user_id):
        ctx = RequestContext(tenant_id=tenant, actor_id=user_id, actor_role="technician")
        barrier.wait()
        try:
            with UnitOfWork(db, ctx) as uow:
                handlers.grab_ticket(uow, ticket.id)
            result = ("won", user_id)
        except (Conflict, StaleDataError) as exc:  # the service maps StaleDataError to the same 409
            result = ("lost", type(exc).__name__)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=grab, args=(t,)) for t in techs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o[1] for o in outcomes if o[0] == "won"]
    assert len(outcomes) == 50 and len(winners) == 1
    with UnitOfWork(db, office) as uow:
        saved = handlers.get_ticket(uow, ticket.id)
        assert (saved.status, saved.assignee_id) == ("accepted", winners[0])
        assert [e.action for e in saved.timeline].count("grab") == 1
    assert outbox_types(db, tenant, ticket.id).count("ticket.grabbed") == 1


def test_manual_batch_and_automatic_dispatch_on_postgres(db):
    spatial.forget_all()
    tenant = uuid.uuid4()
    office = office_of(tenant)
    near, far = technicians(db, tenant, 2, lat=31.231, lng=121.47)
    a, b, c = order(db, office), order(db, office), order(db, office)
    with UnitOfWork(db, office) as uow:
        handlers.assign_ticket(uow, a.id, AssignIn(technician_id=far, assistant_ids=[near]))
    with UnitOfWork(db, office) as uow:
        done = handlers.batch_assign(uow, BatchAssignIn(ticket_ids=[b.id], technician_id=far))
        assert done[0].status == "assigned"
    with UnitOfWork(db, office) as uow:
        handlers.update_settings(uow, SettingsIn(dispatch_rules=["nearest"]))
    with UnitOfWork(db, office) as uow:
        chosen = handlers.auto_dispatch(uow, c.id)
        assert chosen.assignee_id == near and "nearest" in chosen.timeline[-1].note
    # collaborating list on PostgreSQL's JSON
    with UnitOfWork(db, RequestContext(tenant_id=tenant, actor_id=near, actor_role="technician")) as uow:
        assert [t.id for t in handlers.list_tickets(uow, scope="collaborating")[0]] == [a.id]


def test_two_concurrent_sla_scans_raise_overdue_once(db):
    tenant = uuid.uuid4()
    office = office_of(tenant)
    with UnitOfWork(db, office) as uow:
        handlers.update_settings(uow, SettingsIn.model_validate({"sla_rules": {"normal": {"respond_minutes": 5}}}))
    ticket = order(db, office)
    later = ticket.created_at + dt.timedelta(minutes=6)
    barrier = threading.Barrier(2)

    def scan():
        barrier.wait()
        try:
            with UnitOfWork(db, RequestContext(tenant_id=tenant, actor_role="system")) as uow:
                handlers.raise_overdue(uow, ticket.id, later)
        except StaleDataError:
            pass

    threads = [threading.Thread(target=scan) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outbox_types(db, tenant, ticket.id).count("ticket.overdue") == 1
