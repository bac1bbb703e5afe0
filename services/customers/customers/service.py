"""nameko entrypoints of the customers service: validate → handler → DTO."""
import base64
import binascii
import logging

from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from svc_common.consumer import on_event
from svc_common.context import RequestContext, system_context
from svc_common.contracts import ServiceSnapshotV1
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS, NotFound, field_error
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.uow import UnitOfWork
from svc_common.validation import dump, page, parse, parse_id, window

from . import handlers
from .models import PLATFORM
from .settings import customers_settings
from .schemas import (
    BindIn,
    ChangeRequestIn,
    ChangeRequestOut,
    CustomerIn,
    CustomerOut,
    CustomerPatch,
    CustomFieldIn,
    CustomFieldOrderIn,
    CustomFieldOut,
    CustomFieldPatch,
    DecisionIn,
    EquipmentIn,
    EquipmentOut,
    EquipmentPatch,
    FaultReportIn,
    FaultReportOut,
    HistoryOut,
    NearbyCustomerOut,
    ProductTemplateIn,
    ProductTemplateOut,
    ProductTemplatePatch,
    QrBatchIn,
    QrBatchOut,
    QrCodeOut,
    ReminderRuleIn,
    ReminderRuleOut,
)

log = logging.getLogger("customers.reminders")
MAX_IMPORT_BYTES = 10 * 1024 * 1024
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _opt_id(value, field):
    return parse_id(value, field) if value else None


def _opt_date(value, field):
    import datetime as dt
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise field_error(field, "must be a date (YYYY-MM-DD)") from None


class CustomersService(HealthRpc):
    name = "customers"
    platform = Platform(PLATFORM)
    tickets = RpcProxy("tickets")

    # ------------------------------------------------------------------------- customers
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_customer(self, customer):
        data = parse(CustomerIn, customer)
        with self.platform.uow() as uow:
            return dump(CustomerOut, handlers.create_customer(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_customer(self, customer_id):
        with self.platform.uow() as uow:
            return dump(CustomerOut, handlers.get_customer(uow, parse_id(customer_id, "customer_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_customer(self, customer_id, changes):
        patch = parse(CustomerPatch, changes)
        with self.platform.uow() as uow:
            return dump(CustomerOut, handlers.update_customer(uow, parse_id(customer_id, "customer_id"), patch))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_customers(self, q=None, offset=0, limit=50, tag=None, owner_id=None, team_id=None):
        with self.platform.uow() as uow:
            offset, limit = window(offset, limit)
            rows, total = handlers.list_customers(uow, q, offset, limit, tag, _opt_id(owner_id, "owner_id"),
                                                  _opt_id(team_id, "team_id"))
            return page([dump(CustomerOut, c) for c in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def find_duplicate_customers(self, name=None, phone=None, exclude_id=None):
        if not name and not phone:
            raise field_error("name", "give a name or a phone")
        with self.platform.uow() as uow:
            matches = handlers.find_duplicates(uow, name, [phone], _opt_id(exclude_id, "exclude_id"))
            return {"items": [{"customer": dump(CustomerOut, c), "matched_on": fields} for c, fields in matches],
                    "total": len(matches)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def nearby_customers(self, latitude, longitude, radius_m=5000, limit=50):
        from decimal import Decimal, InvalidOperation
        try:
            lat, lng, radius = Decimal(str(latitude)), Decimal(str(longitude)), float(radius_m)
        except (InvalidOperation, ValueError):
            raise field_error("latitude", "latitude, longitude and radius_m must be numbers") from None
        if not -90 <= lat <= 90:
            raise field_error("latitude", "must be between -90 and 90")
        if not -180 <= lng <= 180:
            raise field_error("longitude", "must be between -180 and 180")
        if not 0 < radius <= 200_000:
            raise field_error("radius_m", "must be more than 0 and at most 200000")
        _, limit = window(0, limit)
        with self.platform.uow() as uow:
            rows = handlers.nearby_customers(uow, lat, lng, radius, limit)
            return {"items": [dump(NearbyCustomerOut, r) for r in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_customer_detail(self, customer_id):
        """The customer with its equipment, change requests, and work orders (asked of tickets)."""
        cid = parse_id(customer_id, "customer_id")
        with self.platform.uow() as uow:
            customer = dump(CustomerOut, handlers.get_customer(uow, cid))
            equipment = [dump(EquipmentOut, e) for e in handlers.list_equipment(uow, cid)]
            requests, _ = handlers.list_change_requests(uow, None, cid, 0, 20)
            changes = [dump(ChangeRequestOut, r) for r in requests]
            service = [{**dump(HistoryOut, h), "equipment_id": str(h.equipment_id)}
                       for h in handlers.customer_service_events(uow, cid)]
            faults = [dump(FaultReportOut, r) for r in handlers.list_fault_reports(uow, None, 0, 20, cid)[0]]
        # Outside the transaction: no connection is held while tickets answers.
        orders = self.tickets.list_tickets(customer_id=str(cid), offset=0, limit=20)
        return {"customer": customer, "equipment": equipment, "change_requests": changes,
                "work_orders": orders["items"], "work_orders_total": orders["total"],
                "service_events": service, "fault_reports": faults}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def import_customers(self, content_base64, format="xlsx"):
        try:
            content = base64.b64decode(content_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise field_error("file", "not base64") from None
        if len(content) > MAX_IMPORT_BYTES:
            raise field_error("file", "at most 10 MB")
        with self.platform.uow() as uow:
            return handlers.import_customers(uow, content, format)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def export_customers(self, format="xlsx"):
        with self.platform.uow() as uow:
            content = handlers.export_customers(uow, format, uow.ctx.locale)
        return {"content_base64": base64.b64encode(content).decode(), "media_type": MEDIA_TYPES[format],
                "filename": f"customers.{format}"}

    # ----------------------------------------------------------------------- custom fields
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_custom_fields(self, entity="customer"):
        with self.platform.uow() as uow:
            return {"items": [dump(CustomFieldOut, f) for f in handlers.list_fields(uow, entity)]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def add_custom_field(self, field):
        data = parse(CustomFieldIn, field)
        with self.platform.uow() as uow:
            row = handlers.add_field(uow, data)
            return dump(CustomFieldOut, {**_field_dict(row), "builtin": False})

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_custom_field(self, entity, key, changes):
        patch = parse(CustomFieldPatch, changes)
        with self.platform.uow() as uow:
            return dump(CustomFieldOut, _field_dict(handlers.update_field(uow, entity, key, patch)))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def delete_custom_field(self, entity, key):
        with self.platform.uow() as uow:
            handlers.delete_field(uow, entity, key)
        return {"deleted": key}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reorder_custom_fields(self, order):
        data = parse(CustomFieldOrderIn, order)
        with self.platform.uow() as uow:
            return {"items": [dump(CustomFieldOut, f) for f in handlers.reorder_fields(uow, data)]}

    # --------------------------------------------------------------------- change requests
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_customer_change(self, customer_id, request):
        data = parse(ChangeRequestIn, request)
        with self.platform.uow() as uow:
            return dump(ChangeRequestOut, handlers.request_change(uow, parse_id(customer_id, "customer_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_change_requests(self, status=None, customer_id=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self.platform.uow() as uow:
            rows, total = handlers.list_change_requests(uow, status, _opt_id(customer_id, "customer_id"),
                                                        offset, limit)
            return page([dump(ChangeRequestOut, r) for r in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_change_request(self, request_id):
        with self.platform.uow() as uow:
            return dump(ChangeRequestOut, handlers.get_change_request(uow, parse_id(request_id, "request_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def approve_change_request(self, request_id, decision=None):
        data = parse(DecisionIn, decision)
        with self.platform.uow() as uow:
            return dump(ChangeRequestOut, handlers.approve_change(uow, parse_id(request_id, "request_id"), data.note))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reject_change_request(self, request_id, decision=None):
        data = parse(DecisionIn, decision)
        with self.platform.uow() as uow:
            return dump(ChangeRequestOut, handlers.reject_change(uow, parse_id(request_id, "request_id"), data.note))

    # ------------------------------------------------------------------- product templates
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_product_template(self, template):
        data = parse(ProductTemplateIn, template)
        with self.platform.uow() as uow:
            return dump(ProductTemplateOut, handlers.create_template(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_product_templates(self, q=None):
        with self.platform.uow() as uow:
            rows = handlers.list_templates(uow, q)
            return {"items": [dump(ProductTemplateOut, t) for t in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_product_template(self, template_id):
        with self.platform.uow() as uow:
            return dump(ProductTemplateOut, handlers.get_template(uow, parse_id(template_id, "template_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_product_template(self, template_id, changes):
        patch = parse(ProductTemplatePatch, changes)
        with self.platform.uow() as uow:
            return dump(ProductTemplateOut, handlers.update_template(uow, parse_id(template_id, "template_id"), patch))

    # ---------------------------------------------------------------------------- equipment
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def register_equipment(self, customer_id, equipment):
        data = parse(EquipmentIn, equipment)
        with self.platform.uow() as uow:
            return dump(EquipmentOut, handlers.register_equipment(uow, parse_id(customer_id, "customer_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_equipment(self, equipment_id):
        with self.platform.uow() as uow:
            return dump(EquipmentOut, handlers.get_equipment(uow, parse_id(equipment_id, "equipment_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_equipment(self, equipment_id, changes):
        patch = parse(EquipmentPatch, changes)
        with self.platform.uow() as uow:
            return dump(EquipmentOut, handlers.update_equipment(uow, parse_id(equipment_id, "equipment_id"), patch))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_equipment(self, customer_id=None, status=None, q=None, maintenance_before=None, warranty_before=None,
                       offset=0, limit=200):
        offset, limit = window(offset, limit, maximum=500)
        with self.platform.uow() as uow:
            filters = (_opt_id(customer_id, "customer_id"), status, q,
                       _opt_date(maintenance_before, "maintenance_before"), _opt_date(warranty_before, "warranty_before"))
            rows = handlers.list_equipment(uow, *filters, offset, limit)
            total = len(rows) if offset == 0 and len(rows) < limit else handlers.count_equipment(uow, *filters)
            return {"items": [dump(EquipmentOut, e) for e in rows], "total": total}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_equipment_history(self, equipment_id):
        with self.platform.uow() as uow:
            rows = handlers.equipment_history(uow, parse_id(equipment_id, "equipment_id"))
            return {"items": [dump(HistoryOut, h) for h in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_service_snapshot(self, customer_id, equipment_id=None):
        with self.platform.uow() as uow:
            snapshot = handlers.service_snapshot(
                uow, parse_id(customer_id, "customer_id"),
                parse_id(equipment_id, "equipment_id") if equipment_id else None, utcnow().date())
            return ServiceSnapshotV1.model_validate(snapshot).model_dump(mode="json")

    # ----------------------------------------------------------------------------- QR codes
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_qr_batch(self, batch):
        data = parse(QrBatchIn, batch)
        with self.platform.uow() as uow:
            created = handlers.create_batch(uow, data)
            return dump(QrBatchOut, handlers.get_batch(uow, created.id))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_qr_batches(self, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self.platform.uow() as uow:
            rows, total = handlers.list_batches(uow, offset, limit)
            return page([dump(QrBatchOut, b) for b in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_qr_batch(self, batch_id):
        with self.platform.uow() as uow:
            return dump(QrBatchOut, handlers.get_batch(uow, parse_id(batch_id, "batch_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_qr_codes(self, batch_id=None, status=None, offset=0, limit=100):
        offset, limit = window(offset, limit, maximum=1000)
        if status not in (None, "unused", "bound"):
            raise field_error("status", "must be unused or bound")
        with self.platform.uow() as uow:
            rows, total = handlers.list_codes(uow, _opt_id(batch_id, "batch_id"), status, offset, limit)
            return page([dump(QrCodeOut, c) for c in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_qr_batch_codes(self, batch_id):
        """Every (seq, code) of a batch, for the gateway's label export."""
        bid = parse_id(batch_id, "batch_id")
        with self.platform.uow() as uow:
            return {"batch": dump(QrBatchOut, handlers.get_batch(uow, bid)),
                    "codes": handlers.batch_code_strings(uow, bid)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_qr_code(self, code):
        with self.platform.uow() as uow:
            return dump(QrCodeOut, handlers.get_code(uow, code))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def scan_qr_code(self, code):
        with self.platform.uow() as uow:
            result = handlers.scan_code(uow, code)
            result["equipment"] = dump(EquipmentOut, result["equipment"]) if result["equipment"] else None
            result["customer"] = dump(CustomerOut, result["customer"]) if result["customer"] else None
            result["batch_id"] = str(result["batch_id"])
            return result

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def bind_qr_code(self, code, binding):
        data = parse(BindIn, binding)
        with self.platform.uow() as uow:
            row, equipment = handlers.bind_code(uow, code, data)
            return {"code": dump(QrCodeOut, row), "equipment": dump(EquipmentOut, equipment)}

    # -- public (no login): the tenant comes from the code itself
    def _public_uow(self, code) -> UnitOfWork:
        with self.platform.db.session(None) as session:
            tenant_id = handlers.tenant_of_code(session, code)
        if tenant_id is None:
            raise NotFound(f"QR code {code} not found", [{"field": "code", "message": "not found"}])
        data = self.platform.worker_ctx.data
        ctx = RequestContext(tenant_id=tenant_id, actor_role="public", correlation_id=data.get("correlation_id"),
                             locale=data.get("locale") or "zh-CN")
        return UnitOfWork(self.platform.db, ctx)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def public_scan(self, code):
        from pydantic_core import to_jsonable_python
        with self._public_uow(code) as uow:
            return to_jsonable_python(handlers.public_scan(uow, code, utcnow().date()))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def report_fault(self, code, report):
        data = parse(FaultReportIn, report)
        with self._public_uow(code) as uow:
            row = handlers.report_fault(uow, code, data, utcnow().date())
            return {"number": row.number, "created_at": row.created_at.isoformat()}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_fault_reports(self, equipment_id=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self.platform.uow() as uow:
            rows, total = handlers.list_fault_reports(uow, _opt_id(equipment_id, "equipment_id"), offset, limit)
            return page([dump(FaultReportOut, r) for r in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_fault_photo(self, report_id):
        with self.platform.uow() as uow:
            content, media_type = handlers.fault_photo(uow, parse_id(report_id, "report_id"))
        return {"content_base64": base64.b64encode(content).decode(), "media_type": media_type}

    # ---------------------------------------------------------------------------- reminders
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_reminder_rules(self):
        with self.platform.uow() as uow:
            return {"items": [dump(ReminderRuleOut, r) for r in handlers.reminder_rules(uow)]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def set_reminder_rule(self, kind, rule):
        data = parse(ReminderRuleIn, rule)
        with self.platform.uow() as uow:
            return dump(ReminderRuleOut, handlers.set_reminder_rule(uow, kind, data))

    @timer(interval=customers_settings().reminder_interval_seconds)
    def evaluate_reminders(self):
        """预警: every tenant's due reminders, each emitted once (see handlers.evaluate_reminders)."""
        today = utcnow().date()
        with self.platform.db.session(None) as session:
            tenants = handlers.tenants_with_equipment(session)
        totals: dict[str, int] = {}
        for tenant_id in tenants:
            cursor = None
            while True:
                with UnitOfWork(self.platform.db, system_context(tenant_id)) as uow:
                    result = handlers.evaluate_reminders(uow, today, cursor=cursor)
                for kind, n in result["sent"].items():
                    totals[kind] = totals.get(kind, 0) + n
                cursor = result["cursor"]
                if cursor is None:
                    break
        if any(totals.values()):
            log.info("reminders sent", extra={"reminders": totals})

    # ------------------------------------------------------------------ service history
    def _history(self, envelope):
        # Most orders have no equipment: their events are acknowledged without a claim or a write.
        self.platform.handle_once(
            envelope,
            lambda uow, event: handlers.apply_ticket_event(uow, event.type, event.data, event.occurred_at),
            relevant=lambda uow, event: handlers.history_equipment_id(uow, event.type, event.data) is not None)

    @on_event("tickets", "ticket.created")
    def on_ticket_created(self, envelope):
        self._history(envelope)

    @on_event("tickets", "ticket.assigned")
    def on_ticket_assigned(self, envelope):
        self._history(envelope)

    @on_event("tickets", "ticket.checked_in")
    def on_ticket_checked_in(self, envelope):
        self._history(envelope)

    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        self._history(envelope)

    @on_event("tickets", "ticket.cancelled")
    def on_ticket_cancelled(self, envelope):
        self._history(envelope)

    @on_event("tickets", "ticket.closed")
    def on_ticket_closed(self, envelope):
        self._history(envelope)

    @on_event("tickets", "ticket.reopened")
    def on_ticket_reopened(self, envelope):
        self._history(envelope)


def _field_dict(row) -> dict:
    return {"id": row.id, "entity": row.entity, "key": row.key, "label": row.label, "type": row.type,
            "options": row.options, "required": row.required, "position": row.position, "builtin": False}

