"""Events → read models of the reports.

Payloads are read by the field names agreed between the services (see COMMON contracts in
svc_common/contracts), tolerating missing optional fields, so a producer adding a field never
breaks the reports and an older event still counts.

Every projection gives the same rows whatever order the events of one work order arrive in
(first acceptance is the earliest one, the latest completion/settlement/visit wins, the status
is that of the latest event), so a late redelivery or a replay lands on the same figures.
"""
import datetime as dt
import uuid
from functools import lru_cache
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from svc_common.contracts import EventEnvelope
from svc_common.db import insert_if_absent, new_id
from svc_common.uow import UnitOfWork

from . import domain, rollups
from .models import (
    CompletedWorkOrder,
    CreatedWorkOrder,
    CustomerFact,
    PartConsumption,
    PersonFact,
    ServiceRequestFact,
    TeamFact,
    WorkOrderFact,
)


# -- reading payloads -----------------------------------------------------------------------

_parse_uuid = lru_cache(maxsize=65536)(uuid.UUID)  # the events of one order repeat its ids


def as_uuid(value) -> uuid.UUID | None:
    if value in (None, ""):
        return None
    try:
        return value if isinstance(value, uuid.UUID) else _parse_uuid(str(value))
    except ValueError:
        return None


def as_time(value) -> dt.datetime | None:
    if not value:
        return None
    stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def as_decimal(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _uuids(values) -> list[str]:
    return [str(v) for v in (as_uuid(v) for v in values or []) if v]


# -- rows of the read models -------------------------------------------------------------------
#
# Events of one work order are consumed concurrently (one queue per event type), so the row an
# event folds into is locked (SELECT ... FOR UPDATE; created first if absent, ON CONFLICT DO
# NOTHING) before it is read: two events never decide from the same stale row. A batch
# (`prefetch`) locks all its rows in one query instead. Rows are cached per session: a batch
# touches the same order many times.

def _cache(uow: UnitOfWork) -> dict:
    return uow.session.info.setdefault("report_rows", {})


# Rows whose changes the rollups follow (rollups.snapshot / contributions).
ROLLED_UP = (WorkOrderFact, PartConsumption)


class FactRow:
    """A work-order row of a batch, loaded and written with SQL rather than through the ORM (a batch
    changes hundreds; the session's bookkeeping would cost more than folding the events in). Its
    columns are its attributes; `write_facts` writes back the ones a batch changed."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


def _one(uow: UnitOfWork, model, key: str, value: uuid.UUID, **defaults):
    cache = _cache(uow)
    row = cache.get((model, value))
    if row is not None:
        return row
    if model is WorkOrderFact:  # always loaded by `prefetch` (pre-inserted if new): the batch's events name it
        prefetch_keys(uow, model, key, [value])
        return cache[(model, value)]
    if (model, "prefetched") in cache:  # the batch loaded every existing row: a miss is a new one
        row = model(**{key: value}, tenant_id=uow.ctx.tenant_id, **defaults)
        uow.session.add(row)
        if model in ROLLED_UP:
            rollups.remember_new(uow, row)
    else:
        locked = sa.select(model).where(getattr(model, key) == value).with_for_update()
        row = uow.session.scalar(locked)
        if row is None:
            insert_if_absent(uow.session, model.__table__,
                             {"id": new_id(), "tenant_id": uow.ctx.tenant_id, key: value, **defaults})
            row = uow.session.scalar(locked)
        if model in ROLLED_UP:
            rollups.remember(uow, row)
    cache[(model, value)] = row
    return row


# Read models whose columns besides the key all have defaults: a batch creates the rows it misses
# before locking them (INSERT … ON CONFLICT DO NOTHING), so concurrent batches never race to insert
# the same row (the loser would fail and be run one event at a time).
PRE_INSERTED = (WorkOrderFact, ServiceRequestFact, CustomerFact, PersonFact, TeamFact)


def prefetch(uow: UnitOfWork, events: list[EventEnvelope]) -> None:
    """Load (and lock) every row a batch of events folds into, one query per model.

    Locks are taken in one order (model, then key) by every transaction, so two batches touching
    the same rows wait for each other instead of deadlocking."""
    wanted: dict = {}
    for event in events:
        for model, key, field in ROWS_OF.get(event.type, ()):
            value = as_uuid(event.data.get(field))
            if value is not None:
                wanted.setdefault((model, key), set()).add(value)
    for (model, key), values in sorted(wanted.items(), key=lambda kv: kv[0][0].__tablename__):
        prefetch_keys(uow, model, key, values)


def prefetch_keys(uow: UnitOfWork, model, key: str, values) -> None:
    cache = _cache(uow)
    column = getattr(model, key)
    values = sorted(v for v in values if (model, v) not in cache)
    for chunk in _chunks(values, 5000):
        if model in PRE_INSERTED:
            _insert_missing(uow, model, key, chunk)
        if model is WorkOrderFact:
            table = model.__table__
            locked = sa.select(table).where(table.c.tenant_id == uow.ctx.tenant_id, table.c[key].in_(chunk)) \
                .order_by(table.c[key]).with_for_update()
            originals = cache.setdefault(("originals", model), {})  # (projections assign new JSON values,
            for values_ in uow.session.execute(locked).mappings():  # never change one in place)
                row = FactRow(dict(values_))
                originals[id(row)] = (row, dict(values_))
                cache[(model, row.ticket_id)] = row
                rollups.remember(uow, row)
            continue
        locked = sa.select(model).where(column.in_(chunk)).order_by(column).with_for_update()
        for row in uow.session.scalars(locked):
            cache[(model, getattr(row, key))] = row
            if model in ROLLED_UP:
                rollups.remember(uow, row)
    cache[(model, "prefetched")] = True


def _insert_missing(uow: UnitOfWork, model, key: str, values: list) -> None:
    column = getattr(model, key)
    existing = set(uow.session.scalars(sa.select(column).where(column.in_(values))))
    missing = [v for v in values if v not in existing]  # sorted: inserts lock in key order too
    if not missing:
        return
    defaults = {c.name: c.default.arg for c in model.__table__.columns
                if c.default is not None and not callable(c.default.arg)}
    rows = [{**defaults, "id": new_id(), "tenant_id": uow.ctx.tenant_id, key: v} for v in missing]
    uow.session.connection().execute(_insert_statement(uow, model.__table__).on_conflict_do_nothing(), rows)


def _insert_statement(uow: UnitOfWork, table: sa.Table):
    if uow.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _chunks(values: list, size: int):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def forget_cached_rows(uow: UnitOfWork) -> None:
    uow.session.info.pop("report_rows", None)
    rollups.forget(uow)


_PG_CASTS = {"Uuid": "uuid", "UTCDateTime": "timestamptz", "Integer": "integer", "BigInteger": "bigint",
             "Boolean": "boolean", "Money": "numeric", "Quantity": "numeric", "String": "text", "JSON": "json"}


def write_facts(uow: UnitOfWork) -> None:
    """The work-order rows the batch changed, back into their table: on PostgreSQL in one UPDATE …
    FROM (the rows as one jsonb parameter: see rollups._upsert_postgres), elsewhere as an executemany of UPDATEs by id."""
    loaded = _cache(uow).pop(("originals", WorkOrderFact), None)
    if not loaded:
        return
    changed = [row for row, original in loaded.values() if row.__dict__ != original]
    if not changed:
        return
    table = WorkOrderFact.__table__
    columns = [c for c in table.columns if c.name not in ("tenant_id", "ticket_id")]  # id first
    if uow.session.get_bind().dialect.name != "postgresql":
        statement = table.update().where(table.c.id == sa.bindparam("row_id"), table.c.tenant_id == uow.ctx.tenant_id)
        uow.session.connection().execute(statement.values({c.name: sa.bindparam(f"v_{c.name}") for c in columns[1:]}), [
            {"row_id": row.id, **{f"v_{c.name}": row.__dict__.get(c.name) for c in columns[1:]}} for row in changed])
        return
    values = []
    for i, column in enumerate(columns):
        cast = _PG_CASTS[type(column.type).__name__]
        values.append(f"nullif((r.v->{i})::text, 'null')::json AS {column.name}" if cast == "json"
                      else f"(r.v->>{i})::{cast} AS {column.name}")
    sql = (f"UPDATE {table.name} AS t SET " + ", ".join(f"{c.name} = v.{c.name}" for c in columns[1:])
           + f" FROM (SELECT {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) AS r(v)) AS v "
           f"WHERE t.id = v.id AND t.tenant_id = %s")
    kinds = [_JSON_KIND.get(type(c.type).__name__, 0) for c in columns]
    payload = rollups.jsonb_param([[v if v is None or k == 0 else v.isoformat() if k == 1 else str(v)
                                    for v, k in zip((state.get(c.name) for c in columns), kinds)]
                                   for state in (row.__dict__ for row in changed)])
    with uow.session.connection().connection.cursor() as cursor:
        cursor.execute(sql, (payload, str(uow.ctx.tenant_id)))


_JSON_KIND = {"UTCDateTime": 1, "Uuid": 2, "Money": 2, "Quantity": 2}  # 0: as it is; 1: ISO text; 2: text


# -- work orders ------------------------------------------------------------------------------

ATTRIBUTES = ("number", "type", "priority", "customer_name")
ID_ATTRIBUTES = ("team_id", "technician_id", "customer_id", "plan_id", "service_request_id")


def _earliest(current, new):
    return new if current is None or (new is not None and new < current) else current


def project_ticket(uow: UnitOfWork, event: EventEnvelope) -> None:
    data, at = event.data, event.occurred_at
    ticket_id = as_uuid(data.get("ticket_id"))
    if ticket_id is None:
        return
    row = _one(uow, WorkOrderFact, "ticket_id", ticket_id, reopen_count=0)
    newer = row.attrs_at is None or at >= row.attrs_at
    for name in ATTRIBUTES:
        if data.get(name) is not None and (newer or getattr(row, name) is None):
            setattr(row, name, str(data[name]))
    for name in ID_ATTRIBUTES:
        value = as_uuid(data.get(name))
        if value is not None and (newer or getattr(row, name) is None):
            setattr(row, name, value)
    if "assistant_ids" in data and (newer or row.assistant_ids is None):
        row.assistant_ids = _uuids(data["assistant_ids"])
    if newer:
        row.attrs_at = at
    status = domain.STATUS_AFTER.get(event.type)
    if status and (row.status_at is None or at >= row.status_at):
        row.status, row.status_at = status, at

    if data.get("backfilled"):  # 补录 on creation or completion: the order has no real-time figures
        row.backfilled = True
    kind = event.type.removeprefix("ticket.")
    if kind == "created":
        row.created_at = as_time(data.get("created_at")) or at
    elif kind == "assigned" or kind == "reassigned":
        row.assigned_at = _earliest(row.assigned_at, at)
    elif kind in ("accepted", "grabbed"):  # the order was responded to
        row.accepted_at = _earliest(row.accepted_at, at)
    elif kind == "checked_in":  # the technician arrived
        row.checked_in_at = _earliest(row.checked_in_at, as_time(data.get("checked_in_at")) or at)
    elif kind == "completed":
        done = as_time(data.get("completed_at")) or at
        if row.completed_at is None or done >= row.completed_at:  # a reopened order counts on its latest
            row.completed_at = done
            seconds = data.get("on_site_seconds")
            row.on_site_seconds = int(seconds) if seconds is not None else None
            row.items_used = _items_used(data.get("service_items") or [])
    elif kind == "overdue":
        row.overdue_at = _earliest(row.overdue_at, as_time(data.get("due_at")) or at)
        deadlines = set(row.overdue_deadlines or [])
        deadlines.add(str(data.get("deadline") or "complete"))
        row.overdue_deadlines = sorted(deadlines)
    elif kind == "closed":
        row.closed_at = max(filter(None, (row.closed_at, as_time(data.get("closed_at")) or at)))
    elif kind == "cancelled":
        row.cancelled_at = max(filter(None, (row.cancelled_at, at)))
    elif kind == "reopened":
        row.reopen_count = (row.reopen_count or 0) + 1
    elif kind == "settled":
        settled = as_time(data.get("settled_at")) or at
        if row.settled_at is None or settled >= row.settled_at:
            row.settled_at = settled
            row.fee_total = as_decimal(data.get("fee_total"))
            row.cost_total = as_decimal(data.get("cost_total"))
            profit = as_decimal(data.get("gross_profit"))
            if profit is None and row.fee_total is not None:
                profit = row.fee_total - (row.cost_total or Decimal(0))
            row.gross_profit = profit
            row.settlement_kinds, row.items_billed = _settlement_summary(data)
    elif kind == "visited":
        visited = as_time(data.get("visited_at")) or at
        if row.visited_at is None or visited >= row.visited_at:
            row.visited_at = visited
            score = data.get("satisfaction")
            row.satisfaction = int(score) if score is not None else None
            scores = {str(k): int(v) for k, v in (data.get("scores") or {}).items() if v is not None}
            tags = sorted({str(t) for t in data.get("tags") or [] if t})
            row.visit_scores, row.visit_tags = scores or None, tags or None
            row.visit_by_customer = bool(data.get("by_customer"))


def _items_used(items) -> dict | None:
    """Service item → quantity used on a completion (the service-items report reads these)."""
    used: dict = {}
    for item in items:
        item_id = as_uuid(item.get("service_item_id"))
        if item_id is not None:
            used[str(item_id)] = used.get(str(item_id), Decimal(0)) + (as_decimal(item.get("quantity")) or Decimal(1))
    return {k: str(v) for k, v in used.items()} or None


def _settlement_summary(data) -> tuple[dict | None, dict | None]:
    """A settlement's lines per "side|kind" ([amount, how many]), and its billed service items
    (ref → [quantity, amount])."""
    kinds: dict = {}
    billed: dict = {}
    for side, key in (("fee", "fee_lines"), ("cost", "cost_lines")):
        for line in data.get(key) or []:
            kind = str(line.get("kind") or "other")
            amount = as_decimal(line.get("amount")) or Decimal(0)
            total, lines = kinds.get(f"{side}|{kind}", (Decimal(0), 0))
            kinds[f"{side}|{kind}"] = (total + amount, lines + 1)
            if side == "fee" and kind == "service_item":
                ref = as_uuid(line.get("ref_id"))
                quantity, total = billed.get(str(ref) if ref else "", (Decimal(0), Decimal(0)))
                billed[str(ref) if ref else ""] = (quantity + (as_decimal(line.get("quantity")) or Decimal(0)),
                                                   total + amount)
    return ({k: [str(a), n] for k, (a, n) in kinds.items()} or None,
            {k: [str(q), str(a)] for k, (q, a) in billed.items()} or None)


# The first read models (technician_daily, work_order_summary).

# Written once per batch as upserts (`write_first_read_models`), not as ORM rows: two more tables per
# order would otherwise cost a locked read and an ORM flush each.

def _first_rows(uow: UnitOfWork, model) -> dict:
    return _cache(uow).setdefault(("first", model), {})


def record_ticket_created(uow: UnitOfWork, event: EventEnvelope) -> None:
    data = event.data
    ticket_id, customer_id = as_uuid(data.get("ticket_id")), as_uuid(data.get("customer_id"))
    if ticket_id is None or customer_id is None:
        return
    # the contract has no creation time: the event's is it
    _first_rows(uow, CreatedWorkOrder)[ticket_id] = {
        "number": data.get("number") or "", "type": data.get("type") or "", "customer_id": customer_id,
        "created_at": event.occurred_at}


def record_ticket_completed(uow: UnitOfWork, event: EventEnvelope) -> None:
    data = event.data
    ticket_id, technician_id = as_uuid(data.get("ticket_id")), as_uuid(data.get("technician_id"))
    customer_id, completed_at = as_uuid(data.get("customer_id")), as_time(data.get("completed_at"))
    if None in (ticket_id, technician_id, customer_id):
        return
    completed_at = completed_at or event.occurred_at
    rows = _first_rows(uow, CompletedWorkOrder)
    if ticket_id in rows and completed_at < rows[ticket_id]["completed_at"]:
        return  # a reopened order's earlier completion, delivered late, does not overwrite the latest
    rows[ticket_id] = {"number": data.get("number") or "", "type": data.get("type") or "",
                       "technician_id": technician_id, "customer_id": customer_id, "completed_at": completed_at}


def write_first_read_models(uow: UnitOfWork) -> None:
    """The batch's created / completed orders, one upsert per table in key order: a creation
    overwrites, a completion only if not earlier than the one kept (the latest completion wins)."""
    cache = _cache(uow)
    for model in (CompletedWorkOrder, CreatedWorkOrder):  # table-name order, as `prefetch` locks
        rows = cache.pop(("first", model), None)
        if not rows:
            continue
        table = model.__table__
        statement = _insert_statement(uow, table)
        columns = next(iter(rows.values())).keys()
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "ticket_id"], set_={c: statement.excluded[c] for c in columns},
            where=table.c.completed_at <= statement.excluded.completed_at if model is CompletedWorkOrder else None)
        uow.session.connection().execute(statement, [
            {"id": new_id(), "tenant_id": uow.ctx.tenant_id, "ticket_id": ticket_id, **values}
            for ticket_id, values in sorted(rows.items())])


# -- other services' facts ---------------------------------------------------------------------

def project_stock_moved(uow: UnitOfWork, event: EventEnvelope) -> None:
    data = event.data
    move_id, part_id = as_uuid(data.get("move_id")), as_uuid(data.get("part_id"))
    sign = domain.CONSUMPTION_SIGN.get(data.get("kind"))
    if sign is None or move_id is None or part_id is None:
        return
    quantity = sign * abs(as_decimal(data.get("quantity")) or Decimal(0))
    unit_cost = as_decimal(data.get("unit_cost"))
    value = as_decimal(data.get("value"))
    if value is None and unit_cost is not None:
        value = unit_cost * abs(quantity)
    row = _one(uow, PartConsumption, "move_id", move_id, part_id=part_id, quantity=quantity,
               moved_at=as_time(data.get("moved_at")) or event.occurred_at)
    row.quantity, row.unit_cost = quantity, unit_cost
    row.value = sign * abs(value) if value is not None else None
    ticket_id = as_uuid(data.get("ticket_id")) or (as_uuid(data.get("ref_id"))
                                                  if data.get("ref_type") in ("ticket", "work_order") else None)
    row.technician_id, row.customer_id = as_uuid(data.get("technician_id")), as_uuid(data.get("customer_id"))
    row.warehouse_id, row.ticket_id = as_uuid(data.get("warehouse_id")), ticket_id


def project_service_request(uow: UnitOfWork, event: EventEnvelope) -> None:
    data = event.data
    request_id = as_uuid(data.get("request_id"))
    if request_id is None:
        return
    row = _one(uow, ServiceRequestFact, "request_id", request_id)
    row.number = data.get("number") or row.number
    row.channel = data.get("channel") or row.channel
    kind = event.type.removeprefix("service_request.")
    if kind == "created":
        row.created_at = event.occurred_at
        row.event_type = data.get("event_type")
        row.customer_id = as_uuid(data.get("customer_id"))
    elif kind == "converted":
        row.converted_at, row.ticket_id = event.occurred_at, as_uuid(data.get("ticket_id"))
    elif kind == "closed":
        row.closed_at, row.outcome = event.occurred_at, data.get("outcome")


def project_customer(uow: UnitOfWork, event: EventEnvelope) -> None:
    customer_id = as_uuid(event.data.get("customer_id"))
    if customer_id is None:
        return
    row = _one(uow, CustomerFact, "customer_id", customer_id)
    if event.data.get("name") or event.data.get("customer_name"):
        row.name = event.data.get("name") or event.data.get("customer_name")
    if event.type == "customer.created":
        row.created_at = event.occurred_at


def project_user(uow: UnitOfWork, event: EventEnvelope) -> None:
    user_id = as_uuid(event.data.get("user_id"))
    if user_id is None:
        return
    row = _one(uow, PersonFact, "user_id", user_id)
    row.name, row.role = event.data.get("name") or row.name, event.data.get("role") or row.role
    if "team_ids" in event.data:
        row.team_ids = _uuids(event.data["team_ids"])
    row.active = event.type != "user.deactivated" and bool(event.data.get("active", True))


def project_team(uow: UnitOfWork, event: EventEnvelope) -> None:
    team_id = as_uuid(event.data.get("team_id"))
    if team_id is None:
        return
    row = _one(uow, TeamFact, "team_id", team_id)
    row.name, row.kind = event.data.get("name") or row.name, event.data.get("kind") or row.kind
    row.parent_id = as_uuid(event.data.get("parent_id"))
    row.member_ids = _uuids(event.data.get("member_ids"))


def _first_read_models(uow: UnitOfWork, event: EventEnvelope) -> None:
    if event.type == "ticket.created":
        record_ticket_created(uow, event)
    elif event.type == "ticket.completed":
        record_ticket_completed(uow, event)


TICKET_EVENTS = tuple(sorted(set(domain.STATUS_AFTER) | {"ticket.overdue", "ticket.visited",
                                                          "ticket.reassignment_requested",
                                                          "ticket.reassignment_rejected"}))
# (producing service, event type) → projection
PROJECTIONS = {
    **{("tickets", t): project_ticket for t in TICKET_EVENTS},
    **{("tickets", f"service_request.{k}"): project_service_request for k in ("created", "converted", "closed")},
    ("inventory", "stock.moved"): project_stock_moved,
    ("customers", "customer.created"): project_customer,
    ("customers", "customer.updated"): project_customer,
    **{("gateway", f"user.{k}"): project_user for k in ("created", "updated", "deactivated")},
    ("gateway", "team.updated"): project_team,
}
# event type → the rows it folds into: (model, key column, payload field), for `prefetch`
ROWS_OF = {
    **{t: ((WorkOrderFact, "ticket_id", "ticket_id"),) for t in TICKET_EVENTS},
    **{f"service_request.{k}": ((ServiceRequestFact, "request_id", "request_id"),)
       for k in ("created", "converted", "closed")},
    "stock.moved": ((PartConsumption, "move_id", "move_id"),),
    "customer.created": ((CustomerFact, "customer_id", "customer_id"),),
    "customer.updated": ((CustomerFact, "customer_id", "customer_id"),),
    **{f"user.{k}": ((PersonFact, "user_id", "user_id"),) for k in ("created", "updated", "deactivated")},
    "team.updated": ((TeamFact, "team_id", "team_id"),),
}
# event type → its projections
BY_TYPE: dict[str, tuple] = {}
for (_, _event_type), _projection in PROJECTIONS.items():
    BY_TYPE[_event_type] = (_projection,)
for _event_type in ("ticket.created", "ticket.completed"):
    BY_TYPE[_event_type] = (_first_read_models, project_ticket)
READ_MODELS = (CreatedWorkOrder, CompletedWorkOrder, WorkOrderFact, PartConsumption, ServiceRequestFact, CustomerFact,
               PersonFact, TeamFact)
