"""The reports of 运营分析 over the read models.

Each report takes a ReportQuery (period, filters, grouping) and returns
`{"columns", "rows", "totals", "sections"}` with plain Python values (Decimal money, dates):
the service pages and serializes them, the exports write them as they are.
Rows are aggregated here rather than in SQL because days are the tenant's local days (any IANA
zone), which SQL would compute differently on PostgreSQL and SQLite; the SQL side only selects the
columns needed for the bounded period, through indexes on (tenant_id, time).
"""
import datetime as dt
from collections import defaultdict
from decimal import Decimal

import sqlalchemy as sa

from svc_common.uow import UnitOfWork

from . import domain
from .models import (
    CustomerFact,
    PartConsumption,
    PersonFact,
    ServiceRequestFact,
    TeamFact,
    WorkOrderFact,
)
from .schemas import ReportQuery

W = WorkOrderFact
FACT_COLUMNS = (W.ticket_id, W.number, W.type, W.priority, W.team_id, W.technician_id, W.assistant_ids,
                W.customer_id, W.customer_name, W.plan_id, W.status, W.created_at, W.accepted_at,
                W.checked_in_at, W.completed_at, W.closed_at, W.cancelled_at, W.overdue_at,
                W.overdue_deadlines, W.reopen_count, W.on_site_seconds, W.settled_at, W.fee_total,
                W.cost_total, W.gross_profit, W.visited_at, W.satisfaction)


class Window:
    """The query's period as UTC bounds and the bucket of each instant. `path` forces the rows
    ("facts") or the rollups ("rollups"); None lets each report choose (see `use_rollups`)."""

    def __init__(self, q: ReportQuery, zone_name: str, path: str | None = None):
        self.q, self.zone, self.path = q, domain.ZoneInfo(zone_name), path
        self.start, self.end = domain.local_bounds(q.date_from, q.date_to, self.zone)
        self._buckets: dict[int, dt.date] = {}

    def has(self, instant: dt.datetime | None) -> bool:
        return instant is not None and self.start <= instant < self.end

    def bucket(self, instant: dt.datetime) -> dt.date:
        # Every zone's offset (and DST change) is a multiple of 15 minutes, so all instants of one
        # 15-minute UTC slot share their local day: convert once per slot, not once per row.
        slot = int(instant.timestamp()) // 900
        period = self._buckets.get(slot)
        if period is None:
            period = self._buckets[slot] = domain.period_start(instant, self.zone, self.q.group_by)
        return period

    def periods(self) -> list[dt.date]:
        return domain.periods(self.q.date_from, self.q.date_to, self.q.group_by)


def _order_filters(stmt, q: ReportQuery, model=W):
    for name in ("team_id", "technician_id", "type", "customer_id"):
        value = getattr(q, name)
        if value is not None:
            stmt = stmt.where(getattr(model, name) == value)
    return stmt


# The columns each report reads (fewer columns, fewer objects built per row).
TIMING = (W.type, W.priority, W.status, W.created_at, W.accepted_at, W.checked_in_at, W.completed_at, W.closed_at,
          W.cancelled_at, W.overdue_at, W.overdue_deadlines, W.backfilled)
PEOPLE = (W.technician_id, W.team_id, W.assistant_ids, W.checked_in_at, W.completed_at, W.on_site_seconds,
          W.reopen_count, W.overdue_deadlines, W.settled_at, W.fee_total, W.visited_at, W.satisfaction,
          W.backfilled, W.visit_scores, W.visit_tags, W.visit_by_customer)
MONEY = (W.ticket_id, W.team_id, W.settled_at, W.fee_total, W.cost_total, W.gross_profit, W.settlement_kinds)
ITEMS = (W.ticket_id, W.completed_at, W.settled_at, W.items_used, W.items_billed)
CUSTOMER = (W.customer_id, W.customer_name, W.completed_at, W.settled_at, W.fee_total)
PLAN = (W.plan_id, W.type, W.status, W.created_at, W.completed_at)


def _facts(uow: UnitOfWork, win: Window, *time_columns, columns=FACT_COLUMNS, where=()):
    """Work orders with any of `time_columns` in the period, after the query's filters."""
    stmt = sa.select(*columns).where(sa.or_(*[c.between(win.start, win.end) for c in time_columns]), *where)
    return uow.session.execute(_order_filters(stmt, win.q)).all()


def _names(uow: UnitOfWork, model, key) -> dict:
    return {str(k): n for k, n in uow.session.execute(sa.select(key, model.name))}


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


# -- 工单报表 ---------------------------------------------------------------------------------

TIMES = (("response", "accepted_at"), ("arrival", "checked_in_at"), ("completion", "completed_at"))


def _timing(orders) -> dict:
    """Average and p90 response / arrival / completion (minutes from creation) and SLA compliance of
    completed orders; backfilled ones (补录) have no real times and are left out."""
    orders = [o for o in orders if not o.backfilled]
    out = {}
    for name, column in TIMES:
        values = [s for s in (domain.seconds_between(o.created_at, getattr(o, column)) for o in orders)
                  if s is not None]
        out[f"avg_{name}_minutes"] = _minutes(domain.average(values))
        out[f"p90_{name}_minutes"] = _minutes(domain.p90(values))
    on_time = sum(1 for o in orders if not o.overdue_deadlines)
    out["sla_compliance"] = domain.rate(on_time, len(orders))
    return out


def work_orders(uow: UnitOfWork, win: Window) -> dict:
    facts = _facts(uow, win, W.created_at, W.completed_at, W.closed_at, W.cancelled_at, W.overdue_at, columns=TIMING)
    counts = defaultdict(lambda: defaultdict(int))
    completed_in = defaultdict(list)
    for o in facts:
        for name, at in (("created", o.created_at), ("completed", o.completed_at), ("closed", o.closed_at),
                         ("cancelled", o.cancelled_at), ("overdue", o.overdue_at)):
            if win.has(at):
                counts[win.bucket(at)][name] += 1
        if win.has(o.completed_at):
            completed_in[win.bucket(o.completed_at)].append(o)
    names = ("created", "completed", "closed", "cancelled", "overdue")
    rows = [{"period": p, **{n: counts[p][n] for n in names}, **_timing(completed_in[p])} for p in win.periods()]
    totals = {n: sum(r[n] for r in rows) for n in names}
    totals.update(_timing([o for group in completed_in.values() for o in group]))
    created = [o for o in facts if win.has(o.created_at)]
    sections = {}
    for label, key in (("by_status", "status"), ("by_type", "type"), ("by_priority", "priority")):
        groups = defaultdict(lambda: [0, 0])
        for o in created:
            groups[getattr(o, key) or "-"][0] += 1
        for group in completed_in.values():
            for o in group:
                groups[getattr(o, key) or "-"][1] += 1
        sections[label] = [{key: k, "created": v[0], "completed": v[1]} for k, v in sorted(groups.items())]
    return {"rows": rows, "totals": totals, "sections": sections}


# -- 人员报表 ---------------------------------------------------------------------------------

def _person_metrics() -> dict:
    return {"completed": 0, "assists": 0, "on_site_seconds": 0, "first_time_fixed": 0, "timed": 0, "on_time": 0,
            "revenue": Decimal(0), "settled": 0, "satisfaction_sum": 0, "visits": 0, "rated": 0, "by_customer": 0,
            "score_sums": defaultdict(int), "score_counts": defaultdict(int), "tags": defaultdict(int)}


def _accumulate(facts, win: Window, key_of) -> dict:
    """Per key (technician, team, ...): the counts personnel and performance reports are made of."""
    acc = defaultdict(_person_metrics)
    for o in facts:
        if win.has(o.completed_at):
            for key in key_of(o, o.completed_at):
                m = acc[key]
                m["completed"] += 1
                m["on_site_seconds"] += o.on_site_seconds or int(
                    domain.seconds_between(o.checked_in_at, o.completed_at) or 0)
                m["first_time_fixed"] += 1 if not o.reopen_count else 0
                if not o.backfilled:  # 补录 orders have no SLA: out of the on-time rate
                    m["timed"] += 1
                    m["on_time"] += 0 if o.overdue_deadlines else 1
            if o.assistant_ids:
                for assistant in o.assistant_ids:
                    for key in key_of(o, o.completed_at, assistant):
                        acc[key]["assists"] += 1
        if win.has(o.settled_at) and o.fee_total is not None:
            for key in key_of(o, o.settled_at):
                acc[key]["revenue"] += o.fee_total
                acc[key]["settled"] += 1
        if win.has(o.visited_at):
            for key in key_of(o, o.visited_at) if (o.satisfaction is not None or o.visit_scores or o.visit_tags) \
                    else ():
                _add_visit(acc[key], o)
    return acc


def _add_visit(m: dict, o) -> None:
    if o.satisfaction is not None:
        m["satisfaction_sum"] += o.satisfaction
        m["visits"] += 1
    if o.visit_scores or o.visit_tags:
        m["rated"] += 1
        m["by_customer"] += 1 if o.visit_by_customer else 0
        for dimension, stars in (o.visit_scores or {}).items():
            m["score_sums"][dimension] += int(stars)
            m["score_counts"][dimension] += 1
        for tag in sorted(set(o.visit_tags or ())):
            m["tags"][tag] += 1


def _ratings(m: dict) -> dict:
    """Average stars per dimension and how often each tag was picked (return visits of the period)."""
    return {"scores": {d: round(m["score_sums"][d] / n, 2) for d, n in sorted(m["score_counts"].items()) if n},
            "tags": {t: n for t, n in sorted(m["tags"].items(), key=lambda kv: (-kv[1], kv[0])) if n}}


def _person_figures(m: dict) -> dict:
    return {
        "completed": m["completed"], "assists": m["assists"],
        "on_site_hours": round(m["on_site_seconds"] / 3600, 2),
        "revenue": domain.money(m["revenue"]),
        "satisfaction": round(m["satisfaction_sum"] / m["visits"], 2) if m["visits"] else None,
        "first_time_fix_rate": domain.rate(m["first_time_fixed"], m["completed"]),
        "on_time_rate": domain.rate(m["on_time"], m["timed"]),
        **_ratings(m),
    }


def _merge(metrics: list[dict]) -> dict:
    total = _person_metrics()
    for m in metrics:
        for k, v in m.items():
            if isinstance(v, dict):
                for name, n in v.items():
                    total[k][name] += n
            else:
                total[k] += v
    return total


def personnel(uow: UnitOfWork, win: Window) -> dict:
    facts = _facts(uow, win, W.completed_at, W.settled_at, W.visited_at, columns=PEOPLE)
    names = _names(uow, PersonFact, PersonFact.user_id)

    def key_of(o, at, who=None):
        who = who or o.technician_id
        return [(win.bucket(at), str(who))] if who else []
    acc = _accumulate(facts, win, key_of)
    rows = [{"period": p, "technician_id": t, "technician_name": names.get(t), **_person_figures(m)}
            for (p, t), m in sorted(acc.items(), key=lambda kv: (kv[0][0], names.get(kv[0][1]) or "", kv[0][1]))]
    per_technician = defaultdict(list)
    for (_, t), m in acc.items():
        per_technician[t].append(m)
    technicians = [{"technician_id": t, "technician_name": names.get(t), **_person_figures(_merge(ms))}
                   for t, ms in sorted(per_technician.items(),
                                          key=lambda kv: (-_merge(kv[1])["completed"], names.get(kv[0]) or "", kv[0]))]
    return {"rows": rows, "totals": _person_figures(_merge(list(acc.values()))),
            "sections": {"technicians": technicians}}


# -- 营收报表 ---------------------------------------------------------------------------------

def revenue(uow: UnitOfWork, win: Window) -> dict:
    facts = [o for o in _facts(uow, win, W.settled_at, columns=MONEY) if win.has(o.settled_at)]
    teams = _names(uow, TeamFact, TeamFact.team_id)
    groups = defaultdict(lambda: {"orders": 0, "fee_total": Decimal(0), "cost_total": Decimal(0),
                                  "gross_profit": Decimal(0)})
    for o in facts:
        g = groups[(win.bucket(o.settled_at), str(o.team_id) if o.team_id else None)]
        g["orders"] += 1
        g["fee_total"] += o.fee_total or 0
        g["cost_total"] += o.cost_total or 0
        g["gross_profit"] += o.gross_profit if o.gross_profit is not None else (o.fee_total or 0) - (o.cost_total or 0)

    def figures(g):
        margin = (g["gross_profit"] / g["fee_total"]).quantize(Decimal("0.0001")) if g["fee_total"] else None
        return {"orders": g["orders"], "fee_total": domain.money(g["fee_total"]),
                "cost_total": domain.money(g["cost_total"]), "gross_profit": domain.money(g["gross_profit"]),
                "gross_margin": margin}
    rows = [{"period": p, "team_id": t, "team_name": teams.get(t), **figures(g)}
            for (p, t), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
    total = {"orders": 0, "fee_total": Decimal(0), "cost_total": Decimal(0), "gross_profit": Decimal(0)}
    for g in groups.values():
        for k in total:
            total[k] += g[k]
    by_kind = defaultdict(Decimal)
    for o in facts:  # the lines of each order's latest settlement, summed per side and kind
        for side_kind, (amount, _) in (o.settlement_kinds or {}).items():
            by_kind[tuple(side_kind.split("|", 1))] += Decimal(amount)
    kinds = [{"side": side, "kind": kind, "amount": domain.money(amount)}
             for (side, kind), amount in sorted(by_kind.items())]
    return {"rows": rows, "totals": figures(total), "sections": {"by_kind": kinds}}


# -- 客户报表 ---------------------------------------------------------------------------------

def customers(uow: UnitOfWork, win: Window) -> dict:
    q = win.q
    known = sa.select(CustomerFact.customer_id, CustomerFact.name, CustomerFact.created_at)
    if q.customer_id:
        known = known.where(CustomerFact.customer_id == q.customer_id)
    known = uow.session.execute(known).all()
    names = {str(c.customer_id): c.name for c in known}
    new = defaultdict(int)
    for c in known:
        if win.has(c.created_at):
            new[win.bucket(c.created_at)] += 1
    facts = _facts(uow, win, W.completed_at, W.settled_at, columns=CUSTOMER)
    served = defaultdict(set)
    orders, revenue_of = defaultdict(int), defaultdict(Decimal)
    for o in facts:
        customer = str(o.customer_id) if o.customer_id else None
        if customer is None:
            continue
        names.setdefault(customer, o.customer_name)
        if win.has(o.completed_at):
            served[win.bucket(o.completed_at)].add(customer)
            orders[customer] += 1
        if win.has(o.settled_at) and o.fee_total is not None:
            revenue_of[customer] += o.fee_total
    rows = [{"period": p, "new": new[p], "served": len(served[p])} for p in win.periods()]
    total = sum(1 for c in known if c.created_at is None or c.created_at < win.end)

    def top(values, key):
        ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:q.top]
        return [{"customer_id": c, "customer_name": names.get(c), key: v if key != "revenue" else domain.money(v)}
                for c, v in ranked]
    return {"rows": rows,
            "totals": {"total": total, "new": sum(new.values()),
                       "served": len(set().union(*served.values())) if served else 0},
            "sections": {"top_by_orders": top(orders, "orders"), "top_by_revenue": top(revenue_of, "revenue")}}


# -- 服务台报表 -------------------------------------------------------------------------------

def service_desk(uow: UnitOfWork, win: Window) -> dict:
    stmt = sa.select(ServiceRequestFact.channel, ServiceRequestFact.event_type, ServiceRequestFact.created_at,
                     ServiceRequestFact.converted_at, ServiceRequestFact.closed_at).where(
        ServiceRequestFact.created_at >= win.start, ServiceRequestFact.created_at < win.end)
    if win.q.customer_id:
        stmt = stmt.where(ServiceRequestFact.customer_id == win.q.customer_id)
    groups = defaultdict(lambda: [0, 0, 0])
    by_type = defaultdict(lambda: [0, 0])
    for r in uow.session.execute(stmt):
        g = groups[(win.bucket(r.created_at), r.channel or "-")]
        g[0] += 1
        g[1] += 1 if r.converted_at else 0
        g[2] += 1 if r.closed_at and not r.converted_at else 0
        t = by_type[r.event_type or "-"]
        t[0] += 1
        t[1] += 1 if r.converted_at else 0

    def figures(received, converted, closed):
        return {"received": received, "converted": converted, "closed_without_order": closed,
                "conversion_rate": domain.rate(converted, received)}
    rows = [{"period": p, "channel": c, **figures(*g)} for (p, c), g in sorted(groups.items())]
    per_channel = defaultdict(lambda: [0, 0, 0])
    for (_, c), g in groups.items():
        per_channel[c] = [a + b for a, b in zip(per_channel[c], g)]
    totals = figures(*[sum(g[i] for g in groups.values()) for i in range(3)])
    return {"rows": rows, "totals": totals, "sections": {
        "by_channel": [{"channel": c, **figures(*g)} for c, g in sorted(per_channel.items())],
        "by_event_type": [{"event_type": t, "received": g[0], "converted": g[1]} for t, g in sorted(by_type.items())]}}


# -- 备件报表 ---------------------------------------------------------------------------------

def spare_parts(uow: UnitOfWork, win: Window) -> dict:
    P, q = PartConsumption, win.q
    stmt = sa.select(P.part_id, P.quantity, P.value, P.technician_id, P.customer_id, P.warehouse_id, P.moved_at) \
        .where(P.moved_at >= win.start, P.moved_at < win.end)
    if q.technician_id:
        stmt = stmt.where(P.technician_id == q.technician_id)
    if q.customer_id:
        stmt = stmt.where(P.customer_id == q.customer_id)
    if q.team_id or q.type:  # the work order the part was used on carries team and type
        stmt = stmt.join(W, sa.and_(W.ticket_id == P.ticket_id, W.tenant_id == P.tenant_id))
        stmt = _order_filters(stmt, q.model_copy(update={"technician_id": None, "customer_id": None}))
    people = _names(uow, PersonFact, PersonFact.user_id)
    customers_ = _names(uow, CustomerFact, CustomerFact.customer_id)
    rows_acc = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    sections = {k: defaultdict(lambda: [Decimal(0), Decimal(0), 0]) for k in
                ("by_warehouse", "by_technician", "by_customer")}
    for m in uow.session.execute(stmt):
        entries = [rows_acc[(win.bucket(m.moved_at), str(m.part_id))]]
        for key, value in (("by_warehouse", m.warehouse_id), ("by_technician", m.technician_id),
                           ("by_customer", m.customer_id)):
            entries.append(sections[key][str(value) if value else None])
        for acc in entries:
            acc[0] += m.quantity
            acc[1] += m.value or 0
            acc[2] += 1 if m.quantity > 0 else -1  # a reversal cancels its entry

    def figures(acc):
        return {"quantity": acc[0], "value": domain.money(acc[1]), "entries": acc[2]}
    rows = [{"period": p, "part_id": part, **figures(acc)} for (p, part), acc in sorted(rows_acc.items())]
    label = {"by_warehouse": ("warehouse_id", {}), "by_technician": ("technician_id", people),
             "by_customer": ("customer_id", customers_)}
    out_sections = {}
    for name, groups in sections.items():
        key, names = label[name]
        out_sections[name] = [{key: k, **({"name": names.get(k)} if names else {}), **figures(acc)}
                              for k, acc in sorted(groups.items(), key=lambda kv: (-kv[1][1], kv[0] or ""))]
    totals = figures([sum((a[i] for a in rows_acc.values()), Decimal(0)) for i in range(3)])
    totals["entries"] = int(totals["entries"])
    return {"rows": rows, "totals": totals, "sections": out_sections}


# -- 服务项目报表 -----------------------------------------------------------------------------

def service_items(uow: UnitOfWork, win: Window) -> dict:
    """Service items used on the orders completed in the period (their latest completion), and
    billed on those settled (fee lines of kind service_item of their latest settlement)."""
    groups = defaultdict(lambda: {"quantity": Decimal(0), "orders": set(), "billed_quantity": Decimal(0),
                                  "revenue": Decimal(0)})
    for o in _facts(uow, win, W.completed_at, W.settled_at, columns=ITEMS):
        if win.has(o.completed_at):
            for item, quantity in (o.items_used or {}).items():
                g = groups[(win.bucket(o.completed_at), item)]
                g["quantity"] += Decimal(quantity)
                g["orders"].add(o.ticket_id)
        if win.has(o.settled_at):
            for ref, (quantity, amount) in (o.items_billed or {}).items():
                g = groups[(win.bucket(o.settled_at), ref or None)]
                g["billed_quantity"] += Decimal(quantity)
                g["revenue"] += Decimal(amount)

    def figures(g):
        return {"quantity": g["quantity"], "orders": len(g["orders"]), "billed_quantity": g["billed_quantity"],
                "revenue": domain.money(g["revenue"])}
    rows = [{"period": p, "service_item_id": i, **figures(g)}
            for (p, i), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
    per_item = defaultdict(lambda: {"quantity": Decimal(0), "orders": set(), "billed_quantity": Decimal(0),
                                    "revenue": Decimal(0)})
    for (_, i), g in groups.items():
        t = per_item[i]
        t["quantity"] += g["quantity"]
        t["orders"] |= g["orders"]
        t["billed_quantity"] += g["billed_quantity"]
        t["revenue"] += g["revenue"]
    items = [{"service_item_id": i, **figures(g)} for i, g in sorted(per_item.items(), key=lambda kv: (-kv[1]["revenue"], kv[0] or ""))]
    total = {"quantity": sum((g["quantity"] for g in per_item.values()), Decimal(0)),
             "orders": set().union(*(g["orders"] for g in per_item.values())) if per_item else set(),
             "billed_quantity": sum((g["billed_quantity"] for g in per_item.values()), Decimal(0)),
             "revenue": sum((g["revenue"] for g in per_item.values()), Decimal(0))}
    return {"rows": rows, "totals": figures(total), "sections": {"by_item": items}}


# -- 业务计划 ---------------------------------------------------------------------------------

def business_plan(uow: UnitOfWork, win: Window) -> dict:
    planned = [o for o in _facts(uow, win, W.created_at, columns=PLAN, where=[W.plan_id.is_not(None)]) if o.plan_id and win.has(o.created_at)]

    def empty():
        return {"planned": 0, "done": 0, "cancelled": 0, "open": 0}

    def add(g, o):
        g["planned"] += 1
        if o.status == "cancelled":
            g["cancelled"] += 1
        elif o.completed_at is not None:
            g["done"] += 1
        else:
            g["open"] += 1
    groups, per_plan, total = defaultdict(empty), defaultdict(empty), empty()
    for o in planned:
        add(groups[(win.bucket(o.created_at), o.type or "-")], o)
        add(per_plan[str(o.plan_id)], o)
        add(total, o)

    def figures(g):
        return {**g, "done_rate": domain.rate(g["done"], g["planned"])}
    rows = [{"period": p, "type": t, **figures(g)} for (p, t), g in sorted(groups.items())]
    return {"rows": rows, "totals": figures(total),
            "sections": {"by_plan": [{"plan_id": p, **figures(g)} for p, g in sorted(per_plan.items())]}}


# -- 绩效报告 ---------------------------------------------------------------------------------

def _performance_metrics(m: dict) -> dict:
    figures = _person_figures(m)
    return {"completed": figures["completed"], "satisfaction": figures["satisfaction"],
            "on_time_rate": figures["on_time_rate"], "first_time_fix_rate": figures["first_time_fix_rate"],
            "revenue": figures["revenue"], "on_site_hours": figures["on_site_hours"]}


def performance(uow: UnitOfWork, win: Window, weights: dict) -> dict:
    """Scores per technician and per team for the whole period (grouping does not apply)."""
    facts = _facts(uow, win, W.completed_at, W.settled_at, W.visited_at, columns=PEOPLE)
    people, teams = _names(uow, PersonFact, PersonFact.user_id), _names(uow, TeamFact, TeamFact.team_id)
    by_tech = _accumulate(facts, win, lambda o, at, who=None: [str(who or o.technician_id)]
                          if (who or o.technician_id) else [])
    by_team = _accumulate(facts, win, lambda o, at, who=None: [str(o.team_id)] if o.team_id and not who else [])
    return performance_ranking(by_tech, by_team, weights, people, teams)


def performance_ranking(by_tech: dict, by_team: dict, weights: dict, people: dict, teams: dict) -> dict:
    """Scores and ranks per technician and per team from their summed figures (rows or rollups)."""
    tech_metrics = {t: _performance_metrics(m) for t, m in by_tech.items()}
    team_metrics = {t: _performance_metrics(m) for t, m in by_team.items()}
    tech_scores, team_scores = domain.scores(tech_metrics, weights), domain.scores(team_metrics, weights)

    def ranked(metrics, scores_, key, names):
        order = sorted(metrics, key=lambda s: (-scores_[s], names.get(s) or "", s))
        return [{"rank": i + 1, key: s, "name": names.get(s), "score": scores_[s], **metrics[s]}
                for i, s in enumerate(order)]
    rows = ranked(tech_metrics, tech_scores, "technician_id", people)
    return {"rows": rows, "totals": {"technicians": len(rows), "weights": weights},
            "sections": {"teams": ranked(team_metrics, team_scores, "team_id", teams)}}


# -- 满意度 (satisfaction per dimension) --------------------------------------------------------

SATISFACTION = (W.team_id, W.visited_at, W.satisfaction, W.visit_scores, W.visit_tags, W.visit_by_customer)


def _visit_figures(m: dict) -> dict:
    return {"visits": m["visits"],
            "satisfaction": round(m["satisfaction_sum"] / m["visits"], 2) if m["visits"] else None,
            "rated": m["rated"], "rated_by_customer": m["by_customer"], **_ratings(m)}


def satisfaction_result(per_period: dict, per_team: dict, teams: dict) -> dict:
    """The satisfaction report from visit metrics per (period, team) and per team (both paths)."""
    rows = [{"period": p, "team_id": t, "team_name": teams.get(t), **_visit_figures(m)}
            for (p, t), m in sorted(per_period.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
    total = _merge(list(per_team.values()))
    figures = _visit_figures(total)
    return {"rows": rows, "totals": figures, "sections": {
        "teams": [{"team_id": t, "team_name": teams.get(t), **_visit_figures(m)}
                  for t, m in sorted(per_team.items(), key=lambda kv: (teams.get(kv[0]) or "", kv[0] or ""))],
        "by_dimension": [{"dimension": d, "average": avg, "ratings": total["score_counts"][d]}
                         for d, avg in figures["scores"].items()],
        "by_tag": [{"tag": t, "count": n} for t, n in figures["tags"].items()]}}


def satisfaction(uow: UnitOfWork, win: Window) -> dict:
    """满意度: return visits per period and team — average stars overall and per dimension, tag counts,
    how many were rated by the customer."""
    teams = _names(uow, TeamFact, TeamFact.team_id)
    per_period, per_team = defaultdict(_person_metrics), defaultdict(_person_metrics)
    for o in _facts(uow, win, W.visited_at, columns=SATISFACTION):
        if win.has(o.visited_at) and (o.satisfaction is not None or o.visit_scores or o.visit_tags):
            team = str(o.team_id) if o.team_id else None
            _add_visit(per_period[(win.bucket(o.visited_at), team)], o)
            _add_visit(per_team[team], o)
    return satisfaction_result(per_period, per_team, teams)


# -- 首页 (dashboard) ------------------------------------------------------------------------

def dashboard(uow: UnitOfWork, zone_name: str, team_id=None, technician_id=None, now: dt.datetime | None = None,
              periods: bool = True, open_orders: bool = True) -> dict:
    """首页 from the rows (`periods`, `open_orders` False: the rollups give those)."""
    zone = domain.ZoneInfo(zone_name)
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.astimezone(zone).date()
    out = {"tz": zone_name, "date": today, "as_of": now}
    for label, first in (("today", today), ("this_month", today.replace(day=1))) if periods else ():
        start, end = domain.local_bounds(first, today, zone)
        stmt = sa.select(W.created_at, W.completed_at, W.settled_at, W.fee_total, W.gross_profit, W.technician_id,
                         W.checked_in_at).where(sa.or_(*[c.between(start, end) for c in
                                                         (W.created_at, W.completed_at, W.settled_at,
                                                          W.checked_in_at)]))
        if team_id:
            stmt = stmt.where(W.team_id == team_id)
        if technician_id:
            stmt = stmt.where(W.technician_id == technician_id)
        rows = uow.session.execute(stmt).all()

        def within(at):
            return at is not None and start <= at < end
        out[label] = {
            "created": sum(1 for r in rows if within(r.created_at)),
            "completed": sum(1 for r in rows if within(r.completed_at)),
            "settled": sum(1 for r in rows if within(r.settled_at)),
            "revenue": domain.money(sum((r.fee_total or 0 for r in rows if within(r.settled_at)), Decimal(0))),
            "gross_profit": domain.money(sum((r.gross_profit or 0 for r in rows if within(r.settled_at)),
                                             Decimal(0))),
            "active_technicians": len({r.technician_id for r in rows if r.technician_id and
                                       (within(r.checked_in_at) or within(r.completed_at))}),
        }
    if not open_orders:
        out["pending_service_requests"] = _pending_requests(uow)
        return out
    status = sa.select(W.status, sa.func.count()).where(W.status.in_(domain.OPEN_STATUSES)).group_by(W.status)
    overdue = sa.select(sa.func.count()).select_from(W).where(W.status.in_(domain.OPEN_STATUSES),
                                                              W.overdue_at.is_not(None))
    if team_id:
        status, overdue = status.where(W.team_id == team_id), overdue.where(W.team_id == team_id)
    if technician_id:
        status, overdue = status.where(W.technician_id == technician_id), overdue.where(W.technician_id == technician_id)
    counts = dict(uow.session.execute(status).all())
    out["open_by_status"] = {s: counts.get(s, 0) for s in domain.OPEN_STATUSES}
    out["open_overdue"] = uow.session.scalar(overdue) or 0
    out["pending_service_requests"] = _pending_requests(uow)
    return out


def _pending_requests(uow: UnitOfWork) -> int:
    return uow.session.scalar(sa.select(sa.func.count()).select_from(ServiceRequestFact).where(
        ServiceRequestFact.converted_at.is_(None), ServiceRequestFact.closed_at.is_(None))) or 0


# -- rows or rollups -------------------------------------------------------------------------------

def use_rollups(uow: UnitOfWork, win: Window, supported: frozenset) -> bool:
    """Whether a report reads the rollups: kept in this zone, not being rebuilt, and every filter of
    the query a dimension of theirs (technician and customer filters are selective: the rows, through
    their indexes, are fast and exact)."""
    if win.path is not None:
        return win.path == "rollups"
    if any(getattr(win.q, name) is not None and name not in supported
           for name in ("team_id", "technician_id", "type", "customer_id")):
        return False
    from .models import TenantState
    state = uow.session.scalar(sa.select(TenantState))
    return state is not None and state.rebuild_job_id is None and state.rollup_zone == win.zone.key


def _either(facts_fn, name: str, supported: tuple):
    def run(uow: UnitOfWork, win: Window, *args):
        from . import rollup_queries
        if use_rollups(uow, win, frozenset(supported)):
            return getattr(rollup_queries, name)(uow, win, *args)
        return facts_fn(uow, win, *args)
    run.__name__ = name
    return run


# report → how it runs, and the filters its rollups answer
REPORTS = {
    "work_orders": _either(work_orders, "work_orders", ("team_id", "type")),
    "personnel": _either(personnel, "personnel", ("team_id",)),
    "revenue": _either(revenue, "revenue", ("team_id", "type")),
    "customers": _either(customers, "customers", ()),
    "service_desk": service_desk,
    "spare_parts": _either(spare_parts, "spare_parts", ()),
    "service_items": _either(service_items, "service_items", ()),
    "business_plan": _either(business_plan, "business_plan", ("type",)),
    "performance": _either(performance, "performance", ("team_id",)),
    "satisfaction": _either(satisfaction, "satisfaction", ("team_id",)),
}


def dashboard_either(uow: UnitOfWork, zone_name: str, team_id=None, technician_id=None,
                     now: dt.datetime | None = None, path: str | None = None) -> dict:
    from . import rollup_queries
    from .schemas import ReportQuery
    probe = Window(ReportQuery(date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 1, 1), team_id=team_id,
                               technician_id=technician_id), zone_name, path)
    if use_rollups(uow, probe, frozenset({"team_id"})):
        return rollup_queries.dashboard(uow, zone_name, team_id, now=now)
    if technician_id is None and path is None and _rollups_complete(uow):
        # another zone than the rollups': today / this month from the rows, the open orders (any zone)
        # from the rollups
        out = rollup_queries.dashboard(uow, zone_name, team_id, now=now, periods=False)
        return {**dashboard(uow, zone_name, team_id, None, now=now, open_orders=False), **{
            k: out[k] for k in ("open_by_status", "open_overdue")}}
    return dashboard(uow, zone_name, team_id, technician_id, now=now)


def _rollups_complete(uow: UnitOfWork) -> bool:
    from .models import TenantState
    state = uow.session.scalar(sa.select(TenantState))
    return state is not None and state.rebuild_job_id is None
