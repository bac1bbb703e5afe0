"""Stock under concurrency on the real PostgreSQL: many parallel requisition approvals and work-order
consumptions on one part. No oversell, no negative balance, nothing lost or booked twice, the ledger
and the balances agree, and the low-stock alert fires exactly once."""
import threading
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from inventory import catalog, handlers
from inventory.models import PLATFORM, Balance, ConsumptionShortfall, Location, StockMove
from inventory.schemas import ApprovalIn, PartIn, ReceiveIn, RequisitionIn, ReturnIn, WarehouseIn
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import utcnow
from svc_common.errors import Conflict
from svc_common.testing import context, outbox_events, uow
from svc_common.uow import UnitOfWork
from svc_common.validation import parse
from tests import servers

pytestmark = pytest.mark.integration

STOCK = Decimal(50)
REQUISITIONS = 40        # 2 each: 80 asked for, 50 in stock
CONSUMPTIONS = 30        # 1 each from the one technician who also receives stock meanwhile
START_HELD = Decimal(5)  # what that technician holds before the race


@pytest.fixture
def pg_db():
    with servers.migrated_database("inventory", PLATFORM) as db:
        yield db


def completed_envelope(tenant_id, technician_id, part_id) -> EventEnvelope:
    return EventEnvelope(event_id=uuid.uuid4(), type="ticket.completed", occurred_at=utcnow(), tenant_id=tenant_id,
                         data={"ticket_id": str(uuid.uuid4()), "number": "WO", "type": "repair",
                               "technician_id": str(technician_id), "customer_id": str(uuid.uuid4()),
                               "customer_name": "c", "completed_at": utcnow().isoformat(), "summary": "s",
                               "parts_used": [{"part_id": str(part_id), "quantity": "1"}]})


def test_parallel_approvals_and_consumptions_on_one_part(pg_db):
    admin = context()
    tenant = admin.tenant_id
    manager = context(tenant, role="warehouse_manager")
    hot = context(tenant, role="technician")  # receives stock and consumes it at the same time
    others = [context(tenant, role="technician") for _ in range(7)]
    with uow(pg_db, admin) as u:
        warehouse = handlers.create_warehouse(u, parse(WarehouseIn, {"name": "总仓",
                                                                    "manager_ids": [str(manager.actor_id)]}))
        side = handlers.create_warehouse(u, parse(WarehouseIn, {"name": "备用仓",
                                                               "manager_ids": [str(manager.actor_id)]}))
        part = catalog.create_part(u, parse(PartIn, {"code": "HOT", "name": "热门件", "min_stock": "10",
                                                     "cost_price": "10.00"}))
        handlers.receive_stock(u, warehouse.id, parse(ReceiveIn, {"lines": [{"part_id": str(part.id),
                                                                             "quantity": str(STOCK)}]}))
        handlers.receive_stock(u, side.id, parse(ReceiveIn, {"lines": [{"part_id": str(part.id), "quantity": "5"}]}))
    # The hot technician starts with 5 from the side warehouse.
    with uow(pg_db, hot) as u:
        first = handlers.request_requisition(u, parse(RequisitionIn, {
            "warehouse_id": str(side.id), "lines": [{"part_id": str(part.id), "quantity": str(START_HELD)}]}))
    with uow(pg_db, manager) as u:
        handlers.approve_requisition(u, first.id, ApprovalIn())

    requisitions = []
    for i in range(REQUISITIONS):
        tech = hot if i % 4 == 0 else others[i % len(others)]
        with uow(pg_db, tech) as u:
            requisitions.append((tech, handlers.request_requisition(u, parse(RequisitionIn, {
                "warehouse_id": str(warehouse.id), "lines": [{"part_id": str(part.id), "quantity": "2"}]})).id))
    envelopes = [completed_envelope(tenant, hot.actor_id, part.id) for _ in range(CONSUMPTIONS)]

    start = threading.Barrier(REQUISITIONS + CONSUMPTIONS + CONSUMPTIONS // 3)
    outcomes: list[str] = []

    def approve(requisition_id):
        start.wait()
        try:
            with uow(pg_db, manager) as u:
                handlers.approve_requisition(u, requisition_id, ApprovalIn())
            outcomes.append("approved")
        except Conflict:
            outcomes.append("conflict")
        except Exception as exc:  # deadlock, serialization or integrity error: a failure of the test
            outcomes.append(f"error: {exc!r}")

    def consume(envelope: EventEnvelope):
        start.wait()
        try:
            with UnitOfWork(pg_db, system_context(tenant)) as u:
                if u.consume("inventory.on_ticket_completed", envelope.event_id):
                    handlers.consume_parts_for_work_order(u, envelope.data)
            outcomes.append("consumed")
        except Exception as exc:
            outcomes.append(f"error: {exc!r}")

    # A third of the events are delivered twice, concurrently: each must still count once.
    work = [threading.Thread(target=approve, args=(rid,)) for _, rid in requisitions]
    work += [threading.Thread(target=consume, args=(e,)) for e in envelopes]
    work += [threading.Thread(target=consume, args=(e,)) for e in envelopes[:CONSUMPTIONS // 3]]
    for t in work:
        t.start()
    for t in work:
        t.join(timeout=120)

    errors = [o for o in outcomes if o.startswith("error")]
    assert not errors, errors[:3]
    approved = outcomes.count("approved")
    assert approved == int(STOCK / 2) and outcomes.count("conflict") == REQUISITIONS - approved

    with pg_db.session(None) as s:
        def balance(location_id):
            return s.scalar(sa.select(Balance.quantity).where(Balance.location_id == location_id,
                                                              Balance.part_id == part.id)) or Decimal(0)
        assert balance(warehouse.id) == 0  # every unit issued once, none twice
        assert s.scalar(sa.select(sa.func.min(Balance.quantity))) >= 0
        issued = s.scalar(sa.select(sa.func.sum(StockMove.quantity)).where(
            StockMove.kind == "requisition_issue", StockMove.from_location_id == warehouse.id))
        assert issued == STOCK
        consumed = s.scalar(sa.select(sa.func.coalesce(sa.func.sum(StockMove.quantity), 0)).where(
            StockMove.kind == "consumption"))
        short = s.scalar(sa.select(sa.func.coalesce(sa.func.sum(ConsumptionShortfall.requested
                                                                - ConsumptionShortfall.available), 0)))
        assert consumed + short == CONSUMPTIONS  # each work order once: consumed or recorded short
        assert s.scalar(sa.select(sa.func.count()).select_from(StockMove).where(
            StockMove.kind == "consumption")) == consumed  # one line per consumed order
        hot_issued = s.scalar(sa.select(sa.func.sum(StockMove.quantity)).where(
            StockMove.kind == "requisition_issue", StockMove.technician_id == hot.actor_id))
        hot_location = s.scalar(sa.select(Location.id).where(Location.owner_user_id == hot.actor_id))
        assert balance(hot_location) == hot_issued - consumed >= 0
        result = handlers.ledger_check(s, tenant)
    assert result["agree"], result["mismatches"][:5]
    low = [e for e in outbox_events(pg_db) if e["type"] == "stock.low" and e["data"]["location_id"] == str(warehouse.id)]
    assert len(low) == 1 and Decimal(low[0]["data"]["quantity"]) < 10  # one crossing, one alert


def test_parallel_issues_and_returns_between_the_same_two_locations_never_deadlock(pg_db):
    admin = context()
    manager = context(admin.tenant_id, role="warehouse_manager")
    tech = context(admin.tenant_id, role="technician")
    with uow(pg_db, admin) as u:
        warehouse = handlers.create_warehouse(u, parse(WarehouseIn, {"name": "总仓",
                                                                    "manager_ids": [str(manager.actor_id)]}))
        part = catalog.create_part(u, parse(PartIn, {"code": "P", "name": "件"}))
        handlers.receive_stock(u, warehouse.id, parse(ReceiveIn, {"lines": [{"part_id": str(part.id),
                                                                             "quantity": "40"}]}))
    line = {"part_id": str(part.id), "quantity": "1"}
    with uow(pg_db, tech) as u:  # the technician starts with 20
        first = handlers.request_requisition(u, parse(RequisitionIn, {"warehouse_id": str(warehouse.id),
                                                                      "lines": [{**line, "quantity": "20"}]}))
    with uow(pg_db, manager) as u:
        handlers.approve_requisition(u, first.id, ApprovalIn())
    pending = []
    for _ in range(20):
        with uow(pg_db, tech) as u:
            pending.append(handlers.request_requisition(u, parse(RequisitionIn, {
                "warehouse_id": str(warehouse.id), "lines": [line]})).id)
            pending.append(handlers.request_return(u, parse(ReturnIn, {
                "warehouse_id": str(warehouse.id), "lines": [line]})).id)
    start = threading.Barrier(len(pending))
    outcomes: list[str] = []

    def approve(requisition_id):
        start.wait()
        try:
            with uow(pg_db, manager) as u:
                handlers.approve_requisition(u, requisition_id, ApprovalIn())
            outcomes.append("approved")
        except Exception as exc:  # a deadlock would surface here
            outcomes.append(f"error: {exc!r}")

    threads = [threading.Thread(target=approve, args=(rid,)) for rid in pending]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes == ["approved"] * len(pending), [o for o in outcomes if o != "approved"][:3]
    with pg_db.session(None) as s:
        quantities = sorted(s.scalars(sa.select(Balance.quantity)).all())
        assert quantities == [Decimal(20), Decimal(20)]
        assert handlers.ledger_check(s, admin.tenant_id)["agree"]
    # The ledger refuses edits in the database itself, not only through the ORM.
    for statement in ("UPDATE stock_moves SET quantity = 99", "DELETE FROM stock_moves"):
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), pg_db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    # The check (PostgreSQL's full join) finds a wrong balance and a missing one.
    with pg_db.engine.begin() as conn:
        conn.execute(sa.update(Balance).where(Balance.location_id == warehouse.id).values(quantity=21))
        conn.execute(sa.delete(Balance).where(Balance.location_id != warehouse.id))
    with pg_db.session(None) as s:
        result = handlers.ledger_check(s, admin.tenant_id)
    assert not result["agree"]
    assert sorted((m["balance"], m["ledger"]) for m in result["mismatches"]) == [("0.000", "20.000"),
                                                                                 ("21.000", "20.000")]
