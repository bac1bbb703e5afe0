"""The reports read from the rollups (reports.rollups): the same answers as the row-by-row queries of
reports.queries, in a few grouped SQL sums over at most 366 day rows (or 12 month rows) per group
instead of every work order of the period. queries.use_rollups decides which one a query takes;
the tests run every report both ways and compare.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa

from svc_common.uow import UnitOfWork

from . import domain, rollups
from .models import CustomerFact, PersonFact, Rollup, TeamFact
from .queries import (
    TIMES,
    Window,
    W,
    _minutes,
    _names,
    performance_ranking,
    _person_figures,
    _person_metrics,
    dashboard as facts_dashboard,
    satisfaction_result,
)
from .rollups import Tiling, from_cents, from_millis, select

R = Rollup


def _tilings(win: Window) -> tuple[Tiling, Tiling]:
    """(rows: by the query's grouping, totals: whole months where possible)."""
    q = win.q
    return (Tiling(q.date_from, q.date_to, by_day=q.group_by != "month"),
            Tiling(q.date_from, q.date_to, by_day=False))


def _filters(win: Window, *supported: str) -> dict:
    q, out = win.q, {}
    if "team_id" in supported and q.team_id is not None:
        out["team"] = str(q.team_id)
    if "type" in supported and q.type is not None:
        out["type"] = q.type
    return out


def _none(value: str) -> str | None:
    return value or None


# -- 工单报表 ---------------------------------------------------------------------------------

ORDER_COUNTS = ("created", "completed", "closed", "cancelled", "overdue")
ORDER_TIMES = ("timed", "on_time", "resp_n", "resp_ms", "arr_n", "arr_ms", "done_n", "done_ms")


def _timing(row, p90s: dict | None) -> dict:
    out = {}
    for (name, _), (n, total), measure in zip(TIMES, (("resp_n", "resp_ms"), ("arr_n", "arr_ms"),
                                                       ("done_n", "done_ms")), rollups.TIMING_MEASURES):
        count = int(getattr(row, n) or 0) if row is not None else 0
        average = round(int(getattr(row, total)) / 1000 / count, 1) if count else None
        out[f"avg_{name}_minutes"] = _minutes(average)
        out[f"p90_{name}_minutes"] = (p90s or {}).get(measure)
    timed = int(row.timed or 0) if row is not None else 0
    out["sla_compliance"] = domain.rate(int(row.on_time or 0) if row is not None else 0, timed)
    return out


def _exact_p90s(uow: UnitOfWork, win: Window) -> tuple[dict, dict]:
    """p90 per period and over the window from the rows themselves (few completed orders)."""
    columns = (W.created_at, W.accepted_at, W.checked_in_at, W.completed_at)
    stmt = sa.select(*columns).where(W.completed_at >= win.start, W.completed_at < win.end,
                                     W.backfilled.is_not(True))
    for name, column in (("team_id", W.team_id), ("type", W.type)):
        if getattr(win.q, name) is not None:
            stmt = stmt.where(column == getattr(win.q, name))
    per_period, everything = defaultdict(lambda: defaultdict(list)), defaultdict(list)
    for o in uow.session.execute(stmt):
        period = win.bucket(o.completed_at)
        for (_, column), measure in zip(TIMES, rollups.TIMING_MEASURES):
            seconds = domain.seconds_between(o.created_at, getattr(o, column))
            if seconds is not None:
                per_period[period][measure].append(seconds)
                everything[measure].append(seconds)

    def p90s(values):
        return {m: _minutes(domain.p90(v)) for m, v in values.items()}
    return {p: p90s(v) for p, v in per_period.items()}, p90s(everything)


def _bucket_p90s(uow: UnitOfWork, rows: Tiling, whole: Tiling, filters: dict, group_by: str) -> tuple[dict, dict]:
    def p90s(counts):
        return {m: rollups.p90_from_buckets(c) for m, c in counts.items()}
    per_period = {p: p90s(c) for p, c in rollups.histograms(uow, rows, filters, group_by).items()}
    total = rollups.histograms(uow, whole, filters, None)
    return per_period, p90s(total.get(None, {}))


def work_orders(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    f, q = _filters(win, "team_id", "type"), win.q
    names = ORDER_COUNTS + ORDER_TIMES
    per = {r.period: r for r in select(uow, "orders", rows_t, [], names, f, period=q.group_by)}
    [total] = select(uow, "orders", whole, [], names, f)
    if int(total.timed or 0) <= rollups.EXACT_TIMING_LIMIT:
        p90_per, p90_total = _exact_p90s(uow, win)
    else:
        p90_per, p90_total = _bucket_p90s(uow, rows_t, whole, f, q.group_by)
    rows = [{"period": p, **{n: int(getattr(per.get(p), n, 0) or 0) for n in ORDER_COUNTS},
             **_timing(per.get(p), p90_per.get(p))} for p in win.periods()]
    totals = {n: sum(r[n] for r in rows) for n in ORDER_COUNTS}
    totals.update(_timing(total, p90_total))
    sections = {}
    for label, key, rollup, column in (("by_status", "status", "status", R.d1), ("by_type", "type", "orders", R.type),
                                       ("by_priority", "priority", "orders", R.d1)):
        groups = select(uow, rollup, whole, [column.label("key")], ("created", "completed"), f)
        merged = defaultdict(lambda: [0, 0])
        for g in groups:
            merged[g.key or "-"][0] += int(g.created or 0)
            merged[g.key or "-"][1] += int(g.completed or 0)
        sections[label] = [{key: k, "created": v[0], "completed": v[1]} for k, v in sorted(merged.items()) if any(v)]
    return {"rows": rows, "totals": totals, "sections": sections}


# -- 人员报表 / 绩效 / 满意度 ------------------------------------------------------------------

PEOPLE = ("completed", "assists", "on_site_s", "first_fix", "timed", "on_time", "revenue_c", "settled", "sat_sum",
          "visits", "rated", "by_customer", "checked_in")


# the person metrics' names of the PEOPLE measures (revenue_c and checked_in aside)
_METRIC_OF = (("completed", "completed"), ("assists", "assists"), ("on_site_seconds", "on_site_s"),
              ("first_time_fixed", "first_fix"), ("timed", "timed"), ("on_time", "on_time"),
              ("settled", "settled"), ("satisfaction_sum", "sat_sum"), ("visits", "visits"), ("rated", "rated"),
              ("by_customer", "by_customer"))


def _metrics(row, ratings: list | None = None) -> dict:
    """A person's (or team's) metrics from a row of PEOPLE sums (and its ratings rows); thousands of
    rows per report: plain dict work only."""
    return _metrics_of(row._mapping, ratings)


def _metrics_of(values, ratings: list | None = None) -> dict:
    """`_metrics` from a mapping of the PEOPLE measures."""
    m = _person_metrics()
    for metric, measure_ in _METRIC_OF:
        m[metric] = values[measure_] or 0
    m["revenue"] = from_cents(values["revenue_c"])
    if ratings:
        sums_, counts, tags = m["score_sums"], m["score_counts"], m["tags"]
        for name, total, n in ratings:
            if not n:
                continue
            if name[0] == "s":
                label = name[2:]
                sums_[label] += total
                counts[label] += n
            else:
                tags[name[2:]] += n
    return m


def _present(m: dict, assists: bool = True) -> bool:
    """Whether a key has anything the row-by-row report would have counted for it."""
    return bool(m["completed"] or (assists and m["assists"]) or m["settled"] or m["visits"] or m["rated"])


def _ratings_by(uow, tiling, group, f, period=None) -> dict:
    """(period?, *group) → [(d2 "s:dimension" | "t:tag", sum, n)]. On PostgreSQL one row per key with
    its ratings as three arrays (a month by day is tens of thousands of (key, label) rows: building a
    result row for each cost more than the query)."""
    out = defaultdict(list)
    width = len(group) + (1 if period else 0)
    stmt = rollups.statement(uow, "ratings", tiling, [*group, R.d2], ("sum", "n"), f, period=period)
    if uow.session.get_bind().dialect.name == "postgresql":
        inner = stmt.subquery()
        keys = [inner.c[c.name] for c in stmt.selected_columns][:width]
        # (untyped: psycopg2 gives lists already; SQLAlchemy's ARRAY would copy them element by element)
        aggs = [sa.type_coerce(sa.func.array_agg(inner.c[c]), sa.types.NullType()) for c in ("d2", "sum", "n")]
        for r in uow.session.connection().execute(sa.select(*keys, *aggs).group_by(*keys)):
            out[tuple(r[:width])] = list(zip(*r[width:]))
        return out
    for r in uow.session.connection().execute(stmt):
        r = tuple(r)
        out[r[:width]].append(r[width:])
    return out


def _whole_months(rows_t: Tiling, whole: Tiling) -> bool:
    """Whether the rows' tiling (grouped by month) is the whole window's: the same month rows, so
    the window's figures are the rows' added up, not the rows read again."""
    return rows_t.months is not None and rows_t.months == whole.months and rows_t.date_from == whole.date_from \
        and rows_t.date_to == whole.date_to


def _by_key(uow, rows_t: Tiling, whole: Tiling, group, f, period: str) -> tuple[dict, dict]:
    """PEOPLE metrics (with their ratings) per (period, key) over the rows' tiling and per key over the
    whole window. Grouped by month both tilings are the same month rows: the whole window is then the
    per-period metrics merged (exact: integer sums), not the same rows read again."""
    column = group.key
    ratings = _ratings_by(uow, rows_t, [group], f, period)
    per = {(r.period, getattr(r, column)): _metrics(r, ratings.get((r.period, getattr(r, column))))
           for r in select(uow, "people", rows_t, [group], PEOPLE, f, period=period)}
    if _whole_months(rows_t, whole):
        from .queries import _merge
        grouped = defaultdict(list)
        for (_, key), m in per.items():
            grouped[key].append(m)
        return per, {key: _merge(ms) for key, ms in grouped.items()}
    ratings_all = _ratings_by(uow, whole, [group], f)
    return per, {getattr(r, column): _metrics(r, ratings_all.get((getattr(r, column),)))
                 for r in select(uow, "people", whole, [group], PEOPLE, f)}


class LazyRows(Sequence):
    """A report's rows built when read: a page (a slice) builds only its own rows. A month of
    personnel by day is thousands of rows, a page shows 100; exports iterate and build them all
    (once: the built rows are kept). `prepare(items)`, if given, runs before items are built (to
    read what only those rows need)."""
    __hash__ = None

    def __init__(self, items: list, build, prepare=None):
        self._items, self._build, self._prepare, self._all = items, build, prepare, None

    def __len__(self) -> int:
        return len(self._items)

    def _built(self, items: list) -> list:
        if self._prepare is not None and items:
            self._prepare(items)
        return [self._build(item) for item in items]

    def __getitem__(self, i):
        if self._all is not None:
            return self._all[i]
        if isinstance(i, slice):
            return self._built(self._items[i])
        return self._built([self._items[i]])[0]

    def __iter__(self):
        if self._all is None:
            self._all = self._built(self._items)
        return iter(self._all)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


def personnel(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    f, q = _filters(win, "team_id"), win.q
    names = _names(uow, PersonFact, PersonFact.user_id)
    grouped = select(uow, "people", rows_t, [R.d1], PEOPLE, f, period=q.group_by)
    by_month = _whole_months(rows_t, whole)
    # by day or week the rows' ratings (a key per day, technician and label: tens of thousands over a
    # month) are read for the periods a page shows, when it is built
    ratings = _ratings_by(uow, rows_t, [R.d1], f, q.group_by) if by_month else {}
    periods_read: set = set()

    def read_ratings(items) -> None:
        periods = {p for p, _, _ in items} - periods_read
        if not periods:
            return
        periods_read.update(periods)
        first, last = min(periods), max(periods)
        last_day = {"day": last, "week": last + dt.timedelta(days=6),
                    "month": rollups._next_month(last) - dt.timedelta(days=1)}[q.group_by]
        span = Tiling(max(first, q.date_from), min(last_day, q.date_to), by_day=True)
        ratings.update(_ratings_by(uow, span, [R.d1], f, q.group_by))
    kept = [(r.period, r.d1, r) for r in grouped if r.d1 and _present(r._mapping)]  # (same names as the metrics)
    # by period, then name and id: each technician's place computed once, not per row
    place = {t: i for i, t in enumerate(sorted({k[1] for k in kept}, key=lambda t: (names.get(t) or "", t)))}
    kept.sort(key=lambda k: (k[0], place[k[1]]))

    def build(item) -> dict:
        p, t, r = item
        return {"period": p, "technician_id": t, "technician_name": names.get(t),
                **_person_figures(_metrics(r, ratings.get((p, t))))}
    rows = LazyRows(kept, build, None if by_month else read_ratings)
    if by_month:
        # grouped by month the rows' tiling is the whole window's: each technician's sums are its
        # rows' (integers: exact), not the same rollup rows read again
        sums, merged = defaultdict(lambda: dict.fromkeys(PEOPLE, 0)), defaultdict(list)
        for r in grouped:
            acc = sums[r.d1]
            for name, value in r._mapping.items():
                if name in acc and value:
                    acc[name] += value
            merged[r.d1].extend(ratings.get((r.period, r.d1), ()))
        people_all = {t: _metrics_of(v, merged[t]) for t, v in sums.items()}
    else:
        ratings_all = _ratings_by(uow, whole, [R.d1], f)
        people_all = {r.d1: _metrics(r, ratings_all.get((r.d1,))) for r in select(uow, "people", whole, [R.d1], PEOPLE, f)}
    people = {t: m for t, m in people_all.items() if t and _present(m)}
    from .queries import _merge
    technicians = [{"technician_id": t, "technician_name": names.get(t), **_person_figures(m)}
                   for t, m in sorted(people.items(), key=lambda kv: (-kv[1]["completed"], names.get(kv[0]) or "",
                                                                      kv[0]))]
    return {"rows": rows, "totals": _person_figures(_merge(list(people.values()))),
            "sections": {"technicians": technicians}}


def performance(uow: UnitOfWork, win: Window, weights: dict) -> dict:
    _, whole = _tilings(win)
    f = _filters(win, "team_id")
    people_names, teams = _names(uow, PersonFact, PersonFact.user_id), _names(uow, TeamFact, TeamFact.team_id)
    by_tech, by_team = {}, {}
    for r in select(uow, "people", whole, [R.d1], PEOPLE, f):
        m = _metrics(r)
        if r.d1 and _present(m):
            by_tech[r.d1] = m
    by_team = _team_metrics(uow, whole, f)
    return performance_ranking(by_tech, by_team, weights, people_names, teams)


def _team_metrics(uow: UnitOfWork, whole: Tiling, f: dict) -> dict:
    """Per team: what its orders did (assists are a person's, not a team's)."""
    out = {}
    for r in select(uow, "people", whole, [R.team], PEOPLE, f):
        m = _metrics(r)
        m["assists"] = 0
        if r.team and _present(m, assists=False):
            out[r.team] = m
    return out


def satisfaction(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    f, q = _filters(win, "team_id"), win.q
    teams = _names(uow, TeamFact, TeamFact.team_id)
    per_all, teams_all = _by_key(uow, rows_t, whole, R.team, f, q.group_by)
    per_period = {(p, _none(t)): m for (p, t), m in per_all.items() if m["visits"] or m["rated"]}
    per_team = {_none(t): m for t, m in teams_all.items() if m["visits"] or m["rated"]}
    return satisfaction_result(per_period, per_team, teams)


# -- 营收报表 ---------------------------------------------------------------------------------

def _money_figures(orders, fee, cost, profit) -> dict:
    fee, cost, profit = from_cents(fee), from_cents(cost), from_cents(profit)
    margin = (profit / fee).quantize(Decimal("0.0001")) if fee else None
    return {"orders": int(orders or 0), "fee_total": domain.money(fee), "cost_total": domain.money(cost),
            "gross_profit": domain.money(profit), "gross_margin": margin}


def revenue(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    f, q = _filters(win, "team_id", "type"), win.q
    teams = _names(uow, TeamFact, TeamFact.team_id)
    measures = ("orders", "fee_c", "cost_c", "profit_c")
    groups = [r for r in select(uow, "revenue", rows_t, [R.team], measures, f, period=q.group_by) if r.orders]
    rows = [{"period": r.period, "team_id": _none(r.team), "team_name": teams.get(r.team),
             **_money_figures(r.orders, r.fee_c, r.cost_c, r.profit_c)}
            for r in sorted(groups, key=lambda r: (r.period, r.team))]
    [t] = select(uow, "revenue", whole, [], measures, f)
    kinds = [{"side": k.d1, "kind": k.d2, "amount": domain.money(from_cents(k.amount_c))}
             for k in sorted(select(uow, "kinds", whole, [R.d1, R.d2], ("amount_c", "lines"), f),
                             key=lambda k: (k.d1, k.d2)) if k.lines]
    return {"rows": rows, "totals": _money_figures(t.orders, t.fee_c, t.cost_c, t.profit_c),
            "sections": {"by_kind": kinds}}


# -- 客户报表 ---------------------------------------------------------------------------------

def customers(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    q = win.q
    new = defaultdict(int)
    for created in uow.session.scalars(sa.select(CustomerFact.created_at).where(
            CustomerFact.created_at >= win.start, CustomerFact.created_at < win.end)):
        new[win.bucket(created)] += 1
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(CustomerFact).where(
        sa.or_(CustomerFact.created_at.is_(None), CustomerFact.created_at < win.end))) or 0
    served = _served(uow, win, rows_t)
    # the per-customer sums of the window (whole months where it can: a month is one row per customer)
    # stay in PostgreSQL: what comes back is the served total and the two top lists (thousands of
    # customers ranked in Python cost ~50 ms)
    per_customer = sa.select(R.d1, *rollups.sums("customers", "completed", "revenue_c", "revenued")).where(
        rollups.of_company(uow, R), R.rollup == "customers", whole.where(R)).group_by(R.d1).cte("per_customer")
    pc = per_customer.c
    # ties in the order Python sorts strings, as the row-by-row report does (not the database's collation)
    customer = pc.d1.collate("C") if uow.session.get_bind().dialect.name == "postgresql" else pc.d1

    def answer(kind: str, d1, value, where, ranked_by=None):
        stmt = sa.select(sa.literal(kind).label("kind"), d1.label("d1"), value.label("value")).where(where)
        if ranked_by is None:
            return stmt
        return sa.select(stmt.order_by(ranked_by.desc(), customer).limit(q.top).subquery())
    no_customer = sa.cast(sa.null(), sa.String)  # (typed: a UNION's types)
    parts = [answer("total", no_customer, sa.func.count(), pc.completed > 0),
             answer("orders", pc.d1, pc.completed, pc.completed > 0, ranked_by=pc.completed),
             answer("revenue", pc.d1, pc.revenue_c, pc.revenued > 0, ranked_by=pc.revenue_c)]
    served_total, top = 0, {"orders": [], "revenue": []}
    for kind, d1, value in uow.session.connection().execute(sa.union_all(*parts)):
        if kind == "total":
            served_total = value
        else:
            top[kind].append((d1, value))
    by_orders, by_revenue = (sorted(top[k], key=lambda kv: (-kv[1], kv[0])) for k in ("orders", "revenue"))
    ids = {c for c, _ in by_orders} | {c for c, _ in by_revenue}
    names = _customer_names(uow, ids)
    rows = [{"period": p, "new": new[p], "served": int(served.get(p, 0))} for p in win.periods()]
    return {"rows": rows,
            "totals": {"total": total, "new": sum(new.values()), "served": int(served_total)},
            "sections": {
                "top_by_orders": [{"customer_id": c, "customer_name": names.get(c), "orders": int(v)}
                                  for c, v in by_orders],
                "top_by_revenue": [{"customer_id": c, "customer_name": names.get(c),
                                    "revenue": domain.money(from_cents(v))} for c, v in by_revenue]}}


def _served(uow: UnitOfWork, win: Window, rows_t: Tiling) -> dict:
    """Customers served (an order completed) per period. Per day and per whole month the count is
    kept ("served" rollup: one row a period); a week or a month cut by the window is counted from
    the (period, customer) sums of its day rows."""
    q = win.q
    if q.group_by == "day" or (q.group_by == "month" and rows_t.months is not None and not _edge_days(rows_t)):
        return {r.period: r.customers for r in select(uow, "served", rows_t, [], ("customers",), period=q.group_by)}
    period = rollups.period_expr(uow, R.period, q.group_by).label("period")
    per = sa.select(period).where(rollups.of_company(uow, R), R.rollup == "customers", rows_t.where(R)).group_by(
        period, R.d1).having(rollups.total(rollups.measure("customers", "completed")) > 0).subquery()
    return dict(uow.session.connection().execute(sa.select(per.c.period, sa.func.count()).group_by(per.c.period)).all())


def _edge_days(tiling: Tiling) -> bool:
    """Whether a tiling of whole months also reads day rows at its edges."""
    first, last_month = tiling.months
    return tiling.date_from < first or tiling.date_to > rollups._next_month(last_month) - dt.timedelta(days=1)


def _customer_names(uow: UnitOfWork, ids: set) -> dict:
    import uuid
    if not ids:
        return {}
    keys = [uuid.UUID(c) for c in ids]
    names = {str(k): n for k, n in uow.session.execute(
        sa.select(CustomerFact.customer_id, CustomerFact.name).where(CustomerFact.customer_id.in_(keys)))}
    missing = [k for k in keys if str(k) not in names]
    if missing:  # not (yet) known from customers' own events: the name the work orders carry
        for customer, name in uow.session.execute(
                sa.select(W.customer_id, sa.func.max(W.customer_name)).where(W.customer_id.in_(missing))
                .group_by(W.customer_id)):
            names[str(customer)] = name
    return names


# -- 备件报表 ---------------------------------------------------------------------------------

PARTS = ("qty_m", "value_c", "entries", "moves")


def _part_figures(qty_m, value_c, entries) -> dict:
    return {"quantity": from_millis(qty_m), "value": domain.money(from_cents(value_c)), "entries": int(entries)}


def spare_parts(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    q = win.q
    # (a part and period per row: thousands; a page builds its own, see LazyRows; plain tuples, see below)
    rows = LazyRows(sorted(tuple(r) for r in select(uow, "parts", rows_t, [R.d2], PARTS, {"d1": "part"},
                                                    period=q.group_by) if r.moves),
                    lambda r: {"period": r[0], "part_id": r[1], **_part_figures(*r[2:5])})
    people, customers_ = _names(uow, PersonFact, PersonFact.user_id), _names(uow, CustomerFact, CustomerFact.customer_id)
    label = {"by_warehouse": ("warehouse", "warehouse_id", {}), "by_technician": ("technician", "technician_id", people),
             "by_customer": ("customer", "customer_id", customers_)}
    # the window's rows of every dimension in one scan (they share the key's period ranges): the
    # sections, and the totals as the sum of the by-part sums (integers: exact)
    # (plain tuples: a year has thousands of customers, and a Row's attributes cost more than the query)
    by_dimension = defaultdict(list)
    for d1, d2, qty_m, value_c, entries, moves in select(uow, "parts", whole, [R.d1, R.d2], PARTS):
        by_dimension[d1].append((-value_c, d2, qty_m, value_c, entries, moves))  # sorts by value, then key
    sections = {}
    for name, (dimension, key, names) in label.items():
        sections[name] = [{key: _none(d2), **({"name": names.get(_none(d2))} if names else {}),
                           **_part_figures(qty_m, value_c, entries)}
                          for _, d2, qty_m, value_c, entries, moves in sorted(by_dimension[dimension]) if moves]
    qty_m, value_c, entries, moves = (sum(r[i] for r in by_dimension["part"]) for i in range(2, 6))
    return {"rows": rows, "totals": _part_figures(qty_m, value_c, entries) if moves else {
                "quantity": Decimal(0), "value": domain.money(0), "entries": 0},
            "sections": sections}


# -- 服务项目报表 -----------------------------------------------------------------------------

ITEMS = ("qty_m", "orders", "billed_qty_m", "revenue_c", "entries")


def _item_figures(quantity, orders, billed, revenue_c) -> dict:
    return {"quantity": from_millis(quantity), "orders": int(orders or 0), "billed_quantity": from_millis(billed),
            "revenue": domain.money(from_cents(revenue_c))}


def service_items(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    q = win.q
    rows = [{"period": r.period, "service_item_id": _none(r.d1),
             **_item_figures(r.qty_m, r.orders, r.billed_qty_m, r.revenue_c)}
            for r in sorted(select(uow, "items", rows_t, [R.d1], ITEMS, period=q.group_by),
                            key=lambda r: (r.period, r.d1)) if r.entries]
    items = [r for r in select(uow, "items", whole, [R.d1], ITEMS) if r.entries]
    items.sort(key=lambda r: (-from_cents(r.revenue_c), r.d1))
    by_item = [{"service_item_id": _none(r.d1), **_item_figures(r.qty_m, r.orders, r.billed_qty_m, r.revenue_c)}
               for r in items]
    [orders] = select(uow, "items_all", whole, [], ("orders",))
    totals = _item_figures(sum(int(r.qty_m) for r in items), orders.orders, sum(int(r.billed_qty_m) for r in items),
                           sum(int(r.revenue_c) for r in items))
    return {"rows": rows, "totals": totals, "sections": {"by_item": by_item}}


# -- 业务计划 ---------------------------------------------------------------------------------

PLANS = ("planned", "done", "cancelled", "open")


def business_plan(uow: UnitOfWork, win: Window) -> dict:
    rows_t, whole = _tilings(win)
    f, q = _filters(win, "type"), win.q

    def counts(r) -> dict:
        return {n: int(getattr(r, n) or 0) for n in PLANS}

    def figures(g: dict) -> dict:
        return {**g, "done_rate": domain.rate(g["done"], g["planned"])}
    groups = defaultdict(lambda: dict.fromkeys(PLANS, 0))
    for r in select(uow, "plans", rows_t, [R.type], PLANS, f, period=q.group_by):
        for n, v in counts(r).items():
            groups[(r.period, r.type or "-")][n] += v
    rows = [{"period": p, "type": t, **figures(g)} for (p, t), g in sorted(groups.items()) if g["planned"]]
    plans = [r for r in select(uow, "plans", whole, [R.d1], PLANS, f) if r.planned]
    [t] = select(uow, "plans", whole, [], PLANS, f)
    return {"rows": rows, "totals": figures(counts(t)),
            "sections": {"by_plan": [{"plan_id": r.d1, **figures(counts(r))} for r in sorted(plans, key=lambda r: r.d1)]}}


# -- 首页 (dashboard) ------------------------------------------------------------------------

def open_orders(uow: UnitOfWork, team_id=None) -> dict:
    """The orders open right now by status, and how many of them are overdue (the "open" rollup)."""
    n, overdue = rollups.measure("open", "n"), rollups.measure("open", "overdue")
    stmt = sa.select(R.d1, sa.func.sum(n), sa.func.sum(overdue)).where(R.rollup == "open", R.grain == "n")
    if team_id:
        stmt = stmt.where(R.team == str(team_id))
    counts = {status: (int(k or 0), int(o or 0)) for status, k, o in uow.session.execute(stmt.group_by(R.d1))}
    return {"open_by_status": {s: counts.get(s, (0, 0))[0] for s in domain.OPEN_STATUSES},
            "open_overdue": sum(o for _, o in counts.values())}


def dashboard(uow: UnitOfWork, zone_name: str, team_id=None, now: dt.datetime | None = None,
              periods: bool = True) -> dict:
    """首页 from the rollups: today and this month (`periods`; their zone must be the rollups'), the
    open orders now; pending service requests (few) from the rows."""
    out = facts_dashboard(uow, zone_name, team_id, None, now=now, periods=False, open_orders=False)
    out.update(open_orders(uow, team_id))
    today = out["date"]
    f = {"team": str(team_id)} if team_id else {}
    for label, first in (("today", today), ("this_month", today.replace(day=1))) if periods else ():
        tiling = Tiling(first, today, by_day=False)
        [orders] = select(uow, "orders", tiling, [], ("created", "completed"), f)
        [money] = select(uow, "revenue", tiling, [], ("orders", "fee_c", "profit0_c"), f)
        completed, checked_in = rollups.measure("people", "completed"), rollups.measure("people", "checked_in")
        active = sa.select(R.d1).where(R.rollup == "people", tiling.where(R), R.d1 != "",
                                       *[getattr(R, k) == v for k, v in f.items()]).group_by(R.d1).having(
            sa.or_(sa.func.sum(completed) > 0, sa.func.sum(checked_in) > 0))
        out[label] = {
            "created": int(orders.created or 0), "completed": int(orders.completed or 0),
            "settled": int(money.orders or 0), "revenue": domain.money(from_cents(money.fee_c)),
            "gross_profit": domain.money(from_cents(money.profit0_c)),
            "active_technicians": uow.session.scalar(sa.select(sa.func.count()).select_from(active.subquery())) or 0,
        }
    return out
