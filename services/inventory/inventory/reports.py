"""Reports of the inventory service and their export (CSV / XLSX): stock by warehouse and part,
movement history, personal holdings, consumption by work order / customer / technician / part / period."""
import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa

from svc_common.errors import field_error
from svc_common.uow import UnitOfWork

from . import domain, tabular
from .catalog import descendants
from .handlers import _ensure_may_see_personal, _warehouse_tree, visible_warehouse_ids
from .models import Balance, Location, Part, StockMove

EXPORT_LIMIT = 100000
CENT = Decimal("0.01")


def _value(quantity, unit_cost) -> Decimal | None:
    return None if unit_cost is None else (Decimal(quantity) * Decimal(unit_cost)).quantize(CENT)


# --- stock by warehouse and part ---------------------------------------------------------------------

def stock_report(uow: UnitOfWork, warehouse_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                 category_id: uuid.UUID | None = None, below_minimum: bool = False, include_children: bool = True,
                 offset: int = 0, limit: int | None = None, by_part: bool = False) -> tuple[list[dict], int]:
    """Stock per warehouse and part, or (`by_part`) per part summed over the warehouses in scope."""
    if by_part:
        return _stock_by_part(uow, warehouse_id, part_id, category_id, below_minimum, include_children, offset,
                              limit)
    query = (sa.select(Location.id.label("warehouse_id"), Location.name.label("warehouse_name"),
                       Part.id.label("part_id"), Part.code, Part.name, Part.unit, Part.min_stock, Part.cost_price,
                       Balance.quantity)
             .join(Location, Location.id == Balance.location_id).join(Part, Part.id == Balance.part_id)
             .where(Location.kind == domain.WAREHOUSE))
    query = _stock_scope(uow, query, warehouse_id, part_id, category_id, include_children)
    if below_minimum:
        query = query.where(Balance.quantity < Part.min_stock)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    query = query.order_by(Location.name, Location.id, Part.code).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = [{"warehouse_id": r.warehouse_id, "warehouse_name": r.warehouse_name, "part_id": r.part_id,
             "part_code": r.code, "part_name": r.name, "unit": r.unit, "quantity": r.quantity,
             "min_stock": r.min_stock, "below_minimum": r.quantity < r.min_stock, "unit_cost": r.cost_price,
             "value": _value(r.quantity, r.cost_price)} for r in uow.session.execute(query)]
    return rows, total


def _stock_scope(uow: UnitOfWork, query, warehouse_id, part_id, category_id, include_children: bool):
    visible = visible_warehouse_ids(uow)
    if warehouse_id:
        # A regional warehouse's figure includes its offices unless asked otherwise.
        scope = domain.subtree([warehouse_id], _warehouse_tree(uow)) if include_children else {warehouse_id}
        visible = scope if visible is None else scope & visible
    if visible is not None:
        query = query.where(Location.id.in_(visible or [uuid.UUID(int=0)]))
    if part_id:
        query = query.where(Part.id == part_id)
    if category_id:
        query = query.where(Part.category_id.in_(descendants(uow, category_id)))
    return query


def _stock_by_part(uow: UnitOfWork, warehouse_id, part_id, category_id, below_minimum: bool,
                   include_children: bool, offset: int, limit: int | None) -> tuple[list[dict], int]:
    total_quantity = sa.func.sum(Balance.quantity)
    query = (sa.select(Part.id.label("part_id"), Part.code, Part.name, Part.unit, Part.min_stock, Part.cost_price,
                       total_quantity.label("quantity"), sa.func.count(Location.id).label("warehouses"))
             .join(Location, Location.id == Balance.location_id).join(Part, Part.id == Balance.part_id)
             .where(Location.kind == domain.WAREHOUSE)
             .group_by(Part.id, Part.code, Part.name, Part.unit, Part.min_stock, Part.cost_price))
    query = _stock_scope(uow, query, warehouse_id, part_id, category_id, include_children)
    if below_minimum:
        query = query.having(total_quantity < Part.min_stock)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    query = query.order_by(Part.code, Part.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = []
    for r in uow.session.execute(query):
        quantity = domain.to_scale(Decimal(str(r.quantity)))
        rows.append({"part_id": r.part_id, "part_code": r.code, "part_name": r.name, "unit": r.unit,
                     "quantity": quantity, "warehouses": r.warehouses, "min_stock": r.min_stock,
                     "below_minimum": quantity < r.min_stock, "unit_cost": r.cost_price,
                     "value": _value(quantity, r.cost_price)})
    return rows, total


# --- movement history --------------------------------------------------------------------------------

def moves_query(uow: UnitOfWork, ref_id=None, part_id=None, location_id=None, kind=None, technician_id=None,
                customer_id=None, date_from: dt.datetime | None = None, date_to: dt.datetime | None = None):
    """The ledger with filters; a regional manager sees movements touching their warehouses
    (and personal stock: technicians draw from and return to them)."""
    query = sa.select(StockMove)
    if ref_id:
        query = query.where(StockMove.ref_id == ref_id)
    if part_id:
        query = query.where(StockMove.part_id == part_id)
    if location_id:
        query = query.where(sa.or_(StockMove.from_location_id == location_id, StockMove.to_location_id == location_id))
    if kind:
        query = query.where(StockMove.kind == kind)
    if technician_id:
        query = query.where(StockMove.technician_id == technician_id)
    if customer_id:
        query = query.where(StockMove.customer_id == customer_id)
    if date_from:
        query = query.where(StockMove.created_at >= date_from)
    if date_to:
        query = query.where(StockMove.created_at < date_to)
    if uow.ctx.actor_role == domain.TECHNICIAN:
        query = query.where(StockMove.technician_id == uow.ctx.actor_id)
    visible = visible_warehouse_ids(uow)
    if visible is not None:
        hidden = sa.select(Location.id).where(Location.kind == domain.WAREHOUSE,
                                              Location.id.not_in(visible or [uuid.UUID(int=0)]))
        query = query.where(sa.or_(StockMove.from_location_id.is_(None), StockMove.from_location_id.not_in(hidden)),
                            sa.or_(StockMove.to_location_id.is_(None), StockMove.to_location_id.not_in(hidden)))
    return query


def _names(uow: UnitOfWork) -> tuple[dict, dict]:
    locations = {r.id: r for r in uow.session.execute(sa.select(Location.id, Location.name, Location.kind,
                                                                  Location.owner_user_id))}
    parts = {r.id: r for r in uow.session.execute(sa.select(Part.id, Part.code, Part.name, Part.unit))}
    return locations, parts


def _location_label(locations: dict, location_id) -> str:
    if location_id is None:
        return ""
    loc = locations.get(location_id)
    if loc is None:
        return str(location_id)
    return f"{loc.name} ({loc.owner_user_id})" if loc.kind == domain.PERSONAL else loc.name


# --- personal holdings (个人备件库) -------------------------------------------------------------------------

def personal_holdings(uow: UnitOfWork, technician_id: uuid.UUID | None = None, part_id: uuid.UUID | None = None,
                      offset: int = 0, limit: int | None = None) -> tuple[list[dict], int]:
    """What every technician holds (managers: for borrowing and forecasting); technicians see theirs."""
    if uow.ctx.actor_role == domain.TECHNICIAN:
        technician_id = technician_id or uow.ctx.actor_id
        _ensure_may_see_personal(uow, technician_id)
    query = (sa.select(Location.owner_user_id, Part.id.label("part_id"), Part.code, Part.name, Part.unit,
                       Part.cost_price, Balance.quantity)
             .join(Location, Location.id == Balance.location_id).join(Part, Part.id == Balance.part_id)
             .where(Location.kind == domain.PERSONAL, Balance.quantity != 0))
    if technician_id:
        query = query.where(Location.owner_user_id == technician_id)
    if part_id:
        query = query.where(Part.id == part_id)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    query = query.order_by(Location.owner_user_id, Part.code).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = [{"technician_id": r.owner_user_id, "part_id": r.part_id, "part_code": r.code, "part_name": r.name,
             "unit": r.unit, "quantity": r.quantity, "unit_cost": r.cost_price,
             "value": _value(r.quantity, r.cost_price)} for r in uow.session.execute(query)]
    return rows, total


# --- consumption ---------------------------------------------------------------------------------------

GROUPS = ("work_order", "customer", "technician", "part", "day", "month")


def consumption_report(uow: UnitOfWork, group_by: str = "work_order", date_from: dt.datetime | None = None,
                       date_to: dt.datetime | None = None, technician_id: uuid.UUID | None = None,
                       customer_id: uuid.UUID | None = None) -> list[dict]:
    """Net parts consumed on work orders (consumptions minus reversals), quantity and cost value,
    grouped by work order, customer, technician, part, day or month (UTC)."""
    if group_by not in GROUPS:
        raise field_error("group_by", f"must be one of {', '.join(GROUPS)}")
    sign = sa.case((StockMove.kind == domain.CONSUMPTION_REVERSAL, -1), else_=1)
    quantity = sa.func.sum(sign * StockMove.quantity)
    value = sa.func.sum(sign * StockMove.quantity * sa.func.coalesce(StockMove.unit_cost, 0))
    keys = {"work_order": [StockMove.ref_id, StockMove.ref_number, StockMove.customer_id, StockMove.technician_id],
            "customer": [StockMove.customer_id], "technician": [StockMove.technician_id],
            "part": [StockMove.part_id],
            "day": [sa.func.date(StockMove.created_at)], "month": [sa.func.date(StockMove.created_at)]}[group_by]
    query = (sa.select(*keys, quantity.label("quantity"), value.label("value"), sa.func.count().label("lines"))
             .where(StockMove.kind.in_((domain.CONSUMPTION, domain.CONSUMPTION_REVERSAL)))
             .group_by(*keys).order_by(*keys))
    if date_from:
        query = query.where(StockMove.created_at >= date_from)
    if date_to:
        query = query.where(StockMove.created_at < date_to)
    if technician_id:
        query = query.where(StockMove.technician_id == technician_id)
    if customer_id:
        query = query.where(StockMove.customer_id == customer_id)
    if uow.ctx.actor_role == domain.TECHNICIAN:
        query = query.where(StockMove.technician_id == uow.ctx.actor_id)
    parts = {r.id: r for r in uow.session.execute(sa.select(Part.id, Part.code, Part.name, Part.unit))}
    result: dict = {}
    for row in uow.session.execute(query):
        q, v = domain.to_scale(Decimal(str(row.quantity))), Decimal(str(row.value)).quantize(CENT)
        if group_by == "work_order":
            key = row[0]
            item = {"work_order_id": row[0], "work_order_number": row[1], "customer_id": row[2],
                    "technician_id": row[3]}
        elif group_by in ("customer", "technician"):
            key = row[0]
            item = {f"{group_by}_id": row[0]}
        elif group_by == "part":
            key = row[0]
            p = parts.get(row[0])
            item = {"part_id": row[0], "part_code": p.code if p else None, "part_name": p.name if p else None,
                    "unit": p.unit if p else None}
        else:
            day = str(row[0])[:10]
            key = day if group_by == "day" else day[:7]
            item = {"period": key}
        entry = result.setdefault(key, {**item, "quantity": domain.ZERO, "value": Decimal("0.00"), "lines": 0})
        entry["quantity"] += q
        entry["value"] += v
        entry["lines"] += row.lines
    return [r for r in result.values() if r["quantity"] != 0 or r["lines"]]


# --- exports -------------------------------------------------------------------------------------------

def export_report(uow: UnitOfWork, report: str, fmt: str, filters: dict) -> tuple[str, bytes]:
    """Any report as a CSV or XLSX file (zh-CN headers), with the same filters as on screen."""
    if fmt not in tabular.FORMATS:
        raise field_error("format", "must be csv or xlsx")
    if report == "stock":
        rows, _ = stock_report(uow, **filters, limit=EXPORT_LIMIT)
        headers = ["仓库", "编号", "名称", "单位", "库存数量", "安全库存", "低于安全库存", "出库价", "金额"]
        table = [[r.get("warehouse_name", f"{r.get('warehouses')} 个仓库"), r["part_code"], r["part_name"], r["unit"],
                  r["quantity"], r["min_stock"], "是" if r["below_minimum"] else "否", r["unit_cost"], r["value"]]
                 for r in rows]
    elif report == "moves":
        locations, parts = _names(uow)
        moves = uow.session.scalars(moves_query(uow, **filters).order_by(StockMove.created_at, StockMove.id)
                                    .limit(EXPORT_LIMIT))
        headers = ["时间(UTC)", "类型", "编号", "名称", "数量", "单位", "从", "到", "单据类型", "单据号", "经办人",
                   "工程师", "客户", "单价", "金额", "说明", "ID"]
        table = []
        for m in moves:
            p = parts.get(m.part_id)
            table.append([m.created_at, m.kind, p.code if p else m.part_id, p.name if p else "", m.quantity,
                          p.unit if p else "", _location_label(locations, m.from_location_id),
                          _location_label(locations, m.to_location_id), m.ref_type, m.ref_number, m.actor_id,
                          m.technician_id, m.customer_id, m.unit_cost, _value(m.quantity, m.unit_cost), m.note, m.id])
    elif report == "personal":
        rows, _ = personal_holdings(uow, **filters, limit=EXPORT_LIMIT)
        headers = ["工程师", "编号", "名称", "单位", "数量", "出库价", "金额"]
        table = [[r["technician_id"], r["part_code"], r["part_name"], r["unit"], r["quantity"], r["unit_cost"],
                  r["value"]] for r in rows]
    elif report == "consumption":
        rows = consumption_report(uow, **filters)
        group = filters.get("group_by", "work_order")
        first = {"work_order": ["工单ID", "工单号", "客户", "工程师"], "customer": ["客户"], "technician": ["工程师"],
                 "part": ["备件ID", "编号", "名称", "单位"], "day": ["日期"], "month": ["月份"]}[group]
        headers = first + ["数量", "金额", "记录数"]
        table = [[v for k, v in r.items() if k not in ("quantity", "value", "lines")]
                 + [r["quantity"], r["value"], r["lines"]] for r in rows]
    else:
        raise field_error("report", "must be stock, moves, personal or consumption")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    return f"{report}-{stamp}.{fmt}", tabular.write_table(headers, table, fmt)
