"""Use cases of the inventory service: plain Python over a unit of work (no nameko).

Every stock movement goes through `_move`: one ledger row, the balances of both ends,
and a `stock.moved` event, all in the caller's transaction.
"""
import logging
import uuid
from decimal import Decimal

import sqlalchemy as sa

from svc_common.contracts import (
    ConsumptionShortfallV1, RequisitionLineV1, RequisitionV1, StockLowV1, StockMovedV1, TicketCompletedV1,
)
from svc_common.db import utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, field_error
from svc_common.uow import UnitOfWork

from . import domain
from .models import Balance, ConsumptionShortfall, Location, Part, Requisition, RequisitionLine, StockMove
from .schemas import ApprovalIn, LineIn, PartIn, ReceiveIn, RequisitionIn, WarehouseIn

log = logging.getLogger(__name__)


# --- lookups ----------------------------------------------------------------------------------

def _find(uow: UnitOfWork, model, id_: uuid.UUID):
    # The session is tenant-scoped: another tenant's row is simply not found.
    row = uow.session.get(model, id_)
    return row if row is not None and row.tenant_id == uow.ctx.tenant_id else None


def get_part(uow: UnitOfWork, part_id: uuid.UUID, field: str = "part_id") -> Part:
    return uow.get_or_404(Part, part_id, field, "part")


def get_location(uow: UnitOfWork, location_id: uuid.UUID, field: str = "location_id") -> Location:
    return uow.get_or_404(Location, location_id, field, "location")


def get_warehouse(uow: UnitOfWork, warehouse_id: uuid.UUID, field: str = "warehouse_id") -> Location:
    location = uow.get_or_404(Location, warehouse_id, field, "warehouse")
    if location.kind != domain.WAREHOUSE:
        raise NotFound(f"warehouse {warehouse_id} not found", [{"field": field, "message": "not found"}])
    return location


def personal_location(uow: UnitOfWork, technician_id: uuid.UUID) -> Location | None:
    return uow.session.scalar(sa.select(Location).where(
        Location.kind == domain.PERSONAL, Location.owner_user_id == technician_id))


def _ensure_personal_location(uow: UnitOfWork, technician_id: uuid.UUID) -> Location:
    """The technician's personal stock, created the first time parts are issued to them."""
    location = personal_location(uow, technician_id)
    if location is not None:
        return location
    try:
        with uow.session.begin_nested():
            location = Location(kind=domain.PERSONAL, name=domain.PERSONAL_LOCATION_NAME,
                                owner_user_id=technician_id, manager_ids=[])
            uow.session.add(location)
    except sa.exc.IntegrityError:  # a concurrent first issue to the same technician created it
        location = personal_location(uow, technician_id)
    return location


def balance_of(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID, lock: bool = False) -> Decimal:
    query = sa.select(Balance.quantity).where(Balance.location_id == location_id, Balance.part_id == part_id)
    if lock:
        query = query.with_for_update()
    return uow.session.scalar(query) or domain.ZERO


# --- the ledger ---------------------------------------------------------------------------------

def _round(expr):
    # SQLite stores NUMERIC as REAL: rounding to the column's scale keeps 3-decimal sums exact.
    # (The scale is inlined: PostgreSQL has round(numeric, int), not round(numeric, bigint).)
    return sa.func.round(expr, sa.literal_column("3"))


def _take(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID, quantity: Decimal) -> Decimal | None:
    """Decrement a balance if it holds enough; the new quantity, or None if it does not.

    One conditional UPDATE: the database checks and decrements atomically, so concurrent
    movements can never take the same stock twice (no read-then-write race).
    """
    return uow.session.execute(
        sa.update(Balance)
        .where(Balance.location_id == location_id, Balance.part_id == part_id, Balance.quantity >= quantity)
        .values(quantity=_round(Balance.quantity - quantity))
        .returning(Balance.quantity)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()


def _put(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID, quantity: Decimal) -> None:
    """Increment a balance, creating its row on the first movement into the location."""
    def increment() -> int:
        return uow.session.execute(
            sa.update(Balance)
            .where(Balance.location_id == location_id, Balance.part_id == part_id)
            .values(quantity=_round(Balance.quantity + quantity))
            .execution_options(synchronize_session=False)
        ).rowcount

    if increment():
        return
    try:
        with uow.session.begin_nested():
            uow.session.add(Balance(location_id=location_id, part_id=part_id, quantity=quantity))
    except sa.exc.IntegrityError:  # a concurrent movement created the row first
        increment()


def _move(uow: UnitOfWork, part: Part, quantity: Decimal, kind: str, *, source: Location | None = None,
          target: Location | None = None, ref: tuple[str, uuid.UUID, str] | None = None,
          actor_id: uuid.UUID | None = None, note: str | None = None, field: str = "quantity") -> StockMove:
    """Record one movement: ledger row + both balances + events, or Conflict if the source lacks stock."""
    if source is not None:
        remaining = _take(uow, source.id, part.id, quantity)
        if remaining is None:
            available = balance_of(uow, source.id, part.id)
            raise Conflict(f"only {available} {part.unit} of {part.code} in {source.name}",
                           [{"field": field, "message": f"only {available} in stock"}])
    if target is not None:
        _put(uow, target.id, part.id, quantity)
    ref_type, ref_id, ref_number = ref or (None, None, None)
    move = StockMove(part_id=part.id, quantity=quantity, kind=kind,
                     from_location_id=source.id if source else None, to_location_id=target.id if target else None,
                     ref_type=ref_type, ref_id=ref_id, ref_number=ref_number,
                     actor_id=actor_id if actor_id is not None else uow.ctx.actor_id, note=note)
    uow.session.add(move)
    uow.session.flush()
    uow.emit("stock.moved", StockMovedV1(
        move_id=move.id, part_id=part.id, quantity=quantity, kind=kind, from_location_id=move.from_location_id,
        to_location_id=move.to_location_id, ref_type=ref_type, ref_id=ref_id))
    if source is not None and source.kind == domain.WAREHOUSE \
            and domain.fell_below_minimum(remaining + quantity, remaining, part.min_stock):
        uow.emit("stock.low", StockLowV1(part_id=part.id, location_id=source.id, quantity=remaining,
                                         minimum=part.min_stock))
    return move


# --- catalog and warehouses -----------------------------------------------------------------------

def create_warehouse(uow: UnitOfWork, data: WarehouseIn) -> Location:
    managers = [str(m) for m in dict.fromkeys(data.manager_ids)]
    warehouse = Location(kind=domain.WAREHOUSE, name=data.name, manager_ids=managers)
    uow.session.add(warehouse)
    uow.session.flush()
    return warehouse


def list_warehouses(uow: UnitOfWork) -> list[Location]:
    query = sa.select(Location).where(Location.kind == domain.WAREHOUSE).order_by(Location.created_at, Location.id)
    return list(uow.session.scalars(query))


def create_part(uow: UnitOfWork, data: PartIn) -> Part:
    if uow.session.scalar(sa.select(Part.id).where(Part.code == data.code)):
        raise Conflict(f"part code {data.code} already exists", [{"field": "code", "message": "already exists"}])
    part = Part(**data.model_dump())
    uow.session.add(part)
    uow.session.flush()
    return part


def list_parts(uow: UnitOfWork) -> list[Part]:
    return list(uow.session.scalars(sa.select(Part).order_by(Part.code, Part.id)))


# --- stock ----------------------------------------------------------------------------------------

def _resolve_parts(uow: UnitOfWork, lines: list[LineIn]) -> list[Part]:
    return [get_part(uow, line.part_id, f"lines.{i}.part_id") for i, line in enumerate(lines)]


def receive_stock(uow: UnitOfWork, warehouse_id: uuid.UUID, data: ReceiveIn) -> list[StockMove]:
    """Inbound (入库) into a warehouse."""
    warehouse = get_warehouse(uow, warehouse_id)
    parts = _resolve_parts(uow, data.lines)
    # Touch balances in part order so concurrent multi-line movements cannot deadlock.
    order = sorted(range(len(parts)), key=lambda i: parts[i].id)
    moves = {i: _move(uow, parts[i], data.lines[i].quantity, domain.INBOUND, target=warehouse, note=data.note)
             for i in order}
    return [moves[i] for i in range(len(parts))]


def stock_items(uow: UnitOfWork, location_id: uuid.UUID) -> list[dict]:
    rows = uow.session.execute(
        sa.select(Balance.part_id, Part.code, Part.name, Part.unit, Balance.quantity)
        .join(Part, Part.id == Balance.part_id)
        .where(Balance.location_id == location_id)
        .order_by(Part.code, Part.id)
    )
    return [{"part_id": r.part_id, "part_code": r.code, "part_name": r.name, "unit": r.unit,
             "quantity": r.quantity} for r in rows]


def get_stock(uow: UnitOfWork, location_id: uuid.UUID) -> dict:
    location = get_location(uow, location_id)
    return {"location": location, "items": stock_items(uow, location.id)}


def get_personal_stock(uow: UnitOfWork, technician_id: uuid.UUID) -> dict:
    location = personal_location(uow, technician_id)
    return {"location": location, "items": stock_items(uow, location.id) if location else []}


def list_moves(uow: UnitOfWork, ref_id: uuid.UUID | None, part_id: uuid.UUID | None,
               location_id: uuid.UUID | None, offset: int, limit: int) -> tuple[list[StockMove], int]:
    query = sa.select(StockMove)
    if ref_id:
        query = query.where(StockMove.ref_id == ref_id)
    if part_id:
        query = query.where(StockMove.part_id == part_id)
    if location_id:
        query = query.where(sa.or_(StockMove.from_location_id == location_id,
                                   StockMove.to_location_id == location_id))
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(StockMove.created_at, StockMove.id).offset(offset).limit(limit))
    return list(rows), total


# --- requisitions (申领) ---------------------------------------------------------------------------

def _requisition_event(requisition: Requisition) -> RequisitionV1:
    return RequisitionV1(
        requisition_id=requisition.id, number=requisition.number, technician_id=requisition.technician_id,
        warehouse_id=requisition.warehouse_id, status=requisition.status, reason=requisition.reject_reason,
        lines=[RequisitionLineV1(part_id=line.part_id, quantity=line.quantity,
                                 approved_quantity=line.approved_quantity) for line in requisition.lines],
    )


def request_requisition(uow: UnitOfWork, data: RequisitionIn) -> Requisition:
    ctx = uow.ctx
    technician_id = data.technician_id or ctx.actor_id
    if technician_id is None:
        raise field_error("technician_id", "required when the caller is not a user")
    if ctx.actor_role == domain.TECHNICIAN and technician_id != ctx.actor_id:
        raise Forbidden("technicians may only request parts for themselves",
                        [{"field": "technician_id", "message": "must be yourself"}])
    warehouse = get_warehouse(uow, data.warehouse_id)
    parts = _resolve_parts(uow, data.lines)
    for i, (part, line) in enumerate(zip(parts, data.lines)):
        # Advisory at request time; approval re-checks atomically against the stock it takes.
        available = balance_of(uow, warehouse.id, part.id)
        if line.quantity > available:
            raise Conflict(f"only {available} {part.unit} of {part.code} in {warehouse.name}",
                           [{"field": f"lines.{i}.quantity", "message": f"only {available} in stock"}])
    requisition = Requisition(
        number=uow.next_number("requisition", "REQ"), technician_id=technician_id, warehouse_id=warehouse.id,
        status=domain.REQUESTED, note=data.note, requested_by=ctx.actor_id,
        lines=[RequisitionLine(position=i, part_id=line.part_id, quantity=line.quantity)
               for i, line in enumerate(data.lines)],
    )
    uow.session.add(requisition)
    uow.session.flush()
    uow.emit("requisition.requested", _requisition_event(requisition))
    return requisition


def get_requisition(uow: UnitOfWork, requisition_id: uuid.UUID) -> Requisition:
    return uow.get_or_404(Requisition, requisition_id, "requisition_id", "requisition")


def list_requisitions(uow: UnitOfWork, status: str | None, technician_id: uuid.UUID | None,
                      offset: int, limit: int) -> tuple[list[Requisition], int]:
    query = sa.select(Requisition)
    if status:
        query = query.where(Requisition.status == status)
    if technician_id:
        query = query.where(Requisition.technician_id == technician_id)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(Requisition.created_at, Requisition.id).offset(offset).limit(limit))
    return list(rows), total


def _decide(uow: UnitOfWork, requisition_id: uuid.UUID) -> Requisition:
    """Load a requisition for a decision: only by a decider, locked, and only once."""
    if uow.ctx.actor_role not in domain.DECIDER_ROLES:
        raise Forbidden("only a warehouse manager or an administrator may decide requisitions")
    # FOR UPDATE: two managers deciding the same requisition at once are serialized,
    # and the second sees the first one's status.
    requisition = uow.session.scalar(
        sa.select(Requisition).where(Requisition.id == requisition_id).with_for_update())
    if requisition is None:
        raise NotFound(f"requisition {requisition_id} not found",
                       [{"field": "requisition_id", "message": "not found"}])
    domain.ensure_undecided(requisition.status)
    requisition.decided_by = uow.ctx.actor_id
    requisition.decided_at = utcnow()
    return requisition


def approve_requisition(uow: UnitOfWork, requisition_id: uuid.UUID, data: ApprovalIn) -> Requisition:
    """Issue the approved quantities from the warehouse into the technician's personal stock.

    All or nothing: if any line lacks stock now, Conflict and the transaction rolls back.
    """
    requisition = _decide(uow, requisition_id)
    approvals = None if data.lines is None else [(a.part_id, a.approved_quantity) for a in data.lines]
    quantities = domain.approved_quantities([(line.part_id, line.quantity) for line in requisition.lines],
                                            approvals)
    warehouse = get_warehouse(uow, requisition.warehouse_id)
    personal = _ensure_personal_location(uow, requisition.technician_id)
    ref = ("requisition", requisition.id, requisition.number)
    # Part order, so concurrent multi-line approvals lock balances in the same order (no deadlock).
    for line, quantity in sorted(zip(requisition.lines, quantities), key=lambda pair: pair[0].part_id):
        line.approved_quantity = quantity
        if quantity > 0:
            _move(uow, get_part(uow, line.part_id), quantity, domain.REQUISITION_ISSUE, source=warehouse,
                  target=personal, ref=ref, field=f"lines.{line.position}.approved_quantity")
    requisition.status = domain.APPROVED
    uow.session.flush()
    uow.emit("requisition.approved", _requisition_event(requisition))
    return requisition


def reject_requisition(uow: UnitOfWork, requisition_id: uuid.UUID, reason: str) -> Requisition:
    requisition = _decide(uow, requisition_id)
    requisition.status = domain.REJECTED
    requisition.reject_reason = reason
    uow.session.flush()
    uow.emit("requisition.rejected", _requisition_event(requisition))
    return requisition


# --- consumption on work orders ---------------------------------------------------------------------

def consume_parts_for_work_order(uow: UnitOfWork, event: TicketCompletedV1) -> list[StockMove]:
    """Take the parts a completed work order used from the technician's personal stock.

    A shortfall never fails the event: what is there is consumed, the rest is recorded
    as a ConsumptionShortfall (and `consumption.shortfall`) for a manager to reconcile.
    """
    location = personal_location(uow, event.technician_id)
    ref = ("work_order", event.ticket_id, event.number)
    moves = []
    for used in sorted(event.parts_used, key=lambda p: p.part_id):
        wanted = domain.to_scale(used.quantity)
        if wanted == 0:  # below what the ledger can record
            continue
        part = _find(uow, Part, used.part_id)
        if part is None:
            log.warning("work order %s used unknown part %s", event.number, used.part_id)
        # Locked, so the quantity we take is still there when we take it.
        available = balance_of(uow, location.id, part.id, lock=True) if location and part else domain.ZERO
        taken = min(available, wanted)
        if taken > 0:
            moves.append(_move(uow, part, taken, domain.CONSUMPTION, source=location, ref=ref,
                               actor_id=event.technician_id))
        if taken < wanted:
            shortfall = ConsumptionShortfall(ticket_id=event.ticket_id, ticket_number=event.number,
                                             technician_id=event.technician_id, part_id=used.part_id,
                                             requested=wanted, available=available)
            uow.session.add(shortfall)
            uow.emit("consumption.shortfall", ConsumptionShortfallV1(
                ticket_id=event.ticket_id, ticket_number=event.number, technician_id=event.technician_id,
                part_id=used.part_id, requested=wanted, available=available))
    uow.session.flush()
    return moves


def list_shortfalls(uow: UnitOfWork) -> list[ConsumptionShortfall]:
    query = sa.select(ConsumptionShortfall).order_by(ConsumptionShortfall.created_at, ConsumptionShortfall.id)
    return list(uow.session.scalars(query))
