"""Helpers shared by the inventory tests: a seeded tenant, whole-database checks, event envelopes."""
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from inventory import catalog, handlers
from inventory.models import Balance, Base, StockMove
from inventory.schemas import PartIn, ReceiveIn, WarehouseIn
from svc_common.context import RequestContext
from svc_common.contracts import EventEnvelope, TicketCompletedV1
from svc_common.db import Database, utcnow
from svc_common.testing import context, outbox_events, uow
from svc_common.validation import parse


@dataclass
class World:
    """One tenant with an admin, a warehouse manager, two technicians, a warehouse and two parts."""
    admin: RequestContext
    manager: RequestContext
    tech: RequestContext
    tech2: RequestContext
    warehouse_id: uuid.UUID
    compressor_id: uuid.UUID  # 10 in stock, min_stock 3
    filter_id: uuid.UUID      # 5 in stock, no minimum


def seed(db: Database, tenant_id: uuid.UUID | None = None) -> World:
    admin = context(tenant_id)
    tenant = admin.tenant_id
    manager = context(tenant, role="warehouse_manager")
    tech, tech2 = context(tenant, role="technician"), context(tenant, role="technician")
    with uow(db, admin) as u:
        warehouse = handlers.create_warehouse(u, parse(WarehouseIn, {
            "name": "上海总仓", "manager_ids": [str(manager.actor_id)]}))
        compressor = catalog.create_part(u, parse(PartIn, {"code": "CMP-01", "name": "压缩机", "min_stock": "3"}))
        filt = catalog.create_part(u, parse(PartIn, {"code": "FLT-01", "name": "过滤网", "unit": "片"}))
        handlers.receive_stock(u, warehouse.id, parse(ReceiveIn, {"lines": [
            {"part_id": str(compressor.id), "quantity": "10"}, {"part_id": str(filt.id), "quantity": "5"}]}))
    return World(admin=admin, manager=manager, tech=tech, tech2=tech2, warehouse_id=warehouse.id,
                 compressor_id=compressor.id, filter_id=filt.id)


def snapshot(db: Database) -> dict[str, list[tuple]]:
    """Every row of every table (platform tables included): to prove a failure wrote nothing."""
    with db.engine.connect() as conn:
        return {table.name: sorted(tuple(map(str, row)) for row in conn.execute(sa.select(table)))
                for table in Base.metadata.sorted_tables}


def assert_ledger_matches_balances(db: Database) -> None:
    """Each balance equals the sum of the ledger's movements in and out of its location."""
    net: dict[tuple, Decimal] = defaultdict(Decimal)
    with db.session(None) as session:
        for move in session.scalars(sa.select(StockMove)):
            assert move.quantity > 0
            if move.to_location_id:
                net[(move.to_location_id, move.part_id)] += move.quantity
            if move.from_location_id:
                net[(move.from_location_id, move.part_id)] -= move.quantity
        balances = {(b.location_id, b.part_id): b.quantity for b in session.scalars(sa.select(Balance))}
    assert all(q >= 0 for q in balances.values()), balances
    assert set(net) == set(balances)
    assert dict(net) == balances


def ticket_completed(tenant_id: uuid.UUID, technician_id: uuid.UUID, parts_used: list[tuple[uuid.UUID, str]],
                     number: str = "WO000001") -> dict:
    """A ticket.completed envelope as the tickets service publishes it (JSON)."""
    data = TicketCompletedV1(
        ticket_id=uuid.uuid4(), number=number, type="repair", technician_id=technician_id,
        customer_id=uuid.uuid4(), customer_name="上海申能空调", completed_at=utcnow(), summary="更换压缩机",
        parts_used=[{"part_id": p, "quantity": q} for p, q in parts_used])
    return EventEnvelope(event_id=uuid.uuid4(), type="ticket.completed", occurred_at=utcnow(), tenant_id=tenant_id,
                         correlation_id=uuid.uuid4().hex, data=data.model_dump(mode="json")).model_dump(mode="json")


def events(db: Database, event_type: str) -> list[dict]:
    return [e for e in outbox_events(db) if e["type"] == event_type]
