"""Concurrent approvals on the real PostgreSQL: stock is taken exactly once, never below zero.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), as CI provides; a missing
server is a failure, never a skip.
"""
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from inventory import handlers
from inventory.models import PLATFORM, Balance, Requisition, StockMove
from inventory.schemas import ApprovalIn, RequisitionIn
from inventory_testkit import assert_ledger_matches_balances, seed
from svc_common.errors import Conflict
from svc_common.testing import uow
from svc_common.validation import parse
from tests import servers

APPROVERS = 20


@pytest.fixture
def pg_db():
    with servers.migrated_database("inventory", PLATFORM) as db:
        yield db


@pytest.mark.integration
def test_concurrent_approvals_never_oversell(pg_db):
    world = seed(pg_db)  # 10 compressors in the warehouse
    requisition_ids = []
    for _ in range(APPROVERS):  # each fits at request time; together they ask for twice the stock
        with uow(pg_db, world.tech) as u:
            requisition_ids.append(handlers.request_requisition(u, parse(RequisitionIn, {
                "warehouse_id": str(world.warehouse_id),
                "lines": [{"part_id": str(world.compressor_id), "quantity": "1"}]})).id)

    start = threading.Barrier(APPROVERS)
    outcomes: list[str] = []

    def approve(requisition_id):
        start.wait()
        try:
            with uow(pg_db, world.manager) as u:
                handlers.approve_requisition(u, requisition_id, ApprovalIn())
            outcomes.append("approved")
        except Conflict:
            outcomes.append("conflict")
        except Exception as exc:  # anything else (deadlock, integrity error) fails the test
            outcomes.append(f"error: {exc!r}")

    threads = [threading.Thread(target=approve, args=(rid,)) for rid in requisition_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(outcomes) == ["approved"] * 10 + ["conflict"] * 10, outcomes
    with pg_db.session(None) as session:
        warehouse = session.scalar(sa.select(Balance.quantity).where(
            Balance.location_id == world.warehouse_id, Balance.part_id == world.compressor_id))
        assert warehouse == Decimal(0)
        assert session.scalar(sa.select(sa.func.min(Balance.quantity))) >= 0
        issued = session.scalar(sa.select(sa.func.sum(StockMove.quantity)).where(
            StockMove.kind == "requisition_issue"))
        assert issued == Decimal(10)
        statuses = session.scalars(sa.select(Requisition.status)).all()
        assert sorted(statuses) == ["approved"] * 10 + ["requested"] * 10
    with uow(pg_db, world.admin) as u:
        mine = handlers.get_personal_stock(u, world.tech.actor_id)
        assert [i["quantity"] for i in mine["items"]] == [Decimal(10)]
    assert_ledger_matches_balances(pg_db)
