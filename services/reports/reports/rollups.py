"""Rollups: additive figures per company, local day (and local month), and a few dimensions, kept by
the projections in the same transaction as the read-model rows they sum.

Every rollup figure is the sum, over the read-model rows, of what each row contributes
(`contributions`: a pure function of the row and the company's time zone). When a batch changes rows,
the rollups receive the difference between what the changed rows contribute after and before
(`Deltas`), written at the end of the transaction as one sorted upsert per table: two transactions
take the rows' locks in the same order, so they wait for each other but never deadlock. Whatever order
the events arrive in, and however often a row changes, the rollups stay equal to the sum over the
rows (a replay rebuilds the same figures; tests compare the reports read both ways). One rollup is
not such a sum: "served", the customers with an order completed per day and per month, is kept from
the "customers" rows' count of completed orders crossing zero (`Deltas._served`).

Each contribution goes to two grains: the local day (`d`) and the local month (`m`). A report over
whole months reads the month rows (a year is 12 rows per group), the days at its edges from the day
rows (`Tiling`). Money is in cents and quantities in thousandths: integers sum exactly in SQL on
PostgreSQL and SQLite alike.

Percentiles do not add up: the response / arrival / completion times of completed orders are also
counted per log-spaced bucket (`bucket_of`, 64 buckets from 1 minute to 30 days, each 19 % wider than
the previous). Up to `EXACT_TIMING_LIMIT` (1,000) completed orders a report reads the exact times from the rows; beyond
that its p90 is estimated inside the bucket holding the nearest rank (log interpolation), within
one bucket's width (≤ 19 %, typically a few %) of the exact one.
"""
import bisect
import datetime as dt
import math
from collections import namedtuple
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa

from svc_common.uow import UnitOfWork

from . import domain
from .models import HISTOGRAM_BUCKETS, ROLLUP_MEASURES, TIMING_MEASURES, PartConsumption, Rollup, TimingHistogram

# -- what each rollup holds -----------------------------------------------------------------------
# rollup → measure names in column order (m0, m1, …). The key of a row: tenant, rollup, grain,
# period, team, type, d1, d2 (the meaning of d1 and d2 is said per rollup).
SPECS = {
    # per team, type, d1 = priority: counts by the day each thing happened; the times of orders
    # completed that day (not backfilled: `timed`), as counts and sums in milliseconds
    "orders": ("created", "completed", "closed", "cancelled", "overdue", "timed", "on_time",
               "resp_n", "resp_ms", "arr_n", "arr_ms", "done_n", "done_ms"),
    # per team, type, d1 = current status: orders created / completed that day
    "status": ("created", "completed"),
    # per team, d1 = person (the technician; the assistant for `assists`; '' for none)
    "people": ("completed", "assists", "on_site_s", "first_fix", "timed", "on_time", "revenue_c", "settled",
               "sat_sum", "visits", "rated", "by_customer", "checked_in"),
    # per team, d1 = technician, d2 = "s:<dimension>" (stars) or "t:<tag>" (count)
    "ratings": ("sum", "n"),
    # per team, type: orders settled that day
    "revenue": ("orders", "fee_c", "cost_c", "profit_c", "profit0_c"),
    # per team, type, d1 = side (fee | cost), d2 = kind: settlement lines (amount, how many)
    "kinds": ("amount_c", "lines"),
    # per d1 = service item: used on orders completed that day; billed on orders settled that day
    "items": ("qty_m", "orders", "billed_qty_m", "revenue_c", "entries"),
    "items_all": ("orders",),  # orders that used any service item (not the sum over items)
    # per d1 = customer: orders completed, revenue settled
    "customers": ("completed", "revenue_c", "revenued"),
    # the customers served (completed > 0 in "customers") per day and per month: not a sum of
    # contributions but kept from the "customers" rows' crossings of zero (Deltas._served); a month's
    # count is of its month rows, not the sum of its days (a customer served twice counts once)
    "served": ("customers",),
    # per type, d1 = plan: planned orders created that day, by outcome now
    "plans": ("planned", "done", "cancelled", "open"),
    # per d1 = dimension (part | warehouse | technician | customer), d2 = its id: consumption
    "parts": ("qty_m", "value_c", "entries", "moves"),
    # per team, d1 = status: the orders open right now (grain "n", one period), and those overdue
    "open": ("n", "overdue"),
}
NOW = dt.date(2000, 1, 1)  # the one period of grain "n" (figures as of now, not of a day)
INDEX = {name: {m: i for i, m in enumerate(measures)} for name, measures in SPECS.items()}
assert all(len(m) <= ROLLUP_MEASURES for m in SPECS.values())

EXACT_TIMING_LIMIT = 1000  # completed orders in a window up to which p90 is read exactly from the rows


# -- time zones ------------------------------------------------------------------------------------

_LOCAL_DAYS: dict = {}


def local_day(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    # Every zone's offset (and DST change) is a multiple of 15 minutes: all instants of one 15-minute
    # UTC slot share their local day, so convert once per slot.
    key = (zone.key, int(instant.timestamp()) // 900)
    day = _LOCAL_DAYS.get(key)
    if day is None:
        if len(_LOCAL_DAYS) > 500_000:
            _LOCAL_DAYS.clear()
        day = _LOCAL_DAYS[key] = instant.astimezone(zone).date()
    return day


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


_MONTHS: dict = {}


def _month(day: dt.date) -> dt.date:
    month = _MONTHS[day] = day.replace(day=1)
    return month


# -- units -----------------------------------------------------------------------------------------

CENT, MILLI = Decimal(100), Decimal(1000)


def cents(value) -> int:
    return int((Decimal(value or 0) * CENT).to_integral_value(ROUND_HALF_UP))


def millis(value) -> int:
    return int((Decimal(value or 0) * MILLI).to_integral_value(ROUND_HALF_UP))


def from_cents(value) -> Decimal:
    return Decimal(int(value or 0)).scaleb(-2)  # exact, two places (as quantize(CENT) of cents / 100)


def from_millis(value) -> Decimal:
    return Decimal(int(value or 0)) / MILLI


# -- timing buckets --------------------------------------------------------------------------------

RATIO = 43200 ** (1 / (HISTOGRAM_BUCKETS - 2))  # bucket 1 starts at 1 minute, the last at 30 days
EDGES = [0.0] + [RATIO ** i for i in range(HISTOGRAM_BUCKETS - 1)]  # minutes; EDGES[i] starts bucket i


def shown_minutes(seconds: float) -> float:
    """A time as the reports show it (domain.p90 / average → minutes to 0.1)."""
    return round(round(seconds, 1) / 60, 1)


def bucket_of(seconds: float) -> int:
    minutes = shown_minutes(seconds)
    if minutes < 1:
        return 0
    return min(int(math.log(minutes) / math.log(RATIO)) + 1, HISTOGRAM_BUCKETS - 1)


def p90_from_buckets(counts: list[int]) -> float | None:
    """Nearest-rank p90 estimated from bucket counts: the bucket holding the rank, and a log
    interpolation of the rank's place inside it."""
    n = sum(counts)
    if not n:
        return None
    rank, seen = math.ceil(0.9 * n), 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            share = (rank - seen - 0.5) / count
            if i == 0:
                return round(share, 1)
            low = EDGES[i]
            high = EDGES[i + 1] if i + 1 < len(EDGES) else low * RATIO
            return round(low * (high / low) ** share, 1)
        seen += count
    return None


# -- what a row contributes ------------------------------------------------------------------------
#
# A row's contributions come in parts, each reading a few of its fields: when a batch changes a row,
# only the parts whose fields changed are taken away (old values) and added again (new values).

FACT_FIELDS = ("team_id", "technician_id", "assistant_ids", "type", "priority", "status", "customer_id", "plan_id",
               "created_at", "accepted_at", "checked_in_at", "completed_at", "closed_at", "cancelled_at",
               "overdue_at", "overdue_deadlines", "reopen_count", "on_site_seconds", "settled_at", "fee_total",
               "cost_total", "gross_profit", "visited_at", "satisfaction", "visit_scores", "visit_tags",
               "visit_by_customer", "backfilled", "settlement_kinds", "items_used", "items_billed")
FactView = namedtuple("FactView", FACT_FIELDS)
PART_FIELDS = ("part_id", "quantity", "value", "technician_id", "customer_id", "warehouse_id", "moved_at")
PartView = namedtuple("PartView", PART_FIELDS)
_IDS = {"team_id", "technician_id", "customer_id", "plan_id", "part_id", "warehouse_id"}  # kept as text ('' if none)


def _freeze(value):
    """JSON values as hashable, comparable tuples (dicts sorted by key; list values as tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(value)
    return value


_FREEZE = {"assistant_ids", "overdue_deadlines", "visit_scores", "visit_tags", "settlement_kinds", "items_used",
           "items_billed"}


def _reader(fields):
    steps = [(f, 1 if f in _IDS else 2 if f in _FREEZE else 0) for f in fields]

    def read(state: dict) -> tuple:
        out = []
        for name, how in steps:
            value = state.get(name)
            out.append((str(value) if value else "") if how == 1 else _freeze(value) if how == 2 else value)
        return tuple(out)
    return read


_read_fact, _read_part = _reader(FACT_FIELDS), _reader(PART_FIELDS)


def snapshot(row):
    """The fields of a read-model row its contributions depend on (hashable, comparable; ids as text).
    Read from the instance's own state: every column of these rows is loaded or set."""
    if isinstance(row, PartConsumption):
        return PartView(*_read_part(row.__dict__))
    return FactView(*_read_fact(row.__dict__))  # a work order (projections.FactRow)


def _ms(start, end) -> int | None:
    seconds = domain.seconds_between(start, end)
    return None if seconds is None else int(round(seconds * 1000))


def on_site_seconds(o) -> int:
    """Hours on site as the personnel report counts them: reported, else check-in → completion."""
    return o.on_site_seconds or int(domain.seconds_between(o.checked_in_at, o.completed_at) or 0)


def _created(o, zone, out, sign):
    out.add("orders", local_day(o.created_at, zone), o.team_id, o.type or "", o.priority or "", "", ((0, sign),))


def _created_status(o, zone, out, sign):
    out.add("status", local_day(o.created_at, zone), o.team_id, o.type or "", o.status or "", "", ((0, sign),))


def _plans(o, zone, out, sign):
    if o.plan_id:
        outcome = 2 if o.status == "cancelled" else 1 if o.completed_at else 3
        out.add("plans", local_day(o.created_at, zone), "", o.type or "", o.plan_id, "", ((0, sign), (outcome, sign)))


def _completed(o, zone, out, sign):
    day, team, type_ = local_day(o.completed_at, zone), o.team_id, o.type or ""
    figures = [(1, sign)]
    if not o.backfilled:  # 补录: done, but no times and no SLA
        figures += [(5, sign), (6, 0 if o.overdue_deadlines else sign)]
        for measure, n, total, column in (("r", 7, 8, o.accepted_at), ("a", 9, 10, o.checked_in_at),
                                          ("c", 11, 12, o.completed_at)):
            ms = _ms(o.created_at, column)
            if ms is not None:
                figures += [(n, sign), (total, sign * ms)]
                out.histogram(day, team, type_, f"{measure}{bucket_of(ms / 1000)}", sign)
    out.add("orders", day, team, type_, o.priority or "", "", figures)


def _completed_status(o, zone, out, sign):
    out.add("status", local_day(o.completed_at, zone), o.team_id, o.type or "", o.status or "", "", ((1, sign),))


def _completed_people(o, zone, out, sign):
    day, team = local_day(o.completed_at, zone), o.team_id
    figures = [(0, sign), (2, sign * on_site_seconds(o)), (3, 0 if o.reopen_count else sign)]
    if not o.backfilled:
        figures += [(4, sign), (5, 0 if o.overdue_deadlines else sign)]
    out.add("people", day, team, "", o.technician_id, "", figures)
    for assistant in o.assistant_ids or ():
        out.add("people", day, team, "", str(assistant), "", ((1, sign),))


def _completed_customer(o, zone, out, sign):
    if o.customer_id:
        out.add("customers", local_day(o.completed_at, zone), "", "", o.customer_id, "", ((0, sign),))


def _completed_items(o, zone, out, sign):
    if o.items_used:
        day = local_day(o.completed_at, zone)
        for item, quantity in o.items_used:
            out.add("items", day, "", "", item, "", ((0, sign * millis(quantity)), (1, sign), (4, sign)))
        out.add("items_all", day, "", "", "", "", ((0, sign),))


def _closed(o, zone, out, sign):
    out.add("orders", local_day(o.closed_at, zone), o.team_id, o.type or "", o.priority or "", "", ((2, sign),))


def _cancelled(o, zone, out, sign):
    out.add("orders", local_day(o.cancelled_at, zone), o.team_id, o.type or "", o.priority or "", "", ((3, sign),))


def _overdue(o, zone, out, sign):
    out.add("orders", local_day(o.overdue_at, zone), o.team_id, o.type or "", o.priority or "", "", ((4, sign),))


def _checked_in(o, zone, out, sign):
    out.add("people", local_day(o.checked_in_at, zone), o.team_id, "", o.technician_id, "", ((12, sign),))


def _settled(o, zone, out, sign):
    day, team, type_ = local_day(o.settled_at, zone), o.team_id, o.type or ""
    fee, cost = o.fee_total, o.cost_total
    profit = o.gross_profit if o.gross_profit is not None else (fee or 0) - (cost or 0)
    out.add("revenue", day, team, type_, "", "", ((0, sign), (1, sign * cents(fee)), (2, sign * cents(cost)),
                                                  (3, sign * cents(profit)), (4, sign * cents(o.gross_profit))))
    if fee is not None:
        out.add("people", day, team, "", o.technician_id, "", ((6, sign * cents(fee)), (7, sign)))
        if o.customer_id:
            out.add("customers", day, "", "", o.customer_id, "", ((1, sign * cents(fee)), (2, sign)))
    for side_kind, (amount, lines) in o.settlement_kinds or ():
        side, kind = side_kind.split("|", 1)
        out.add("kinds", day, team, type_, side, kind, ((0, sign * cents(amount)), (1, sign * int(lines))))
    for item, (quantity, amount) in o.items_billed or ():
        out.add("items", day, "", "", item, "", ((2, sign * millis(quantity)), (3, sign * cents(amount)), (4, sign)))


def _open(o, zone, out, sign):
    if o.status in domain.OPEN_STATUSES:
        out.add_now("open", o.team_id, "", o.status, "", ((0, sign), (1, sign if o.overdue_at else 0)))


def _visited(o, zone, out, sign):
    day, team, tech = local_day(o.visited_at, zone), o.team_id, o.technician_id
    figures = []
    if o.satisfaction is not None:
        figures += [(8, sign * o.satisfaction), (9, sign)]
    if o.visit_scores or o.visit_tags:
        figures += [(10, sign), (11, sign if o.visit_by_customer else 0)]
        for dimension, stars in o.visit_scores or ():
            out.add("ratings", day, team, "", tech, f"s:{dimension}"[:200], ((0, sign * int(stars)), (1, sign)))
        for tag in sorted(set(o.visit_tags or ())):
            out.add("ratings", day, team, "", tech, f"t:{tag}"[:200], ((0, sign), (1, sign)))
    if figures:
        out.add("people", day, team, "", tech, "", figures)


# part → (the time that must be set, the fields it reads)
FACT_PARTS = [
    (_created, "created_at", ("team_id", "type", "priority")),
    (_created_status, "created_at", ("team_id", "type", "status")),
    (_plans, "created_at", ("type", "plan_id", "status", "completed_at")),
    (_completed, "completed_at", ("team_id", "type", "priority", "backfilled", "overdue_deadlines", "created_at",
                                  "accepted_at", "checked_in_at")),
    (_completed_status, "completed_at", ("team_id", "type", "status")),
    (_completed_people, "completed_at", ("team_id", "technician_id", "on_site_seconds", "checked_in_at",
                                         "reopen_count", "backfilled", "overdue_deadlines", "assistant_ids")),
    (_completed_customer, "completed_at", ("customer_id",)),
    (_completed_items, "completed_at", ("items_used",)),
    (_closed, "closed_at", ("team_id", "type", "priority")),
    (_cancelled, "cancelled_at", ("team_id", "type", "priority")),
    (_overdue, "overdue_at", ("team_id", "type", "priority")),
    (_checked_in, "checked_in_at", ("team_id", "technician_id")),
    (_settled, "settled_at", ("team_id", "type", "technician_id", "fee_total", "cost_total", "gross_profit",
                              "customer_id", "settlement_kinds", "items_billed")),
    (_visited, "visited_at", ("team_id", "technician_id", "satisfaction", "visit_scores", "visit_tags",
                              "visit_by_customer")),
    (_open, "status", ("team_id", "overdue_at")),
]
_FACT_PARTS = [(part, FACT_FIELDS.index(when), [FACT_FIELDS.index(f) for f in (when, *fields)])
               for part, when, fields in FACT_PARTS]


def _parts_consumption(p, zone, out, sign):
    day = local_day(p.moved_at, zone)
    figures = ((0, sign * millis(p.quantity)), (1, sign * cents(p.value)), (2, sign * (1 if p.quantity > 0 else -1)),
               (3, sign))
    for dimension, value in (("part", p.part_id), ("warehouse", p.warehouse_id), ("technician", p.technician_id),
                             ("customer", p.customer_id)):
        out.add("parts", day, "", "", dimension, value, figures)


def changed(old, new, zone: ZoneInfo, out: "Deltas") -> None:
    """Take away what the parts a change touched contributed (old), add what they contribute now."""
    if isinstance(new, PartView) or isinstance(old, PartView):
        for view, sign in ((old, -1), (new, 1)):
            if view is not None and view.moved_at is not None:
                _parts_consumption(view, zone, out, sign)
        return
    for part, when, fields in _FACT_PARTS:
        if old is not None and new is not None and all(old[i] == new[i] for i in fields):
            continue
        if old is not None and old[when] is not None:
            part(old, zone, out, -1)
        if new is not None and new[when] is not None:
            part(new, zone, out, 1)


# -- differences and their upsert ------------------------------------------------------------------

class Deltas:
    """The differences a transaction makes to the rollups, per row key (both grains)."""

    def __init__(self):
        self.rows: dict[tuple, list[int]] = {}
        self.histograms: dict[tuple, dict[str, int]] = {}

    def add(self, rollup, day, team, type_, d1, d2, figures) -> None:
        """Add (measure index, value) pairs to a key, on the day and on its month."""
        rows = self.rows
        for key in ((rollup, "d", day, team, type_, d1, d2), (rollup, "m", _MONTHS.get(day) or _month(day), team,
                                                                 type_, d1, d2)):
            row = rows.get(key)
            if row is None:
                row = rows[key] = [0] * ROLLUP_MEASURES
            for index, value in figures:
                row[index] += value

    def add_now(self, rollup, team, type_, d1, d2, figures) -> None:
        key = (rollup, "n", NOW, team, type_, d1, d2)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * ROLLUP_MEASURES
        for index, value in figures:
            row[index] += value

    def histogram(self, day, team, type_, column: str, sign: int) -> None:
        for grain, period in (("d", day), ("m", _MONTHS.get(day) or _month(day))):
            row = self.histograms.setdefault((grain, period, team, type_), {})
            row[column] = row.get(column, 0) + sign

    def write(self, uow: UnitOfWork) -> None:
        """One sorted upsert per table (rows with no change left out). The "customers" rows are their
        own statement, in their place in the order: what it returns (each row's count of completed
        orders after the change) gives the "served" rows, which sort after them."""
        rows = [(*key, *values) for key, values in sorted(self.rows.items()) if any(values)]
        measures = [f"m{i}" for i in range(ROLLUP_MEASURES)]
        first = bisect.bisect_left(rows, ("customers",))
        end = bisect.bisect_left(rows, ("customers\0",))
        _upsert(uow, Rollup.__table__, rows[:first], measures)
        customers = rows[first:end]
        served = self._served(_upsert(uow, Rollup.__table__, customers, measures, returning=True), customers)
        _upsert(uow, Rollup.__table__, sorted(served + rows[end:]), measures)
        hist_rows = [(*key, {c: n for c, n in changes.items() if n})
                     for key, changes in sorted(self.histograms.items()) if any(changes.values())]
        _upsert(uow, TimingHistogram.__table__, hist_rows, HISTOGRAM_COLUMNS, sparse=True)
        self.rows.clear()
        self.histograms.clear()

    @staticmethod
    def _served(after: list[tuple], written: list[tuple]) -> list[tuple]:
        """The "served" rows from the "customers" rows' completed counts after the upsert (`after`: grain,
        period, customer, count) and the change this batch made to them: a count that went from 0 to
        more serves one more customer in that period, one that went back to 0 one fewer. The count
        returned is the row's after every earlier transaction that changed it (the upsert waited for
        them), so concurrent batches never count the same crossing twice."""
        change = {(grain, period, customer): completed  # "completed" is the customers rollup's m0
                  for _, grain, period, _, _, customer, _, completed, *_ in written}
        counts: dict[tuple, int] = {}
        for grain, period, customer, now in after:
            delta = change[(grain, period, customer)]
            if delta and (now > 0) != (now - delta > 0):
                key = (grain, period)
                counts[key] = counts.get(key, 0) + (1 if now > 0 else -1)
        return [("served", grain, period, "", "", "", "", n, *[0] * (ROLLUP_MEASURES - 1))
                for (grain, period), n in counts.items() if n]


HISTOGRAM_COLUMNS = [f"{m}{i}" for m in TIMING_MEASURES for i in range(HISTOGRAM_BUCKETS)]


RETURNED = ("grain", "period", "d1", "m0")  # what an upsert of rollup rows returns, asked to


def _upsert(uow: UnitOfWork, table: sa.Table, rows: list[tuple], measures: list[str], sparse: bool = False,
            returning: bool = False) -> list[tuple]:
    """Add rows to the table's rows with the same keys: INSERT … ON CONFLICT (key) DO UPDATE SET
    m = m + EXCLUDED.m, in the given (sorted) order. A row is its key columns after tenant_id, then
    its measures — or, `sparse`, one dict of the measures that are not zero. `returning`: the
    RETURNED columns of each row as written (in no particular order)."""
    if not rows:
        return []
    keys = [c.name for c in table.primary_key.columns]  # tenant_id first
    if uow.session.get_bind().dialect.name == "postgresql":
        return _upsert_postgres(uow, table, rows, keys, measures, sparse, returning)
    from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(index_elements=keys,
                                                set_={m: table.c[m] + statement.excluded[m] for m in measures})
    tenant = uow.ctx.tenant_id
    if sparse:
        rows = [(*row[:-1], *(row[-1].get(m, 0) for m in measures)) for row in rows]
    params = [dict(zip(keys + measures, (tenant, *row))) for row in rows]
    if not returning:
        uow.session.connection().execute(statement, params)
        return []
    result = uow.session.connection().execute(statement.returning(*[table.c[c] for c in RETURNED]), params)
    return [tuple(row) for row in result]


_CASTS = {sa.Date: "date", sa.BigInteger: "bigint", sa.Integer: "integer"}


def _upsert_postgres(uow, table, rows, keys, measures, sparse, returning) -> list[tuple]:
    """The rows travel as one JSON parameter that PostgreSQL unpacks (jsonb_array_elements): a batch
    writes thousands of rollup rows, and binding each value separately costs more than the write.
    jsonb, not json: json re-parses an element's text on every ->> (21 per row), jsonb indexes it."""
    key_columns = [table.c[k] for k in keys[1:]]
    values = [f"(r.v->>{i})::{_CASTS.get(type(c.type), 'text')}" for i, c in enumerate(key_columns)]
    n = len(key_columns)
    updated = measures
    if sparse:
        # only the columns some row of the batch changes are read and updated (a batch's completions
        # touch a few dozen of the 192 buckets); the others are inserted as 0 (no server default)
        touched = set().union(*(row[-1] for row in rows))
        updated = [m for m in measures if m in touched]
        values += [f"coalesce((r.v->{n}->>'{m}')::integer, 0)" if m in touched else "0" for m in measures]
    else:
        values += [f"(r.v->>{n + i})::{_CASTS[type(table.c[m].type)]}" for i, m in enumerate(measures)]
    sql = (f"INSERT INTO {table.name} ({', '.join(keys + measures)}) "
           f"SELECT %s::uuid, {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS r(v, i) "
           f"ORDER BY r.i ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
           + ", ".join(f"{m} = {table.name}.{m} + EXCLUDED.{m}" for m in updated))
    if returning:
        sql += f" RETURNING {', '.join(RETURNED)}"
    payload = jsonb_param(rows)
    with uow.session.connection().connection.cursor() as cursor:
        cursor.execute(sql, (str(uow.ctx.tenant_id), payload))
        return [tuple(row) for row in cursor.fetchall()] if returning else []


def jsonb_param(value) -> str:
    """`value` (lists, dicts, strings, integers, dates) as JSON text for a jsonb parameter: by orjson
    (the batch's rows are thousands: the standard json module took a tenth of the consumer's CPU),
    without the NUL character (\\u0000), which JSON allows and jsonb refuses (never meaningful in a
    name or a label)."""
    payload = orjson.dumps(value).decode()
    return payload.replace("\\u0000", "") if "\\u0000" in payload else payload


# -- keeping them ----------------------------------------------------------------------------------

def remember(uow: UnitOfWork, row) -> None:
    """Note what a row contributes before this transaction changes it (None: a new row)."""
    uow.session.info.setdefault("rollup_before", {})[id(row)] = (row, snapshot(row))


def remember_new(uow: UnitOfWork, row) -> None:
    uow.session.info.setdefault("rollup_before", {})[id(row)] = (row, None)


def write(uow: UnitOfWork, zone: ZoneInfo) -> None:
    """The difference the changed rows make, into the rollups (end of a batch or page)."""
    before = uow.session.info.pop("rollup_before", None)
    if not before:
        return
    deltas = Deltas()
    for row, old in before.values():
        new = snapshot(row)
        if new != old:
            changed(old, new, zone, deltas)
    deltas.write(uow)


def forget(uow: UnitOfWork) -> None:
    uow.session.info.pop("rollup_before", None)


def delete_all(uow: UnitOfWork) -> None:
    for model in (Rollup, TimingHistogram):
        uow.session.execute(sa.delete(model).where(model.tenant_id == uow.ctx.tenant_id))


# -- reading them ----------------------------------------------------------------------------------

class Tiling:
    """A window of local days as whole months (month rows) and the days at its edges (day rows)."""

    def __init__(self, date_from: dt.date, date_to: dt.date, by_day: bool):
        self.date_from, self.date_to = date_from, date_to
        first = date_from if date_from.day == 1 else _next_month(date_from)
        last = _next_month(date_to) - dt.timedelta(days=1)
        if date_to != last:
            last = month_of(date_to) - dt.timedelta(days=1)
        if by_day or first > last:  # no whole month inside: days only
            self.months = None
        else:
            self.months = (first, month_of(last))

    def where(self, model):
        if self.months is None:
            return sa.and_(model.grain == "d", model.period.between(self.date_from, self.date_to))
        # each part one range of the key (…, grain, period, …): the edges as their own day ranges, not
        # every day row of the window filtered (a year would read 365 days of rows for none)
        first, last_month = self.months
        last = _next_month(last_month) - dt.timedelta(days=1)
        parts = [sa.and_(model.grain == "m", model.period.between(first, last_month))]
        if self.date_from < first:
            parts.append(sa.and_(model.grain == "d",
                                 model.period.between(self.date_from, first - dt.timedelta(days=1))))
        if self.date_to > last:
            parts.append(sa.and_(model.grain == "d", model.period.between(last + dt.timedelta(days=1), self.date_to)))
        return sa.or_(*parts) if len(parts) > 1 else parts[0]


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def period_expr(uow: UnitOfWork, column, group_by: str):
    """The period (day, Monday of the week, first of the month) of a local date column, in SQL."""
    if group_by == "day":
        return column
    postgres = uow.session.get_bind().dialect.name == "postgresql"
    if group_by == "month":
        expr = sa.func.date_trunc("month", column) if postgres else sa.func.date(column, "start of month")
    else:
        expr = sa.func.date_trunc("week", column) if postgres else sa.func.date(
            column, sa.literal("-") + sa.cast((sa.cast(sa.func.strftime("%w", column), sa.Integer) + 6) % 7,
                                              sa.String) + sa.literal(" days"))
    return sa.cast(expr, sa.Date) if postgres else sa.type_coerce(expr, sa.Date)


def measure(rollup: str, name: str):
    return getattr(Rollup, f"m{INDEX[rollup][name]}")


def total(column):
    """SUM of an integer column as an integer (PostgreSQL's SUM(bigint) is numeric: a Decimal per cell)."""
    return sa.cast(sa.func.sum(column), sa.BigInteger)


def sums(rollup: str, *names: str):
    return [total(measure(rollup, n)).label(n) for n in names]


def of_company(uow: UnitOfWork, model):
    """The company criterion, written out: the rollups are read as Core, not through the ORM (whose
    row loading, which adds the criterion by itself, costs more than the query on the thousands of
    rollup rows a report reads)."""
    return model.tenant_id == uow.ctx.tenant_id


def select(uow: UnitOfWork, rollup: str, tiling: Tiling, group: list, names, filters: dict | None = None,
           period: str | None = None):
    """SUM of the named measures of one rollup over a tiling, grouped by `group` columns (and the
    period of `period` grouping, labelled `period`), with equality filters on key columns."""
    return uow.session.connection().execute(statement(uow, rollup, tiling, group, names, filters, period)).all()


def statement(uow: UnitOfWork, rollup: str, tiling: Tiling, group: list, names, filters: dict | None = None,
              period: str | None = None):
    """The statement of `select`."""
    columns = list(group)
    if period:
        columns = [period_expr(uow, Rollup.period, period).label("period")] + columns
    stmt = sa.select(*columns, *sums(rollup, *names)).where(of_company(uow, Rollup), Rollup.rollup == rollup,
                                                            tiling.where(Rollup))
    for column, value in (filters or {}).items():
        stmt = stmt.where(getattr(Rollup, column) == value)
    if columns:
        stmt = stmt.group_by(*columns)
    return stmt


def histograms(uow: UnitOfWork, tiling: Tiling, filters: dict, period: str | None) -> dict:
    """Bucket counts per timing measure, per period (None: the whole window)."""
    H = TimingHistogram
    names = [f"{m}{i}" for m in TIMING_MEASURES for i in range(HISTOGRAM_BUCKETS)]
    columns = [total(getattr(H, n)) for n in names]
    group = [period_expr(uow, H.period, period)] if period else []
    stmt = sa.select(*group, *columns).where(of_company(uow, H), tiling.where(H))
    for column, value in filters.items():
        stmt = stmt.where(getattr(H, column) == value)
    if group:
        stmt = stmt.group_by(*group)
    out = {}
    for row in uow.session.connection().execute(stmt):
        key = row[0] if period else None
        values = [int(v or 0) for v in (row[1:] if period else row)]
        out[key] = {m: values[i * HISTOGRAM_BUCKETS:(i + 1) * HISTOGRAM_BUCKETS] for i, m in enumerate(TIMING_MEASURES)}
    return out
