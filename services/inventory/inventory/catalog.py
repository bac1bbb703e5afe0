"""Catalog use cases: category tree, parts, service items (服务项目), import and export."""
import uuid

import sqlalchemy as sa
from pydantic import ValidationError

from svc_common.errors import Conflict, Forbidden, ValidationFailed, field_error
from svc_common.uow import UnitOfWork

from . import domain, tabular
from .models import Part, PartCategory, ServiceItem
from .schemas import CategoryIn, PartIn, PartUpdateIn, ServiceItemIn, ServiceItemUpdateIn

CATALOG_EDITORS = frozenset({domain.ADMIN, domain.WAREHOUSE_MANAGER})


def _ensure_editor(uow: UnitOfWork) -> None:
    if uow.ctx.actor_role not in CATALOG_EDITORS:
        raise Forbidden("only administrators and warehouse managers edit the catalog")


# --- categories ------------------------------------------------------------------------------------

def _categories(uow: UnitOfWork) -> dict[uuid.UUID, PartCategory]:
    return {c.id: c for c in uow.session.scalars(sa.select(PartCategory))}


def category_paths(uow: UnitOfWork) -> dict[uuid.UUID, str]:
    """id → "空调/压缩机" for every category."""
    nodes = _categories(uow)

    def path(node: PartCategory, depth: int = 0) -> str:
        parent = nodes.get(node.parent_id) if node.parent_id else None
        return node.name if parent is None or depth > 50 else f"{path(parent, depth + 1)}/{node.name}"
    return {cid: path(node) for cid, node in nodes.items()}


def create_category(uow: UnitOfWork, data: CategoryIn) -> PartCategory:
    _ensure_editor(uow)
    if data.parent_id:
        uow.get_or_404(PartCategory, data.parent_id, "parent_id", "category")
    if "/" in data.name:
        raise field_error("name", "must not contain '/' (it separates levels of a category path)")
    same = sa.select(PartCategory.id).where(PartCategory.name == data.name, PartCategory.parent_id == data.parent_id
                                            if data.parent_id else PartCategory.parent_id.is_(None))
    if uow.session.scalar(same):
        raise Conflict(f"category {data.name} already exists here", [{"field": "name", "message": "already exists"}])
    category = PartCategory(name=data.name, parent_id=data.parent_id)
    uow.session.add(category)
    uow.session.flush()
    return category


def list_categories(uow: UnitOfWork) -> list[dict]:
    paths = category_paths(uow)
    nodes = _categories(uow)
    return sorted(({"id": cid, "name": nodes[cid].name, "parent_id": nodes[cid].parent_id, "path": p}
                   for cid, p in paths.items()), key=lambda c: c["path"])


def category_by_path(uow: UnitOfWork, path: str, create: bool) -> uuid.UUID | None:
    """The category at "空调/压缩机", created level by level when `create`; None if absent."""
    parent_id = None
    for name in [p.strip() for p in path.split("/") if p.strip()]:
        found = uow.session.scalar(sa.select(PartCategory).where(
            PartCategory.name == name,
            PartCategory.parent_id == parent_id if parent_id else PartCategory.parent_id.is_(None)))
        if found is None:
            if not create:
                return None
            found = PartCategory(name=name[:100], parent_id=parent_id)
            uow.session.add(found)
            uow.session.flush()
        parent_id = found.id
    return parent_id


def descendants(uow: UnitOfWork, category_id: uuid.UUID) -> set[uuid.UUID]:
    children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for c in _categories(uow).values():
        children.setdefault(c.parent_id, []).append(c.id)
    seen, stack = set(), [category_id]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(children.get(node, []))
    return seen


# --- parts -----------------------------------------------------------------------------------------

def create_part(uow: UnitOfWork, data: PartIn) -> Part:
    _ensure_editor(uow)
    if uow.session.scalar(sa.select(Part.id).where(Part.code == data.code)):
        raise Conflict(f"part code {data.code} already exists", [{"field": "code", "message": "already exists"}])
    if data.category_id:
        uow.get_or_404(PartCategory, data.category_id, "category_id", "category")
    part = Part(**data.model_dump())
    uow.session.add(part)
    uow.session.flush()
    return part


def update_part(uow: UnitOfWork, part_id: uuid.UUID, data: PartUpdateIn) -> Part:
    _ensure_editor(uow)
    part = uow.get_or_404(Part, part_id, "part_id", "part")
    changes = data.model_dump(exclude_unset=True)
    if changes.get("category_id"):
        uow.get_or_404(PartCategory, changes["category_id"], "category_id", "category")
    for field in ("name", "unit", "min_stock", "active"):
        if field in changes and changes[field] is None:
            raise field_error(field, "must not be null")
    for key, value in changes.items():
        setattr(part, key, value)
    uow.session.flush()
    return part


def get_part(uow: UnitOfWork, part_id: uuid.UUID) -> Part:
    return uow.get_or_404(Part, part_id, "part_id", "part")


def list_parts(uow: UnitOfWork, q: str | None = None, category_id: uuid.UUID | None = None,
               barcode: str | None = None, active: bool | None = None, offset: int = 0,
               limit: int | None = None) -> tuple[list[Part], int]:
    query = sa.select(Part)
    if q:
        like = f"%{q}%"
        query = query.where(sa.or_(Part.code.ilike(like), Part.name.ilike(like), Part.model.ilike(like)))
    if category_id:
        query = query.where(Part.category_id.in_(descendants(uow, category_id)))
    if barcode:
        query = query.where(Part.barcode == barcode)
    if active is not None:
        query = query.where(Part.active.is_(active))
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    query = query.order_by(Part.code, Part.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(uow.session.scalars(query)), total


# --- service items (服务项目) ------------------------------------------------------------------------

def create_service_item(uow: UnitOfWork, data: ServiceItemIn) -> ServiceItem:
    if uow.ctx.actor_role != domain.ADMIN:
        raise Forbidden("only administrators set service items and their prices")
    if uow.session.scalar(sa.select(ServiceItem.id).where(ServiceItem.code == data.code)):
        raise Conflict(f"service item code {data.code} already exists",
                       [{"field": "code", "message": "already exists"}])
    item = ServiceItem(**data.model_dump())
    uow.session.add(item)
    uow.session.flush()
    return item


def update_service_item(uow: UnitOfWork, item_id: uuid.UUID, data: ServiceItemUpdateIn) -> ServiceItem:
    if uow.ctx.actor_role != domain.ADMIN:
        raise Forbidden("only administrators set service items and their prices")
    item = uow.get_or_404(ServiceItem, item_id, "service_item_id", "service item")
    changes = data.model_dump(exclude_unset=True)
    for field in ("name", "unit", "price", "active"):
        if field in changes and changes[field] is None:
            raise field_error(field, "must not be null")
    for key, value in changes.items():
        setattr(item, key, value)
    uow.session.flush()
    return item


def list_service_items(uow: UnitOfWork, q: str | None = None, active: bool | None = None,
                       ids: list[uuid.UUID] | None = None) -> list[ServiceItem]:
    query = sa.select(ServiceItem)
    if q:
        query = query.where(sa.or_(ServiceItem.code.ilike(f"%{q}%"), ServiceItem.name.ilike(f"%{q}%")))
    if active is not None:
        query = query.where(ServiceItem.active.is_(active))
    if ids is not None:
        query = query.where(ServiceItem.id.in_(ids or [uuid.UUID(int=0)]))
    return list(uow.session.scalars(query.order_by(ServiceItem.code, ServiceItem.id)))


# --- import and export -------------------------------------------------------------------------------
# One column list per kind: export writes these headers, import reads them (zh-CN or en names),
# so an exported file imports back unchanged.

PART_COLUMNS = [("code", "编号"), ("name", "名称"), ("category", "类别"), ("model", "规格"), ("unit", "单位"),
                ("sale_price", "销售价"), ("cost_price", "出库价"), ("min_stock", "安全库存"),
                ("barcode", "条码"), ("image_ref", "图片"), ("notes", "说明"), ("active", "启用")]
SERVICE_ITEM_COLUMNS = [("code", "编号"), ("name", "名称"), ("category", "类别"), ("unit", "单位"),
                        ("price", "价格"), ("cost_price", "成本价"), ("notes", "说明"), ("active", "启用")]
KINDS = {"parts": PART_COLUMNS, "service_items": SERVICE_ITEM_COLUMNS}
_TRUE = {"1", "true", "yes", "y", "是", "启用", "on"}
_FALSE = {"0", "false", "no", "n", "否", "禁用", "停用", "off"}


def _columns(kind: str) -> list[tuple[str, str]]:
    if kind not in KINDS:
        raise field_error("kind", "must be parts or service_items")
    return KINDS[kind]


def _row_values(cells: dict[str, str], columns: list[tuple[str, str]]) -> dict[str, str]:
    values = {}
    for key, zh in columns:
        for header in (key, zh):
            if cells.get(header):
                values[key] = cells[header]
                break
    return values


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be yes/no (是/否, 1/0)")


def import_catalog(uow: UnitOfWork, kind: str, fmt: str, content: bytes) -> dict:
    """Create or update (by code) every row of the file, or nothing: any bad row fails the whole
    import with a report naming each bad row and column (`rows.<row number>.<column>`)."""
    if kind == "parts":
        _ensure_editor(uow)
    elif uow.ctx.actor_role != domain.ADMIN:
        raise Forbidden("only administrators set service items and their prices")
    columns = _columns(kind)
    rows = tabular.read_rows(content, fmt)
    model, schema = (Part, PartIn) if kind == "parts" else (ServiceItem, ServiceItemIn)
    existing = {row.code: row for row in uow.session.scalars(sa.select(model))}
    errors, parsed, seen = [], [], {}
    for number, cells in rows:
        values = _row_values(cells, columns)
        row_errors = []
        category_path = values.pop("category", None) if kind == "parts" else None
        if "active" in values:
            try:
                values["active"] = _bool(values["active"])
            except ValueError as exc:
                row_errors.append({"field": f"rows.{number}.active", "message": str(exc)})
                values.pop("active")
        try:
            data = schema.model_validate(values)
        except ValidationError as exc:
            row_errors.extend({"field": f"rows.{number}.{'.'.join(str(p) for p in e['loc']) or 'row'}",
                               "message": e["msg"]} for e in exc.errors())
            data = None
        if data is not None and data.code in seen:
            row_errors.append({"field": f"rows.{number}.code",
                               "message": f"duplicate of row {seen[data.code]} in this file"})
        if data is not None:
            seen.setdefault(data.code, number)
        errors.extend(row_errors)
        if not row_errors:
            parsed.append((data, category_path, values))
    if errors:
        raise ValidationFailed(f"{len(errors)} error(s) in {len({e['field'].split('.')[1] for e in errors})} row(s); "
                               "nothing was imported", errors[:500])
    if not parsed:
        raise field_error("file", "no data rows")
    created = updated = 0
    for data, category_path, values in parsed:
        fields = data.model_dump()
        if kind == "parts":
            fields["category_id"] = category_by_path(uow, category_path, create=True) if category_path else None
        row = existing.get(data.code)
        if row is None:
            uow.session.add(model(**fields))
            created += 1
        else:
            # Update only what the file has a column for: an absent column keeps the stored value.
            for key, value in fields.items():
                if key in values or (key == "category_id" and category_path is not None):
                    setattr(row, key, value)
            updated += 1
    uow.session.flush()
    return {"created": created, "updated": updated, "rows": len(parsed)}


def export_catalog(uow: UnitOfWork, kind: str, fmt: str) -> tuple[str, bytes]:
    columns = _columns(kind)
    headers = [zh for _, zh in columns]
    if kind == "parts":
        paths = category_paths(uow)
        parts, _ = list_parts(uow)
        rows = [[paths.get(p.category_id, "") if key == "category" else
                 ("是" if p.active else "否") if key == "active" else getattr(p, key)
                 for key, _ in columns] for p in parts]
    else:
        rows = [[("是" if i.active else "否") if key == "active" else getattr(i, key) for key, _ in columns]
                for i in list_service_items(uow)]
    return f"{kind}.{fmt}", tabular.write_table(headers, rows, fmt)


