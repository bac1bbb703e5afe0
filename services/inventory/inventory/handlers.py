"""Use cases of the inventory service: plain Python over a unit of work (no nameko).

Every stock movement goes through `_move`: one ledger row, the balances of both ends,
and a `stock.moved` event, all in the caller's transaction. Catalog use cases are in
`catalog.py`, reports and exports in `reports.py`.
"""
import logging
import uuid
from decimal import Decimal

import sqlalchemy as sa
from pydantic import BaseModel

from svc_common.contracts import (
    ConsumptionReversedV1, ConsumptionShortfallV1, OldPartReturnedV1, RequisitionLineV1, RequisitionV1,
    StockAvailabilityV1, StockLowV1, StockShortfallV1, TransferLineV1, TransferV1,
)
from svc_common.db import new_id, utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, field_error
from svc_common.uow import UnitOfWork

from . import domain
from .models import (
    Balance, ConsumptionShortfall, InventorySettings, Location, OldPart, Part, Requisition, RequisitionLine,
    StockMove, Transfer, TransferLine,
)
from .schemas import (
    ApprovalIn, CheckStockIn, CompletedOrder, IssueIn, LineIn, OldPartReturnIn, ReceiveIn, ReopenedOrder,
    RequisitionIn, ReturnIn, SettingsIn, StocktakeIn, TransferIn, TransferReceiveIn, WarehouseIn,
    WarehouseUpdateIn,
)

log = logging.getLogger(__name__)

# A fixed namespace: each tenant's in-transit location has an id derived from the tenant, so two
# concurrent first transfers cannot create two of them.
_TRANSIT_NAMESPACE = uuid.UUID("6f1c3c2e-8a51-4a57-9a8e-2f0b1f1d7a01")


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


def _transit_location(uow: UnitOfWork) -> Location:
    transit_id = uuid.uuid5(_TRANSIT_NAMESPACE, str(uow.ctx.tenant_id))
    location = _find(uow, Location, transit_id)
    if location is not None:
        return location
    try:
        with uow.session.begin_nested():
            location = Location(id=transit_id, kind=domain.TRANSIT, name=domain.TRANSIT_LOCATION_NAME, manager_ids=[])
            uow.session.add(location)
    except sa.exc.IntegrityError:  # a concurrent first transfer created it
        location = _find(uow, Location, transit_id)
    return location


def balance_of(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID, lock: bool = False) -> Decimal:
    query = sa.select(Balance.quantity).where(Balance.location_id == location_id, Balance.part_id == part_id)
    if lock:
        query = query.with_for_update()
    return uow.session.scalar(query) or domain.ZERO


# --- settings and who sees / manages which warehouse --------------------------------------------------

def get_settings(uow: UnitOfWork) -> InventorySettings:
    return uow.session.scalar(sa.select(InventorySettings)) or InventorySettings(allow_negative_stock=False)


def update_settings(uow: UnitOfWork, data: SettingsIn) -> InventorySettings:
    if uow.ctx.actor_role != domain.ADMIN:
        raise Forbidden("only an administrator may change inventory settings")
    settings = uow.session.scalar(sa.select(InventorySettings).with_for_update())
    if settings is None:
        settings = InventorySettings(allow_negative_stock=data.allow_negative_stock)
        uow.session.add(settings)
    settings.allow_negative_stock = data.allow_negative_stock
    uow.session.flush()
    return settings


def _negative_allowed(uow: UnitOfWork) -> bool:
    # Read once per transaction: every movement of a request follows the same rule.
    key = "inventory.allow_negative"
    if key not in uow.session.info:
        uow.session.info[key] = bool(uow.session.scalar(sa.select(InventorySettings.allow_negative_stock)))
    return uow.session.info[key]


def _warehouse_tree(uow: UnitOfWork) -> dict[uuid.UUID, tuple[uuid.UUID | None, list[str]]]:
    rows = uow.session.execute(sa.select(Location.id, Location.parent_id, Location.manager_ids)
                               .where(Location.kind == domain.WAREHOUSE))
    return {r.id: (r.parent_id, [str(m) for m in (r.manager_ids or [])]) for r in rows}


def visible_warehouse_ids(uow: UnitOfWork) -> set[uuid.UUID] | None:
    """None: every warehouse. Warehouse managers see the ones they manage and those below."""
    if uow.ctx.actor_role != domain.WAREHOUSE_MANAGER:
        return None
    return domain.visible_warehouses(uow.ctx.actor_role, uow.ctx.actor_id, _warehouse_tree(uow))


def ensure_manages(uow: UnitOfWork, warehouse: Location) -> None:
    """Changing a warehouse's stock: an administrator, the system, or a manager of it (or above it)."""
    role = uow.ctx.actor_role
    if role in (domain.ADMIN, "system"):
        return
    if role == domain.WAREHOUSE_MANAGER and warehouse.id in (visible_warehouse_ids(uow) or set()):
        return
    raise Forbidden(f"you do not manage warehouse {warehouse.name}",
                    [{"field": "warehouse_id", "message": "not managed by you"}])


def ensure_visible(uow: UnitOfWork, warehouse: Location, field: str = "warehouse_id") -> None:
    visible = visible_warehouse_ids(uow)
    if visible is not None and warehouse.id not in visible:
        # Not found rather than forbidden: another region's warehouse is not shown at all.
        raise NotFound(f"warehouse {warehouse.id} not found", [{"field": field, "message": "not found"}])


def managers_of(uow: UnitOfWork, warehouse: Location | None) -> list[uuid.UUID]:
    """Who handles a warehouse's exceptions: its own managers, else the nearest ancestor's."""
    node = warehouse
    while node is not None:
        if node.manager_ids:
            return [uuid.UUID(str(m)) for m in node.manager_ids]
        node = _find(uow, Location, node.parent_id) if node.parent_id else None
    return []


# --- the ledger ---------------------------------------------------------------------------------

def _round(expr):
    # SQLite stores NUMERIC as REAL: rounding to the column's scale keeps 3-decimal sums exact.
    # (The scale is inlined: PostgreSQL has round(numeric, int), not round(numeric, bigint).)
    return sa.func.round(expr, sa.literal_column("3"))


# Balances are changed with Core statements on the tables (the hottest statements of the service:
# no ORM bookkeeping), so the tenant is named explicitly in each.
_BALANCES = Balance.__table__
_SETTINGS = InventorySettings.__table__


def _balance_row(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID):
    return sa.and_(_BALANCES.c.tenant_id == uow.ctx.tenant_id, _BALANCES.c.location_id == location_id,
                   _BALANCES.c.part_id == part_id)


def _take(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID, quantity: Decimal) -> Decimal | None:
    """Decrement a balance if it holds enough; the new quantity, or None if it does not.

    One conditional UPDATE: the database checks and decrements atomically, so concurrent
    movements can never take the same stock twice (no read-then-write race). A tenant that
    allows negative stock passes the condition (read in the same statement, no extra round trip).
    """
    negative_allowed = sa.exists().where(_SETTINGS.c.tenant_id == uow.ctx.tenant_id,
                                         _SETTINGS.c.allow_negative_stock.is_(True))
    remaining = uow.session.execute(
        sa.update(_BALANCES)
        .where(_balance_row(uow, location_id, part_id), sa.or_(_BALANCES.c.quantity >= quantity, negative_allowed))
        .values(quantity=_round(_BALANCES.c.quantity - quantity))
        .returning(_BALANCES.c.quantity)
    ).scalar_one_or_none()
    if remaining is None and _negative_allowed(uow):  # no balance row yet: it starts below zero
        return _put(uow, location_id, part_id, -quantity)
    return remaining


def _put(uow: UnitOfWork, location_id: uuid.UUID, part_id: uuid.UUID, delta: Decimal) -> Decimal:
    """Add `delta` to a balance, creating its row on the first movement into the location."""
    def change() -> Decimal | None:
        return uow.session.execute(
            sa.update(_BALANCES)
            .where(_balance_row(uow, location_id, part_id))
            .values(quantity=_round(_BALANCES.c.quantity + delta))
            .returning(_BALANCES.c.quantity)
        ).scalar_one_or_none()

    result = change()
    if result is not None:
        return result
    try:
        with uow.session.begin_nested():
            uow.session.execute(sa.insert(_BALANCES).values(id=new_id(), tenant_id=uow.ctx.tenant_id,
                                                            location_id=location_id, part_id=part_id, quantity=delta))
        return delta
    except sa.exc.IntegrityError:  # a concurrent movement created the row first
        return change()


def _move(uow: UnitOfWork, part: Part, quantity: Decimal, kind: str, *, source: Location | None = None,
          target: Location | None = None, ref: tuple[str, uuid.UUID, str] | None = None,
          actor_id: uuid.UUID | None = None, note: str | None = None, field: str = "quantity",
          technician_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
          unit_cost: Decimal | None = None) -> StockMove:
    """Record one movement: ledger row + both balances + events, or Conflict if the source lacks stock
    (then the caller's transaction rolls back, ledger row included: the UnitOfWork does that)."""
    ref_type, ref_id, ref_number = ref or (None, None, None)
    if technician_id is None:  # personal stock belongs to its technician
        personal = next((loc for loc in (source, target) if loc is not None and loc.kind == domain.PERSONAL), None)
        technician_id = personal.owner_user_id if personal else None
    unit_cost = part.cost_price if unit_cost is None else unit_cost
    move = StockMove(id=new_id(), tenant_id=uow.ctx.tenant_id, part_id=part.id, quantity=quantity, kind=kind,
                     from_location_id=source.id if source else None, to_location_id=target.id if target else None,
                     ref_type=ref_type, ref_id=ref_id, ref_number=ref_number,
                     actor_id=actor_id if actor_id is not None else uow.ctx.actor_id, note=note, created_at=utcnow(),
                     unit_cost=unit_cost, technician_id=technician_id, customer_id=customer_id)
    # A plain INSERT (the row is never updated, so it needs no unit-of-work tracking); `move` stays a
    # detached record of what was written.
    uow.session.execute(sa.insert(StockMove.__table__).values(
        {c.key: getattr(move, c.key) for c in StockMove.__table__.columns}))
    warehouse = next((loc for loc in (source, target) if loc is not None and loc.kind == domain.WAREHOUSE), None)
    # A dict, not StockMovedV1(...): emit validates it against that contract once.
    uow.emit("stock.moved", dict(
        move_id=move.id, part_id=part.id, quantity=quantity, kind=kind, from_location_id=move.from_location_id,
        to_location_id=move.to_location_id, ref_type=ref_type, ref_id=ref_id, ref_number=ref_number,
        unit_cost=unit_cost, value=None if unit_cost is None else (quantity * unit_cost).quantize(Decimal("0.01")),
        technician_id=technician_id, customer_id=customer_id, warehouse_id=warehouse.id if warehouse else None,
        ticket_id=ref_id if ref_type == "work_order" else None, actor_id=move.actor_id))
    # Balances last: their row locks are then held only until the commit that follows, which is
    # what bounds the throughput of one hot part. Both ends in location-id order, so an issue
    # (warehouse → personal) and a return (personal → warehouse) running at once cannot deadlock.
    put_first = target is not None and source is not None and target.id < source.id
    if put_first:
        _put(uow, target.id, part.id, quantity)
    if source is not None:
        remaining = _take(uow, source.id, part.id, quantity)
        if remaining is None:
            available = balance_of(uow, source.id, part.id)
            raise Conflict(f"only {available} {part.unit} of {part.code} in {source.name}",
                           [{"field": field, "message": f"only {available} in stock"}])
    if target is not None and not put_first:
        _put(uow, target.id, part.id, quantity)
    if source is not None and source.kind == domain.WAREHOUSE \
            and domain.fell_below_minimum(remaining + quantity, remaining, part.min_stock):
        # The conditional UPDATE returned this movement's own before/after: exactly one
        # movement sees the crossing, however many run at once.
        uow.emit("stock.low", StockLowV1(
            part_id=part.id, location_id=source.id, quantity=remaining, minimum=part.min_stock,
            part_code=part.code, part_name=part.name, warehouse_id=source.id, warehouse_name=source.name,
            manager_ids=managers_of(uow, source)))
    return move


def ledger_check(session, tenant_id: uuid.UUID | None = None) -> dict:
    """Recompute every balance from the ledger and compare, all in the database: only the
    disagreeing (location, part) pairs come back, so memory does not grow with the ledger.

    Returns {"balances": n, "moves": n, "agree": bool, "mismatches": [{location_id, part_id, balance, ledger}]}.
    """
    moves = StockMove.__table__
    balances = Balance.__table__
    tenant = (lambda table: table.c.tenant_id == tenant_id) if tenant_id else (lambda table: sa.true())
    legs = sa.union_all(
        sa.select(moves.c.to_location_id.label("location_id"), moves.c.part_id, moves.c.quantity.label("q"))
        .where(moves.c.to_location_id.is_not(None), tenant(moves)),
        sa.select(moves.c.from_location_id, moves.c.part_id, (-moves.c.quantity).label("q"))
        .where(moves.c.from_location_id.is_not(None), tenant(moves)),
    ).subquery()
    ledger = (sa.select(legs.c.location_id, legs.c.part_id, sa.func.sum(legs.c.q).label("net"))
              .group_by(legs.c.location_id, legs.c.part_id).subquery())
    held = sa.select(balances.c.location_id, balances.c.part_id, balances.c.quantity).where(tenant(balances)).subquery()
    same_pair = sa.and_(held.c.location_id == ledger.c.location_id, held.c.part_id == ledger.c.part_id)
    if session.get_bind().dialect.name == "postgresql":
        # This transaction only: room to hash the ledger's legs in memory instead of spilling to disk.
        session.execute(sa.text("SET LOCAL work_mem = '256MB'"))
        pairs = sa.select(sa.func.coalesce(held.c.location_id, ledger.c.location_id).label("location_id"),
                          sa.func.coalesce(held.c.part_id, ledger.c.part_id).label("part_id"),
                          held.c.quantity, ledger.c.net).select_from(
            held.join(ledger, same_pair, full=True)).subquery()
    else:
        # The same full outer join as two left joins (SQLite before 3.39 has no FULL JOIN).
        left = sa.select(held.c.location_id, held.c.part_id, held.c.quantity, ledger.c.net).select_from(
            held.outerjoin(ledger, same_pair))
        right = sa.select(ledger.c.location_id, ledger.c.part_id, sa.null(), ledger.c.net).select_from(
            ledger.outerjoin(held, same_pair)).where(held.c.location_id.is_(None))
        pairs = sa.union_all(left, right).subquery()
    # Rounded to the quantity scale: SQLite keeps NUMERIC as REAL.
    differs = _round(sa.func.coalesce(pairs.c.quantity, 0)) != _round(sa.func.coalesce(pairs.c.net, 0))
    mismatches = [{"location_id": str(r.location_id), "part_id": str(r.part_id),
                   "balance": str(domain.to_scale(Decimal(str(r.quantity or 0)))),
                   "ledger": str(domain.to_scale(Decimal(str(r.net or 0))))}
                  for r in session.execute(sa.select(pairs).where(differs).limit(1000))]
    return {"balances": session.scalar(sa.select(sa.func.count()).select_from(balances).where(tenant(balances))),
            "moves": session.scalar(sa.select(sa.func.count()).select_from(moves).where(tenant(moves))),
            "agree": not mismatches, "mismatches": mismatches}


def check_ledger(uow: UnitOfWork) -> dict:
    if uow.ctx.actor_role not in (domain.ADMIN, domain.WAREHOUSE_MANAGER, "system"):
        raise Forbidden("only administrators and warehouse managers may run the ledger check")
    return ledger_check(uow.session, uow.ctx.tenant_id)


# --- warehouses ------------------------------------------------------------------------------------

def create_warehouse(uow: UnitOfWork, data: WarehouseIn) -> Location:
    role = uow.ctx.actor_role
    parent = get_warehouse(uow, data.parent_id, "parent_id") if data.parent_id else None
    if role != domain.ADMIN:
        # A warehouse manager may open warehouses below one they manage (a region its offices).
        if parent is None or role != domain.WAREHOUSE_MANAGER:
            raise Forbidden("only an administrator may create top-level warehouses")
        ensure_manages(uow, parent)
    managers = [str(m) for m in dict.fromkeys(data.manager_ids)]
    warehouse = Location(kind=domain.WAREHOUSE, name=data.name, manager_ids=managers,
                         parent_id=parent.id if parent else None, level=data.level, code=data.code,
                         notes=data.notes)
    uow.session.add(warehouse)
    uow.session.flush()
    return warehouse


def update_warehouse(uow: UnitOfWork, warehouse_id: uuid.UUID, data: WarehouseUpdateIn) -> Location:
    warehouse = get_warehouse(uow, warehouse_id)
    ensure_manages(uow, warehouse)
    changes = data.model_dump(exclude_unset=True)
    if "parent_id" in changes:
        if uow.ctx.actor_role != domain.ADMIN:
            raise Forbidden("only an administrator may move a warehouse in the tree")
        parent_id = changes.pop("parent_id")
        if parent_id is not None:
            get_warehouse(uow, parent_id, "parent_id")
        domain.ensure_no_cycle(warehouse.id, parent_id, {w: p for w, (p, _) in _warehouse_tree(uow).items()})
        warehouse.parent_id = parent_id
    if "manager_ids" in changes:
        warehouse.manager_ids = [str(m) for m in dict.fromkeys(changes.pop("manager_ids") or [])]
    for key, value in changes.items():
        if key == "name" and value is None:
            raise field_error("name", "must not be empty")
        setattr(warehouse, key, value)
    uow.session.flush()
    return warehouse


def list_warehouses(uow: UnitOfWork) -> list[Location]:
    query = sa.select(Location).where(Location.kind == domain.WAREHOUSE).order_by(Location.created_at, Location.id)
    visible = visible_warehouse_ids(uow)
    return [w for w in uow.session.scalars(query) if visible is None or w.id in visible]


# --- stock ----------------------------------------------------------------------------------------

def _resolve_parts(uow: UnitOfWork, lines: list) -> list[Part]:
    return [get_part(uow, line.part_id, f"lines.{i}.part_id") for i, line in enumerate(lines)]


def _warehouse_and_parts(uow: UnitOfWork, warehouse_id: uuid.UUID, lines: list) -> tuple[Location, list[Part]]:
    """The warehouse and the lines' parts in one round trip (every stock-in/out starts here); when one
    is missing, the per-row lookups raise the NotFound that names it."""
    wanted = {line.part_id for line in lines}
    rows = uow.session.execute(sa.select(Location, Part).join(Part, sa.true()).where(
        Location.id == warehouse_id, Location.kind == domain.WAREHOUSE, Part.id.in_(wanted))).all()
    if len(rows) != len(wanted):
        return get_warehouse(uow, warehouse_id), _resolve_parts(uow, lines)
    by_id = {part.id: part for _, part in rows}
    return rows[0][0], [by_id[line.part_id] for line in lines]


def _in_part_order(parts: list[Part]) -> list[int]:
    # Touch balances in part order so concurrent multi-line movements cannot deadlock.
    return sorted(range(len(parts)), key=lambda i: parts[i].id)


def receive_stock(uow: UnitOfWork, warehouse_id: uuid.UUID, data: ReceiveIn) -> list[StockMove]:
    """Inbound (入库) into a warehouse."""
    warehouse, parts = _warehouse_and_parts(uow, warehouse_id, data.lines)
    ensure_manages(uow, warehouse)
    moves = {i: _move(uow, parts[i], data.lines[i].quantity, domain.INBOUND, target=warehouse, note=data.note,
                      field=f"lines.{i}.quantity")
             for i in _in_part_order(parts)}
    return [moves[i] for i in range(len(parts))]


def issue_stock(uow: UnitOfWork, warehouse_id: uuid.UUID, data: IssueIn) -> list[StockMove]:
    """Outbound (出库) from a warehouse to outside (sale, scrap, supplier return); all lines or none."""
    warehouse, parts = _warehouse_and_parts(uow, warehouse_id, data.lines)
    ensure_manages(uow, warehouse)
    moves = {i: _move(uow, parts[i], data.lines[i].quantity, domain.OUTBOUND, source=warehouse, note=data.note,
                      field=f"lines.{i}.quantity")
             for i in _in_part_order(parts)}
    return [moves[i] for i in range(len(parts))]


def stocktake(uow: UnitOfWork, warehouse_id: uuid.UUID, data: StocktakeIn) -> list[StockMove]:
    """A count (盘点): each difference to the books becomes an adjustment entry."""
    warehouse, parts = _warehouse_and_parts(uow, warehouse_id, data.lines)
    ensure_manages(uow, warehouse)
    moves = []
    for i in _in_part_order(parts):
        part, counted = parts[i], data.lines[i].counted
        # Locked: no movement slips in between reading the books and booking the difference.
        on_hand = balance_of(uow, warehouse.id, part.id, lock=True)
        difference = domain.stocktake_differences({part.id: counted}, {part.id: on_hand}).get(part.id)
        if not difference:
            continue
        note = data.note or f"盘点: 账面 {on_hand}, 实盘 {counted}"
        if difference > 0:
            moves.append(_move(uow, part, difference, domain.ADJUSTMENT, target=warehouse, note=note))
        else:
            moves.append(_move(uow, part, -difference, domain.ADJUSTMENT, source=warehouse, note=note,
                               field=f"lines.{i}.counted"))
    return moves


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
    if location.kind == domain.WAREHOUSE:
        ensure_visible(uow, location, "location_id")
    elif location.kind == domain.PERSONAL:
        _ensure_may_see_personal(uow, location.owner_user_id)
    return {"location": location, "items": stock_items(uow, location.id)}


def _ensure_may_see_personal(uow: UnitOfWork, technician_id: uuid.UUID) -> None:
    # Managers see every technician's holdings (for borrowing and forecasting); a technician only theirs.
    if uow.ctx.actor_role == domain.TECHNICIAN and technician_id != uow.ctx.actor_id:
        raise Forbidden("technicians see only their own personal stock",
                        [{"field": "technician_id", "message": "must be yourself"}])


def get_personal_stock(uow: UnitOfWork, technician_id: uuid.UUID) -> dict:
    _ensure_may_see_personal(uow, technician_id)
    location = personal_location(uow, technician_id)
    return {"location": location, "items": stock_items(uow, location.id) if location else []}


def check_stock_available(uow: UnitOfWork, data: CheckStockIn) -> dict:
    """Does the technician's personal stock hold these parts now? (tickets asks before completing)"""
    wanted: dict[uuid.UUID, Decimal] = {}
    for line in data.parts:
        wanted[line.part_id] = wanted.get(line.part_id, domain.ZERO) + line.quantity
    location = personal_location(uow, data.technician_id)
    shortfalls = []
    for part_id, quantity in wanted.items():
        held = balance_of(uow, location.id, part_id) if location else domain.ZERO
        if held < quantity:
            shortfalls.append(StockShortfallV1(part_id=part_id, requested=quantity, available=max(held, domain.ZERO)))
    answer = StockAvailabilityV1(available=not shortfalls or _negative_allowed(uow), shortfalls=shortfalls)
    return answer.model_dump(mode="json")


def list_moves(uow: UnitOfWork, ref_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
               location_id: uuid.UUID | None = None, offset: int = 0, limit: int = 100,
               **filters) -> tuple[list[StockMove], int]:
    from .reports import moves_query  # the one place movement filters are applied
    query = moves_query(uow, ref_id=ref_id, part_id=part_id, location_id=location_id, **filters)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(StockMove.created_at, StockMove.id).offset(offset).limit(limit))
    return list(rows), total


# --- requisitions (申领) and returns (退回) ------------------------------------------------------------

_EVENTS = {domain.ISSUE: {"requested": "requisition.requested", "approved": "requisition.approved",
                          "rejected": "requisition.rejected"},
           domain.RETURN_REQUEST: {"requested": "stock.return_requested", "approved": "stock.return_approved",
                                   "rejected": "stock.return_rejected"}}


def _requisition_event(uow: UnitOfWork, requisition: Requisition) -> RequisitionV1:
    return RequisitionV1(
        requisition_id=requisition.id, number=requisition.number, technician_id=requisition.technician_id,
        warehouse_id=requisition.warehouse_id, status=requisition.status, reason=requisition.reject_reason,
        kind=requisition.kind, requested_by=requisition.requested_by,
        manager_ids=managers_of(uow, _find(uow, Location, requisition.warehouse_id)),
        lines=[RequisitionLineV1(part_id=line.part_id, quantity=line.quantity,
                                 approved_quantity=line.approved_quantity) for line in requisition.lines],
    )


def _requesting_technician(uow: UnitOfWork, technician_id: uuid.UUID | None) -> uuid.UUID:
    ctx = uow.ctx
    technician_id = technician_id or ctx.actor_id
    if technician_id is None:
        raise field_error("technician_id", "required when the caller is not a user")
    if ctx.actor_role == domain.TECHNICIAN and technician_id != ctx.actor_id:
        raise Forbidden("technicians may only request for themselves",
                        [{"field": "technician_id", "message": "must be yourself"}])
    return technician_id


def _new_requisition(uow: UnitOfWork, kind: str, technician_id: uuid.UUID, warehouse: Location,
                     lines: list[LineIn], note: str | None) -> Requisition:
    prefix = "REQ" if kind == domain.ISSUE else "RET"
    requisition = Requisition(
        number=uow.next_number("requisition" if kind == domain.ISSUE else "stock_return", prefix),
        kind=kind, technician_id=technician_id, warehouse_id=warehouse.id, status=domain.REQUESTED, note=note,
        requested_by=uow.ctx.actor_id,
        lines=[RequisitionLine(position=i, part_id=line.part_id, quantity=line.quantity)
               for i, line in enumerate(lines)],
    )
    uow.session.add(requisition)
    uow.session.flush()
    uow.emit(_EVENTS[kind]["requested"], _requisition_event(uow, requisition))
    return requisition


def _advise_available(uow: UnitOfWork, location: Location | None, parts: list[Part], lines: list[LineIn]) -> None:
    # Advisory at request time; approval re-checks atomically against the stock it takes.
    if _negative_allowed(uow):
        return
    for i, (part, line) in enumerate(zip(parts, lines)):
        available = balance_of(uow, location.id, part.id) if location else domain.ZERO
        if line.quantity > available:
            where = location.name if location else domain.PERSONAL_LOCATION_NAME
            raise Conflict(f"only {available} {part.unit} of {part.code} in {where}",
                           [{"field": f"lines.{i}.quantity", "message": f"only {available} in stock"}])


def request_requisition(uow: UnitOfWork, data: RequisitionIn) -> Requisition:
    technician_id = _requesting_technician(uow, data.technician_id)
    warehouse = get_warehouse(uow, data.warehouse_id)
    parts = _resolve_parts(uow, data.lines)
    _advise_available(uow, warehouse, parts, data.lines)
    return _new_requisition(uow, domain.ISSUE, technician_id, warehouse, data.lines, data.note)


def request_return(uow: UnitOfWork, data: ReturnIn) -> Requisition:
    """退回: a technician offers parts from personal stock back to a warehouse; the manager approves."""
    technician_id = _requesting_technician(uow, data.technician_id)
    warehouse = get_warehouse(uow, data.warehouse_id)
    parts = _resolve_parts(uow, data.lines)
    _advise_available(uow, personal_location(uow, technician_id), parts, data.lines)
    return _new_requisition(uow, domain.RETURN_REQUEST, technician_id, warehouse, data.lines, data.note)


def get_requisition(uow: UnitOfWork, requisition_id: uuid.UUID) -> Requisition:
    requisition = uow.get_or_404(Requisition, requisition_id, "requisition_id", "requisition")
    if uow.ctx.actor_role == domain.TECHNICIAN and requisition.technician_id != uow.ctx.actor_id:
        raise NotFound(f"requisition {requisition_id} not found",
                       [{"field": "requisition_id", "message": "not found"}])
    return requisition


def list_requisitions(uow: UnitOfWork, status: str | None, technician_id: uuid.UUID | None,
                      offset: int, limit: int, kind: str | None = None,
                      warehouse_id: uuid.UUID | None = None) -> tuple[list[Requisition], int]:
    query = sa.select(Requisition)
    if status:
        query = query.where(Requisition.status == status)
    if kind:
        query = query.where(Requisition.kind == kind)
    if uow.ctx.actor_role == domain.TECHNICIAN:  # a technician's own requests only
        technician_id = uow.ctx.actor_id
    if technician_id:
        query = query.where(Requisition.technician_id == technician_id)
    if warehouse_id:
        query = query.where(Requisition.warehouse_id == warehouse_id)
    visible = visible_warehouse_ids(uow)
    if visible is not None:  # a regional manager: the requests addressed to their warehouses
        query = query.where(Requisition.warehouse_id.in_(visible or [uuid.UUID(int=0)]))
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(Requisition.created_at, Requisition.id).offset(offset).limit(limit))
    return list(rows), total


def _decide(uow: UnitOfWork, requisition_id: uuid.UUID) -> tuple[Requisition, Location]:
    """Load a requisition for a decision: only by a manager of its warehouse, locked, and only once."""
    if uow.ctx.actor_role not in domain.DECIDER_ROLES:
        raise Forbidden("only a warehouse manager or an administrator may decide requisitions")
    # FOR UPDATE: two managers deciding the same requisition at once are serialized,
    # and the second sees the first one's status.
    requisition = uow.session.scalar(
        sa.select(Requisition).where(Requisition.id == requisition_id).with_for_update())
    if requisition is None:
        raise NotFound(f"requisition {requisition_id} not found",
                       [{"field": "requisition_id", "message": "not found"}])
    warehouse = get_warehouse(uow, requisition.warehouse_id)
    ensure_manages(uow, warehouse)
    domain.ensure_undecided(requisition.status)
    requisition.decided_by = uow.ctx.actor_id
    requisition.decided_at = utcnow()
    return requisition, warehouse


def approve_requisition(uow: UnitOfWork, requisition_id: uuid.UUID, data: ApprovalIn) -> Requisition:
    """Move the approved quantities: warehouse → personal stock (申领) or back (退回).

    All or nothing: if any line lacks stock now, Conflict and the transaction rolls back.
    """
    requisition, warehouse = _decide(uow, requisition_id)
    approvals = None if data.lines is None else [(a.part_id, a.approved_quantity) for a in data.lines]
    quantities = domain.approved_quantities([(line.part_id, line.quantity) for line in requisition.lines],
                                            approvals)
    personal = _ensure_personal_location(uow, requisition.technician_id)
    ref = ("requisition", requisition.id, requisition.number)
    if requisition.kind == domain.RETURN_REQUEST:
        source, target, kind = personal, warehouse, domain.RETURN
    else:
        source, target, kind = warehouse, personal, domain.REQUISITION_ISSUE
    # Part order, so concurrent multi-line approvals lock balances in the same order (no deadlock).
    for line, quantity in sorted(zip(requisition.lines, quantities), key=lambda pair: pair[0].part_id):
        line.approved_quantity = quantity
        if quantity > 0:
            _move(uow, get_part(uow, line.part_id), quantity, kind, source=source, target=target, ref=ref,
                  technician_id=requisition.technician_id, field=f"lines.{line.position}.approved_quantity")
    requisition.status = domain.APPROVED
    uow.session.flush()
    uow.emit(_EVENTS[requisition.kind]["approved"], _requisition_event(uow, requisition))
    return requisition


def reject_requisition(uow: UnitOfWork, requisition_id: uuid.UUID, reason: str) -> Requisition:
    requisition, _ = _decide(uow, requisition_id)
    requisition.status = domain.REJECTED
    requisition.reject_reason = reason
    uow.session.flush()
    uow.emit(_EVENTS[requisition.kind]["rejected"], _requisition_event(uow, requisition))
    return requisition


# --- transfers (调拨) -------------------------------------------------------------------------------

def _transfer_event(uow: UnitOfWork, transfer: Transfer) -> TransferV1:
    return TransferV1(
        transfer_id=transfer.id, number=transfer.number, from_warehouse_id=transfer.from_warehouse_id,
        to_warehouse_id=transfer.to_warehouse_id, status=transfer.status,
        manager_ids=managers_of(uow, _find(uow, Location, transfer.to_warehouse_id)),
        lines=[TransferLineV1(part_id=line.part_id, quantity=line.quantity,
                              received_quantity=line.received_quantity) for line in transfer.lines])


def create_transfer(uow: UnitOfWork, data: TransferIn) -> Transfer:
    """Ship parts from one warehouse to another: out of the source into transit, at once."""
    if data.from_warehouse_id == data.to_warehouse_id:
        raise field_error("to_warehouse_id", "must differ from from_warehouse_id")
    source = get_warehouse(uow, data.from_warehouse_id, "from_warehouse_id")
    destination = get_warehouse(uow, data.to_warehouse_id, "to_warehouse_id")
    ensure_manages(uow, source)
    parts = _resolve_parts(uow, data.lines)
    transit = _transit_location(uow)
    transfer = Transfer(number=uow.next_number("transfer", "TRF"), from_warehouse_id=source.id,
                        to_warehouse_id=destination.id, status=domain.IN_TRANSIT, note=data.note,
                        created_by=uow.ctx.actor_id,
                        lines=[TransferLine(position=i, part_id=line.part_id, quantity=line.quantity,
                                            received_quantity=domain.ZERO) for i, line in enumerate(data.lines)])
    uow.session.add(transfer)
    uow.session.flush()
    ref = ("transfer", transfer.id, transfer.number)
    for i in _in_part_order(parts):
        _move(uow, parts[i], data.lines[i].quantity, domain.TRANSFER_OUT, source=source, target=transit, ref=ref,
              note=data.note, field=f"lines.{i}.quantity")
    uow.emit("transfer.shipped", _transfer_event(uow, transfer))
    return transfer


def receive_transfer(uow: UnitOfWork, transfer_id: uuid.UUID, data: TransferReceiveIn) -> Transfer:
    """Receive what arrived (all that is in transit, or listed quantities: partial receipt)."""
    transfer = uow.session.scalar(sa.select(Transfer).where(Transfer.id == transfer_id).with_for_update())
    if transfer is None:
        raise NotFound(f"transfer {transfer_id} not found", [{"field": "transfer_id", "message": "not found"}])
    destination = get_warehouse(uow, transfer.to_warehouse_id, "to_warehouse_id")
    ensure_manages(uow, destination)
    if transfer.status == domain.RECEIVED:
        raise Conflict("transfer is already received", [{"field": "status", "message": "already received"}])
    outstanding = {line.part_id: line.quantity - line.received_quantity for line in transfer.lines}
    receipt = None if data.lines is None else [(line.part_id, line.quantity) for line in data.lines]
    quantities = domain.receipt_quantities(outstanding, receipt)
    transit = _transit_location(uow)
    ref = ("transfer", transfer.id, transfer.number)
    for line in sorted(transfer.lines, key=lambda line: line.part_id):
        quantity = quantities.get(line.part_id)
        if quantity:
            _move(uow, get_part(uow, line.part_id), quantity, domain.TRANSFER_IN, source=transit,
                  target=destination, ref=ref, note=data.note)
            line.received_quantity = domain.to_scale(line.received_quantity + quantity)
    transfer.status = domain.transfer_status([(line.quantity, line.received_quantity) for line in transfer.lines])
    if transfer.status == domain.RECEIVED:
        transfer.received_at = utcnow()
    uow.session.flush()
    uow.emit("transfer.received", _transfer_event(uow, transfer))
    return transfer


def get_transfer(uow: UnitOfWork, transfer_id: uuid.UUID) -> Transfer:
    return uow.get_or_404(Transfer, transfer_id, "transfer_id", "transfer")


def list_transfers(uow: UnitOfWork, status: str | None, warehouse_id: uuid.UUID | None,
                   offset: int, limit: int) -> tuple[list[Transfer], int]:
    query = sa.select(Transfer)
    if status:
        query = query.where(Transfer.status == status)
    if warehouse_id:
        query = query.where(sa.or_(Transfer.from_warehouse_id == warehouse_id,
                                   Transfer.to_warehouse_id == warehouse_id))
    visible = visible_warehouse_ids(uow)
    if visible is not None:
        ids = visible or [uuid.UUID(int=0)]
        query = query.where(sa.or_(Transfer.from_warehouse_id.in_(ids), Transfer.to_warehouse_id.in_(ids)))
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(Transfer.created_at, Transfer.id).offset(offset).limit(limit))
    return list(rows), total


# --- consumption on work orders ---------------------------------------------------------------------

def _as(model: type[BaseModel], event) -> BaseModel:
    """A ticket payload (typed contract or dict) read as inventory's lenient view of it."""
    if isinstance(event, model):
        return event
    return model.model_validate(event.model_dump(mode="json") if isinstance(event, BaseModel) else event)


def _home_warehouse(uow: UnitOfWork, technician_id: uuid.UUID) -> Location | None:
    """The warehouse a technician last drew parts from: its managers reconcile their shortfalls."""
    warehouse_id = uow.session.scalar(
        sa.select(Requisition.warehouse_id)
        .where(Requisition.technician_id == technician_id, Requisition.kind == domain.ISSUE)
        .order_by(Requisition.created_at.desc()).limit(1))
    return _find(uow, Location, warehouse_id) if warehouse_id else None


def consume_parts_for_work_order(uow: UnitOfWork, event) -> list[StockMove]:
    """Take the parts a completed work order used from the technician's personal stock.

    A shortfall never fails the event: what is there is consumed, the rest is recorded
    as a ConsumptionShortfall (and `consumption.shortfall`) for the warehouse manager.
    Old parts (旧件) brought back are recorded as held by the technician.
    """
    order: CompletedOrder = _as(CompletedOrder, event)
    location = personal_location(uow, order.technician_id)
    ref = ("work_order", order.ticket_id, order.number)
    negative_ok = _negative_allowed(uow)
    moves = []
    for used in sorted(order.parts_used, key=lambda p: p.part_id):
        wanted = domain.to_scale(used.quantity)
        if wanted == 0:  # below what the ledger can record
            continue
        part = _find(uow, Part, used.part_id)
        if part is None:
            log.warning("work order %s used unknown part %s", order.number, used.part_id)
        if part is not None and negative_ok:
            location = location or _ensure_personal_location(uow, order.technician_id)
            available = taken = wanted
        else:
            # Locked, so the quantity we take is still there when we take it.
            available = balance_of(uow, location.id, part.id, lock=True) if location and part else domain.ZERO
            taken = max(min(available, wanted), domain.ZERO)
        if taken > 0:
            moves.append(_move(uow, part, taken, domain.CONSUMPTION, source=location, ref=ref,
                               actor_id=order.technician_id, technician_id=order.technician_id,
                               customer_id=order.customer_id))
        if taken < wanted:
            warehouse = _home_warehouse(uow, order.technician_id)
            managers = managers_of(uow, warehouse)
            uow.session.add(ConsumptionShortfall(
                ticket_id=order.ticket_id, ticket_number=order.number, technician_id=order.technician_id,
                part_id=used.part_id, requested=wanted, available=max(available, domain.ZERO),
                customer_id=order.customer_id, warehouse_id=warehouse.id if warehouse else None,
                manager_ids=[str(m) for m in managers]))
            uow.emit("consumption.shortfall", ConsumptionShortfallV1(
                ticket_id=order.ticket_id, ticket_number=order.number, number=order.number,
                technician_id=order.technician_id, part_id=used.part_id, requested=wanted,
                available=max(available, domain.ZERO), manager_ids=managers,
                warehouse_id=warehouse.id if warehouse else None, customer_id=order.customer_id))
    for old in order.old_parts or []:
        uow.session.add(OldPart(ticket_id=order.ticket_id, ticket_number=order.number,
                                technician_id=order.technician_id, customer_id=order.customer_id,
                                part_id=old.part_id, quantity=domain.to_scale(old.quantity),
                                serial_number=old.serial_number, status=domain.HELD))
    uow.session.flush()
    return moves


def reverse_consumption(uow: UnitOfWork, event) -> list[StockMove]:
    """A completed order was reopened or cancelled: book what it still has consumed back into the
    personal stock it came from (compensating entries; the original lines stay)."""
    order: ReopenedOrder = _as(ReopenedOrder, event)
    rows = uow.session.execute(
        sa.select(StockMove.kind, StockMove.part_id,
                  sa.func.coalesce(StockMove.from_location_id, StockMove.to_location_id), StockMove.quantity,
                  StockMove.unit_cost, StockMove.technician_id, StockMove.customer_id)
        .where(StockMove.ref_id == order.ticket_id, StockMove.ref_type == "work_order",
               StockMove.kind.in_((domain.CONSUMPTION, domain.CONSUMPTION_REVERSAL)))
        .order_by(StockMove.created_at, StockMove.id)).all()
    net = domain.net_consumed([(r[0], r[1], r[2], r[3]) for r in rows])
    last = {(r[1], r[2]): r for r in rows if r[0] == domain.CONSUMPTION}
    ref = ("work_order", order.ticket_id, order.number)
    reason = order.reason or f"工单 {order.number} {'重开' if order.from_status else '撤销'}"
    moves, technician_id = [], None
    for (part_id, location_id), quantity in sorted(net.items(), key=lambda item: item[0][0]):
        original = last[(part_id, location_id)]
        location = _find(uow, Location, location_id)
        technician_id = original.technician_id
        moves.append(_move(uow, get_part(uow, part_id), quantity, domain.CONSUMPTION_REVERSAL, target=location,
                           ref=ref, note=reason[:500], technician_id=original.technician_id,
                           customer_id=original.customer_id, unit_cost=original.unit_cost))
    if moves:
        uow.emit("consumption.reversed", ConsumptionReversedV1(
            ticket_id=order.ticket_id, number=order.number, technician_id=technician_id, reason=order.reason,
            lines=[RequisitionLineV1(part_id=m.part_id, quantity=m.quantity) for m in moves]))
    return moves


def list_shortfalls(uow: UnitOfWork, status: str | None = None) -> list[ConsumptionShortfall]:
    query = sa.select(ConsumptionShortfall).order_by(ConsumptionShortfall.created_at, ConsumptionShortfall.id)
    if status:
        query = query.where(ConsumptionShortfall.status == status)
    rows = list(uow.session.scalars(query))
    visible = visible_warehouse_ids(uow)
    if visible is None:
        return rows
    me = str(uow.ctx.actor_id)
    return [s for s in rows if s.warehouse_id in visible or me in (s.manager_ids or [])]


def resolve_shortfall(uow: UnitOfWork, shortfall_id: uuid.UUID, resolution: str) -> ConsumptionShortfall:
    """A manager closes the exception once reconciled (the stock side is booked by the usual movements)."""
    if uow.ctx.actor_role not in domain.DECIDER_ROLES:
        raise Forbidden("only a warehouse manager or an administrator may resolve shortfalls")
    shortfall = uow.session.scalar(sa.select(ConsumptionShortfall).where(ConsumptionShortfall.id == shortfall_id)
                                   .with_for_update())
    if shortfall is None:
        raise NotFound(f"shortfall {shortfall_id} not found", [{"field": "shortfall_id", "message": "not found"}])
    if uow.ctx.actor_role == domain.WAREHOUSE_MANAGER and shortfall not in list_shortfalls(uow):
        raise Forbidden("this shortfall belongs to another warehouse's managers")
    if shortfall.status != "open":
        raise Conflict("shortfall is already resolved", [{"field": "status", "message": "already resolved"}])
    shortfall.status, shortfall.resolution = "resolved", resolution
    shortfall.resolved_by, shortfall.resolved_at = uow.ctx.actor_id, utcnow()
    uow.session.flush()
    return shortfall


# --- old parts (旧件) ----------------------------------------------------------------------------------

def list_old_parts(uow: UnitOfWork, status: str | None, technician_id: uuid.UUID | None, offset: int,
                   limit: int) -> tuple[list[OldPart], int]:
    query = sa.select(OldPart)
    if status:
        query = query.where(OldPart.status == status)
    if uow.ctx.actor_role == domain.TECHNICIAN:
        technician_id = uow.ctx.actor_id
    if technician_id:
        query = query.where(OldPart.technician_id == technician_id)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(OldPart.created_at, OldPart.id).offset(offset).limit(limit))
    return list(rows), total


def return_old_part(uow: UnitOfWork, old_part_id: uuid.UUID, data: OldPartReturnIn) -> OldPart:
    """旧件返仓: the warehouse receives a technician's old part; it enters that warehouse's stock."""
    old = uow.session.scalar(sa.select(OldPart).where(OldPart.id == old_part_id).with_for_update())
    if old is None:
        raise NotFound(f"old part {old_part_id} not found", [{"field": "old_part_id", "message": "not found"}])
    warehouse = get_warehouse(uow, data.warehouse_id)
    ensure_manages(uow, warehouse)
    if old.status != domain.HELD:
        raise Conflict(f"old part is already {old.status}", [{"field": "status", "message": f"already {old.status}"}])
    part = _find(uow, Part, old.part_id)
    if part is None:
        raise ValidationFailed("part_id: the old part is not in the catalog; add it first",
                               [{"field": "part_id", "message": "not in the catalog"}])
    note = data.note or ("旧件返仓" + (f" SN {old.serial_number}" if old.serial_number else ""))
    move = _move(uow, part, old.quantity, domain.OLD_PART_RETURN, target=warehouse,
                 ref=("work_order", old.ticket_id, old.ticket_number), technician_id=old.technician_id,
                 customer_id=old.customer_id, note=note, unit_cost=domain.ZERO)
    old.status, old.warehouse_id, old.move_id = domain.RETURNED, warehouse.id, move.id
    old.returned_by, old.returned_at = uow.ctx.actor_id, utcnow()
    uow.session.flush()
    uow.emit("old_part.returned", OldPartReturnedV1(
        old_part_id=old.id, ticket_id=old.ticket_id, number=old.ticket_number, technician_id=old.technician_id,
        part_id=old.part_id, quantity=old.quantity, serial_number=old.serial_number, warehouse_id=warehouse.id))
    return old
