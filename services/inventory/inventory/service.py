"""nameko entrypoints of the inventory service: validate → handler → DTO."""
import base64
import binascii

from nameko.rpc import rpc
from pydantic_core import to_jsonable_python

from svc_common.consumer import on_event
from svc_common.errors import EXPECTED_ERRORS, field_error
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.validation import dump, page, parse, parse_id, window

from . import catalog, domain, handlers, reports, tabular
from .models import PLATFORM
from .schemas import (
    ApprovalIn, CategoryIn, CategoryOut, CheckStockIn, ConsumptionFilter, IssueIn, LocationOut, MoveFilter,
    MoveOut, OldPartOut, OldPartReturnIn, PartIn, PartOut, PartUpdateIn, ReceiveIn, RejectIn, RequisitionIn, ResolveIn,
    RequisitionOut, ReturnIn, ServiceItemIn, ServiceItemOut, ServiceItemUpdateIn, SettingsIn, SettingsOut,
    ShortfallOut, StockOut, StocktakeIn, TransferIn, TransferOut, TransferReceiveIn, WarehouseIn,
    WarehouseUpdateIn,
)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def _optional_id(value, field: str):
    return parse_id(value, field) if value else None


def _file(filename: str, fmt: str, content: bytes) -> dict:
    return {"filename": filename, "content_type": tabular.FORMATS[fmt],
            "content_base64": base64.b64encode(content).decode()}


def _flag(value, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise field_error(field, "must be true or false")


class InventoryService(HealthRpc):
    name = "inventory"
    platform = Platform(PLATFORM)

    # --- settings --------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_settings(self):
        with self.platform.uow() as uow:
            return dump(SettingsOut, handlers.get_settings(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_settings(self, settings):
        data = parse(SettingsIn, settings)
        with self.platform.uow() as uow:
            return dump(SettingsOut, handlers.update_settings(uow, data))

    # --- warehouses ------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_warehouse(self, warehouse):
        data = parse(WarehouseIn, warehouse)
        with self.platform.uow() as uow:
            return dump(LocationOut, handlers.create_warehouse(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_warehouse(self, warehouse_id, changes):
        data = parse(WarehouseUpdateIn, changes)
        with self.platform.uow() as uow:
            return dump(LocationOut, handlers.update_warehouse(uow, parse_id(warehouse_id, "warehouse_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_warehouses(self):
        with self.platform.uow() as uow:
            rows = handlers.list_warehouses(uow)
            return {"items": [dump(LocationOut, w) for w in rows], "total": len(rows)}

    # --- catalog ---------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_category(self, category):
        data = parse(CategoryIn, category)
        with self.platform.uow() as uow:
            created = catalog.create_category(uow, data)
            return next(dump(CategoryOut, c) for c in catalog.list_categories(uow) if c["id"] == created.id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_categories(self):
        with self.platform.uow() as uow:
            rows = catalog.list_categories(uow)
            return {"items": [dump(CategoryOut, c) for c in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_part(self, part):
        data = parse(PartIn, part)
        with self.platform.uow() as uow:
            return dump(PartOut, catalog.create_part(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_part(self, part_id, changes):
        data = parse(PartUpdateIn, changes)
        with self.platform.uow() as uow:
            return dump(PartOut, catalog.update_part(uow, parse_id(part_id, "part_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_part(self, part_id):
        with self.platform.uow() as uow:
            return dump(PartOut, catalog.get_part(uow, parse_id(part_id, "part_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_parts(self, q=None, category_id=None, barcode=None, active=None, offset=0, limit=500):
        offset, limit = window(offset, limit, 500)
        with self.platform.uow() as uow:
            rows, total = catalog.list_parts(uow, q, _optional_id(category_id, "category_id"), barcode,
                                             _flag(active, "active"), offset, limit)
            return page([dump(PartOut, p) for p in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_service_item(self, item):
        data = parse(ServiceItemIn, item)
        with self.platform.uow() as uow:
            return dump(ServiceItemOut, catalog.create_service_item(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_service_item(self, service_item_id, changes):
        data = parse(ServiceItemUpdateIn, changes)
        with self.platform.uow() as uow:
            return dump(ServiceItemOut, catalog.update_service_item(
                uow, parse_id(service_item_id, "service_item_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_service_items(self, q=None, active=None):
        with self.platform.uow() as uow:
            rows = catalog.list_service_items(uow, q, _flag(active, "active"))
            return {"items": [dump(ServiceItemOut, i) for i in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_service_items(self, ids):
        """For tickets' settlement: the priced service items with these ids (unknown ids are left out)."""
        if not isinstance(ids, list) or len(ids) > 500:
            raise field_error("ids", "must be a list of at most 500 ids")
        wanted = [parse_id(i, f"ids.{n}") for n, i in enumerate(ids)]
        with self.platform.uow() as uow:
            return [dump(ServiceItemOut, i) for i in catalog.list_service_items(uow, ids=wanted)]

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def import_catalog(self, kind, format, content_base64):
        try:
            content = base64.b64decode(content_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise field_error("file", "content is not valid base64") from None
        if len(content) > MAX_UPLOAD_BYTES:
            raise field_error("file", f"at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        with self.platform.uow() as uow:
            return catalog.import_catalog(uow, kind, format, content)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def export_catalog(self, kind, format):
        if format not in tabular.FORMATS:
            raise field_error("format", "must be csv or xlsx")
        with self.platform.uow() as uow:
            filename, content = catalog.export_catalog(uow, kind, format)
            return _file(filename, format, content)

    # --- stock -------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def receive_stock(self, warehouse_id, lines, note=None):
        data = parse(ReceiveIn, {"lines": lines, "note": note})
        with self.platform.uow() as uow:
            moves = handlers.receive_stock(uow, parse_id(warehouse_id, "warehouse_id"), data)
            return [dump(MoveOut, m) for m in moves]

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def issue_stock(self, warehouse_id, lines, note=None):
        data = parse(IssueIn, {"lines": lines, "note": note})
        with self.platform.uow() as uow:
            moves = handlers.issue_stock(uow, parse_id(warehouse_id, "warehouse_id"), data)
            return [dump(MoveOut, m) for m in moves]

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def stocktake(self, warehouse_id, lines, note=None):
        data = parse(StocktakeIn, {"lines": lines, "note": note})
        with self.platform.uow() as uow:
            moves = handlers.stocktake(uow, parse_id(warehouse_id, "warehouse_id"), data)
            return {"items": [dump(MoveOut, m) for m in moves], "total": len(moves)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_stock(self, location_id):
        with self.platform.uow() as uow:
            return dump(StockOut, handlers.get_stock(uow, parse_id(location_id, "location_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_personal_stock(self, technician_id):
        with self.platform.uow() as uow:
            return dump(StockOut, handlers.get_personal_stock(uow, parse_id(technician_id, "technician_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def check_stock_available(self, technician_id, parts):
        data = parse(CheckStockIn, {"technician_id": technician_id, "parts": parts})
        with self.platform.uow() as uow:
            return handlers.check_stock_available(uow, data)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_moves(self, ref_id=None, part_id=None, location_id=None, offset=0, limit=100, kind=None,
                   technician_id=None, customer_id=None, date_from=None, date_to=None):
        offset, limit = window(offset, limit, 500)
        filters = parse(MoveFilter, {"ref_id": ref_id, "part_id": part_id, "location_id": location_id,
                                     "kind": kind, "technician_id": technician_id, "customer_id": customer_id,
                                     "date_from": date_from, "date_to": date_to})
        with self.platform.uow() as uow:
            rows, total = handlers.list_moves(uow, offset=offset, limit=limit, **filters.model_dump())
            return page([dump(MoveOut, m) for m in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def check_ledger(self):
        """Recompute every balance from the ledger; `agree` must always be true."""
        with self.platform.uow() as uow:
            return handlers.check_ledger(uow)

    # --- requisitions and returns -------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_requisition(self, requisition):
        data = parse(RequisitionIn, requisition)
        with self.platform.uow() as uow:
            return dump(RequisitionOut, handlers.request_requisition(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_return(self, stock_return):
        data = parse(ReturnIn, stock_return)
        with self.platform.uow() as uow:
            return dump(RequisitionOut, handlers.request_return(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def approve_requisition(self, requisition_id, lines=None):
        data = parse(ApprovalIn, {"lines": lines})
        with self.platform.uow() as uow:
            return dump(RequisitionOut, handlers.approve_requisition(
                uow, parse_id(requisition_id, "requisition_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reject_requisition(self, requisition_id, reason):
        data = parse(RejectIn, {"reason": reason})
        with self.platform.uow() as uow:
            return dump(RequisitionOut, handlers.reject_requisition(
                uow, parse_id(requisition_id, "requisition_id"), data.reason))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_requisition(self, requisition_id):
        with self.platform.uow() as uow:
            return dump(RequisitionOut, handlers.get_requisition(uow, parse_id(requisition_id, "requisition_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_requisitions(self, status=None, technician_id=None, offset=0, limit=50, kind=None, warehouse_id=None):
        if status is not None and status not in domain.REQUISITION_STATUSES:
            raise field_error("status", f"must be one of {', '.join(domain.REQUISITION_STATUSES)}")
        if kind is not None and kind not in (domain.ISSUE, domain.RETURN_REQUEST):
            raise field_error("kind", "must be issue or return")
        offset, limit = window(offset, limit, 200)
        with self.platform.uow() as uow:
            rows, total = handlers.list_requisitions(uow, status, _optional_id(technician_id, "technician_id"),
                                                     offset, limit, kind, _optional_id(warehouse_id, "warehouse_id"))
            return page([dump(RequisitionOut, r) for r in rows], total, offset, limit)

    # --- transfers ---------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_transfer(self, transfer):
        data = parse(TransferIn, transfer)
        with self.platform.uow() as uow:
            return dump(TransferOut, handlers.create_transfer(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def receive_transfer(self, transfer_id, receipt=None):
        data = parse(TransferReceiveIn, receipt or {})
        with self.platform.uow() as uow:
            return dump(TransferOut, handlers.receive_transfer(uow, parse_id(transfer_id, "transfer_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_transfer(self, transfer_id):
        with self.platform.uow() as uow:
            return dump(TransferOut, handlers.get_transfer(uow, parse_id(transfer_id, "transfer_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_transfers(self, status=None, warehouse_id=None, offset=0, limit=50):
        if status is not None and status not in domain.TRANSFER_STATUSES:
            raise field_error("status", f"must be one of {', '.join(domain.TRANSFER_STATUSES)}")
        offset, limit = window(offset, limit, 200)
        with self.platform.uow() as uow:
            rows, total = handlers.list_transfers(uow, status, _optional_id(warehouse_id, "warehouse_id"),
                                                  offset, limit)
            return page([dump(TransferOut, t) for t in rows], total, offset, limit)

    # --- shortfalls and old parts -------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_shortfalls(self, status=None):
        if status is not None and status not in ("open", "resolved"):
            raise field_error("status", "must be open or resolved")
        with self.platform.uow() as uow:
            rows = handlers.list_shortfalls(uow, status)
            return {"items": [dump(ShortfallOut, s) for s in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def resolve_shortfall(self, shortfall_id, resolution):
        data = parse(ResolveIn, {"resolution": resolution})
        with self.platform.uow() as uow:
            return dump(ShortfallOut, handlers.resolve_shortfall(
                uow, parse_id(shortfall_id, "shortfall_id"), data.resolution))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_old_parts(self, status=None, technician_id=None, offset=0, limit=50):
        if status is not None and status not in domain.OLD_PART_STATUSES:
            raise field_error("status", f"must be one of {', '.join(domain.OLD_PART_STATUSES)}")
        offset, limit = window(offset, limit, 200)
        with self.platform.uow() as uow:
            rows, total = handlers.list_old_parts(uow, status, _optional_id(technician_id, "technician_id"),
                                                  offset, limit)
            return page([dump(OldPartOut, o) for o in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def return_old_part(self, old_part_id, receipt):
        data = parse(OldPartReturnIn, receipt)
        with self.platform.uow() as uow:
            return dump(OldPartOut, handlers.return_old_part(uow, parse_id(old_part_id, "old_part_id"), data))

    # --- reports -----------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def stock_report(self, warehouse_id=None, part_id=None, category_id=None, below_minimum=False,
                     include_children=True, offset=0, limit=100, by_part=False):
        offset, limit = window(offset, limit, 500)
        with self.platform.uow() as uow:
            rows, total = reports.stock_report(
                uow, _optional_id(warehouse_id, "warehouse_id"), _optional_id(part_id, "part_id"),
                _optional_id(category_id, "category_id"), bool(_flag(below_minimum, "below_minimum")),
                _flag(include_children, "include_children") is not False, offset, limit,
                bool(_flag(by_part, "by_part")))
            return page(_json(rows), total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def personal_holdings(self, technician_id=None, part_id=None, offset=0, limit=100):
        offset, limit = window(offset, limit, 500)
        with self.platform.uow() as uow:
            rows, total = reports.personal_holdings(uow, _optional_id(technician_id, "technician_id"),
                                                    _optional_id(part_id, "part_id"), offset, limit)
            return page(_json(rows), total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def consumption_report(self, group_by="work_order", date_from=None, date_to=None, technician_id=None,
                           customer_id=None):
        filters = parse(ConsumptionFilter, {"group_by": group_by, "date_from": date_from, "date_to": date_to,
                                            "technician_id": technician_id, "customer_id": customer_id})
        with self.platform.uow() as uow:
            rows = reports.consumption_report(uow, **filters.model_dump())
            return {"items": _json(rows), "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def export_report(self, report, format, filters=None):
        filters = dict(filters or {})
        if report == "moves":
            filters = parse(MoveFilter, filters).model_dump()
        elif report == "consumption":
            filters = parse(ConsumptionFilter, filters).model_dump()
        elif report == "stock":
            filters = {"warehouse_id": _optional_id(filters.get("warehouse_id"), "warehouse_id"),
                       "part_id": _optional_id(filters.get("part_id"), "part_id"),
                       "category_id": _optional_id(filters.get("category_id"), "category_id"),
                       "below_minimum": bool(_flag(filters.get("below_minimum"), "below_minimum")),
                       "by_part": bool(_flag(filters.get("by_part"), "by_part"))}
        elif report == "personal":
            filters = {"technician_id": _optional_id(filters.get("technician_id"), "technician_id"),
                       "part_id": _optional_id(filters.get("part_id"), "part_id")}
        with self.platform.uow() as uow:
            filename, content = reports.export_report(uow, report, format, filters)
            return _file(filename, format, content)

    # --- events ------------------------------------------------------------------------------
    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.consume_parts_for_work_order(
            uow, event.data))

    # ticket.reopened / ticket.cancelled are read by type name from the envelope's data (the fields
    # inventory needs: ticket_id, number, from_status, reason), so they work before and after the
    # tickets contracts declare them.
    @on_event("tickets", "ticket.reopened")
    def on_ticket_reopened(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.reverse_consumption(uow, event.data))

    @on_event("tickets", "ticket.cancelled")
    def on_ticket_cancelled(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.reverse_consumption(uow, event.data))


def _json(rows: list[dict]) -> list[dict]:
    """Report rows (UUID, Decimal, datetime values) as JSON-safe values: Decimal as strings."""
    return to_jsonable_python(rows)
