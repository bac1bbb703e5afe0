"""nameko entrypoints of the inventory service: validate → handler → DTO."""
from nameko.rpc import rpc

from svc_common.consumer import on_event
from svc_common.errors import EXPECTED_ERRORS, field_error
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.validation import dump, page, parse, parse_id, window

from . import domain, handlers
from .models import PLATFORM
from .schemas import (
    ApprovalIn, LocationOut, MoveOut, PartIn, PartOut, ReceiveIn, RejectIn, RequisitionIn, RequisitionOut,
    ShortfallOut, StockOut, WarehouseIn,
)


def _optional_id(value, field: str):
    return parse_id(value, field) if value else None


class InventoryService(HealthRpc):
    name = "inventory"
    platform = Platform(PLATFORM)

    # --- catalog and warehouses ---------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_warehouse(self, warehouse):
        data = parse(WarehouseIn, warehouse)
        with self.platform.uow() as uow:
            return dump(LocationOut, handlers.create_warehouse(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_warehouses(self):
        with self.platform.uow() as uow:
            rows = handlers.list_warehouses(uow)
            return {"items": [dump(LocationOut, w) for w in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_part(self, part):
        data = parse(PartIn, part)
        with self.platform.uow() as uow:
            return dump(PartOut, handlers.create_part(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_parts(self):
        with self.platform.uow() as uow:
            rows = handlers.list_parts(uow)
            return {"items": [dump(PartOut, p) for p in rows], "total": len(rows)}

    # --- stock -------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def receive_stock(self, warehouse_id, lines, note=None):
        data = parse(ReceiveIn, {"lines": lines, "note": note})
        with self.platform.uow() as uow:
            moves = handlers.receive_stock(uow, parse_id(warehouse_id, "warehouse_id"), data)
            return [dump(MoveOut, m) for m in moves]

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_stock(self, location_id):
        with self.platform.uow() as uow:
            return dump(StockOut, handlers.get_stock(uow, parse_id(location_id, "location_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_personal_stock(self, technician_id):
        with self.platform.uow() as uow:
            return dump(StockOut, handlers.get_personal_stock(uow, parse_id(technician_id, "technician_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_moves(self, ref_id=None, part_id=None, location_id=None, offset=0, limit=100):
        offset, limit = window(offset, limit, 500)
        with self.platform.uow() as uow:
            rows, total = handlers.list_moves(uow, _optional_id(ref_id, "ref_id"), _optional_id(part_id, "part_id"),
                                              _optional_id(location_id, "location_id"), offset, limit)
            return page([dump(MoveOut, m) for m in rows], total, offset, limit)

    # --- requisitions ------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_requisition(self, requisition):
        data = parse(RequisitionIn, requisition)
        with self.platform.uow() as uow:
            return dump(RequisitionOut, handlers.request_requisition(uow, data))

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
    def list_requisitions(self, status=None, technician_id=None, offset=0, limit=50):
        if status is not None and status not in domain.REQUISITION_STATUSES:
            raise field_error("status", f"must be one of {', '.join(domain.REQUISITION_STATUSES)}")
        offset, limit = window(offset, limit, 200)
        with self.platform.uow() as uow:
            rows, total = handlers.list_requisitions(uow, status, _optional_id(technician_id, "technician_id"),
                                                     offset, limit)
            return page([dump(RequisitionOut, r) for r in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_shortfalls(self):
        with self.platform.uow() as uow:
            rows = handlers.list_shortfalls(uow)
            return {"items": [dump(ShortfallOut, s) for s in rows], "total": len(rows)}

    # --- events ------------------------------------------------------------------------------
    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.consume_parts_for_work_order(
            uow, event.payload()))
