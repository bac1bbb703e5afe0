"""nameko entrypoints of the desk, mixed into the tickets service (`TicketsService(DeskRpc, ...)`):
thin — validate → handler → DTO. Uses the service's `platform`, `customers` and `inventory`."""
import base64
import logging
import uuid

from nameko.exceptions import MethodNotFound, UnknownService
from nameko.rpc import rpc
from nameko.timer import timer
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from svc_common.consumer import on_event
from svc_common.context import RequestContext, system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS, Conflict, NotFound, ServiceError, field_error
from svc_common.uow import UnitOfWork
from svc_common.validation import dump, page, parse, parse_id, window
from tickets import handlers as tickets
from tickets.models import StoredFile, Technician
from tickets.schemas import TicketOut
from tickets.storage import default_storage

from . import domain, handlers, knowledge, plans, records, reports_pdf, templates
from . import settlement as money
from ..settings import tickets_settings
from .schemas import (
    AnnouncementIn, AnnouncementOut, ArticleIn, ArticleOut, ArticlePatch, BatchSettleIn, ComponentsIn, ConvertIn,
    DeskSettingsIn, DeskSettingsOut, ManualVisitIn, NoteTemplateIn, NoteTemplateOut, OccurrenceOut, OptionalNoteIn,
    PlanIn, PlanOut, ReportSendIn, ReportSentOut, RequestAssignIn, RequestCompleteIn, RequestIn, RequestNoteIn,
    RequestNoteOut, RequestOut, RequestReasonIn, ReportTemplateIn, ReportTemplateOut, RequestTypeIn, ServiceRecordIn,
    ServiceRecordOut, RequestTypeOut, SettlementIn, SettlementOut, VisitOut, VisitRateIn,
)

log = logging.getLogger(__name__)

_ = OccurrenceOut  # documented shape of plan occurrences


def _stale() -> Conflict:
    return Conflict("changed by someone else; reload and retry", [{"field": "version", "message": "concurrent update"}])


def plan_out(plan) -> dict:
    return PlanOut.model_validate({**{c: getattr(plan, c) for c in PlanOut.model_fields if c != "state"},
                                   "state": plans.state(plan)}).model_dump(mode="json")


def settlement_out(row) -> dict:
    return dump(SettlementOut, row)


class DeskRpc:
    """Service desk, plans, settlement, return visits, knowledge base, announcements, service reports."""

    def _uow(self) -> UnitOfWork:
        return self.platform.uow()

    def _request(self, fn, request_id, *args):
        try:
            with self._uow() as uow:
                return dump(RequestOut, fn(uow, parse_id(request_id, "request_id"), *args))
        except StaleDataError:
            raise _stale() from None

    def _snapshot(self, customer_id, equipment_id) -> dict:
        """The customer as a work order needs it: tickets' replica, else customers over RPC (outside
        any transaction of ours)."""
        with self._uow() as uow:
            found = tickets.snapshot_from_replica(uow, customer_id, equipment_id, utcnow().date())
        if found is not None:
            return found
        return self.customers.get_service_snapshot(customer_id=str(customer_id),
                                                   equipment_id=str(equipment_id) if equipment_id else None)

    # -- settings, types, templates -------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_desk_settings(self):
        with self._uow() as uow:
            return dump(DeskSettingsOut, handlers.get_settings(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_desk_settings(self, settings):
        data = parse(DeskSettingsIn, settings)
        with self._uow() as uow:
            return dump(DeskSettingsOut, handlers.update_settings(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_request_types(self):
        with self._uow() as uow:
            return {"items": [dump(RequestTypeOut, t) for t in handlers.list_request_types(uow)]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def save_request_type(self, request_type):
        data = parse(RequestTypeIn, request_type)
        with self._uow() as uow:
            return dump(RequestTypeOut, handlers.save_request_type(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_note_templates(self):
        with self._uow() as uow:
            return {"items": [dump(NoteTemplateOut, t) for t in handlers.list_templates(uow)]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_note_template(self, template):
        data = parse(NoteTemplateIn, template)
        with self._uow() as uow:
            return dump(NoteTemplateOut, handlers.create_template(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def delete_note_template(self, template_id):
        with self._uow() as uow:
            handlers.delete_template(uow, parse_id(template_id, "template_id"))
        return {"deleted": True}

    # -- service requests --------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_service_request(self, request):
        data = parse(RequestIn, request)
        with self._uow() as uow:
            return dump(RequestOut, handlers.create_request(uow, data, default_storage()))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_service_request(self, request_id):
        with self._uow() as uow:
            return dump(RequestOut, handlers.get_request(uow, parse_id(request_id, "request_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_service_requests(self, status=None, event_type=None, channel=None, assignee_id=None, scope=None,
                              exceptions=False, q=None, customer_id=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self._uow() as uow:
            rows, total = handlers.list_requests(
                uow, status, event_type, channel, parse_id(assignee_id, "assignee_id") if assignee_id else None,
                scope, bool(exceptions), q, parse_id(customer_id, "customer_id") if customer_id else None,
                offset, limit)
            return page([dump(RequestOut, r) for r in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def service_request_counts(self):
        with self._uow() as uow:
            return handlers.status_counts(uow)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_service_request_notes(self, request_id):
        with self._uow() as uow:
            return {"items": [dump(RequestNoteOut, n) for n in handlers.notes(uow, parse_id(request_id, "request_id"))]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def add_service_request_note(self, request_id, note):
        data = parse(RequestNoteIn, note)
        try:
            with self._uow() as uow:
                return dump(RequestNoteOut, handlers.add_note(uow, parse_id(request_id, "request_id"), data))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def assign_service_request(self, request_id, assignment):
        data = parse(RequestAssignIn, assignment)
        return self._request(handlers.assign_request, request_id, data.assignee_id, data.note)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_service_request_components(self, request_id, components):
        return self._request(handlers.update_components, request_id, parse(ComponentsIn, components).components)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_request_components(self):
        return {"items": [{"code": code, "name": zh, "name_en": en, "fields": fields}
                          for code, (zh, en, fields) in domain.COMPONENTS.items()]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def start_service_request(self, request_id):
        return self._request(handlers.start_request, request_id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def pause_service_request(self, request_id, pause):
        return self._request(handlers.pause_request, request_id, parse(RequestReasonIn, pause).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def resume_service_request(self, request_id):
        return self._request(handlers.resume_request, request_id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def complete_service_request(self, request_id, completion=None):
        return self._request(handlers.complete_request, request_id, parse(RequestCompleteIn, completion))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def cancel_service_request(self, request_id, cancellation):
        return self._request(handlers.cancel_request, request_id, parse(RequestReasonIn, cancellation).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reopen_service_request(self, request_id, reopening):
        return self._request(handlers.reopen_request, request_id, parse(RequestReasonIn, reopening).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_service_request_approval(self, request_id, approval=None):
        return self._request(handlers.request_approval, request_id, parse(OptionalNoteIn, approval).note)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def decide_service_request_approval(self, request_id, approve, decision=None):
        if not isinstance(approve, bool):
            raise field_error("approve", "must be true or false")
        return self._request(handlers.decide_approval, request_id, approve, parse(OptionalNoteIn, decision).note)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def convert_service_request(self, request_id, conversion=None):
        data = parse(ConvertIn, conversion)
        request_id = parse_id(request_id, "request_id")
        with self._uow() as uow:
            customer_id, equipment_id = handlers.conversion_target(uow, request_id, data)
        snapshot = self._snapshot(customer_id, equipment_id)
        try:
            with self._uow() as uow:
                request, ticket = handlers.convert_request(uow, request_id, data, snapshot)
        except StaleDataError:
            raise _stale() from None
        return {"request": dump(RequestOut, request), "ticket": dump(TicketOut, ticket)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_ticket_service_request(self, ticket_id):
        with self._uow() as uow:
            return dump(RequestOut, handlers.request_of_ticket(uow, parse_id(ticket_id, "ticket_id")))

    @on_event("customers", "equipment.fault_reported")
    def on_equipment_fault_reported(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_fault_report(uow, event.payload()))

    @on_event("tickets", "ticket.closed")
    def on_ticket_closed_close_request(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.close_with_ticket(
            uow, event.payload().ticket_id))

    @timer(interval=tickets_settings().desk_scan_seconds)
    def mark_service_requests_timed_out(self):
        now = utcnow()
        with self.platform.db.session(None) as session:
            found = handlers.timed_out_candidates(session, now)
        for tenant_id, request_id in found:
            try:
                with UnitOfWork(self.platform.db, system_context(tenant_id)) as uow:
                    handlers.mark_timed_out(uow, request_id, now)
            except StaleDataError:
                continue

    # -- plans -------------------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_plan(self, plan):
        data = parse(PlanIn, plan)
        with self._uow() as uow:
            return plan_out(plans.create_plan(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_plan(self, plan_id):
        with self._uow() as uow:
            return plan_out(plans.get_plan(uow, parse_id(plan_id, "plan_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_plans(self, customer_id=None, state=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self._uow() as uow:
            rows, total = plans.list_plans(uow, parse_id(customer_id, "customer_id") if customer_id else None,
                                           state, offset, limit)
            return page([plan_out(p) for p in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def pause_plan(self, plan_id, paused=True):
        with self._uow() as uow:
            return plan_out(plans.set_paused(uow, parse_id(plan_id, "plan_id"), bool(paused)))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def end_plan(self, plan_id):
        with self._uow() as uow:
            return plan_out(plans.end_plan(uow, parse_id(plan_id, "plan_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_plan_orders(self, plan_id):
        with self._uow() as uow:
            found = plans.plan_orders(uow, parse_id(plan_id, "plan_id"))
        return {"past": [{**p, "occurrence_at": p["occurrence_at"].isoformat(),
                          "ticket_id": str(p["ticket_id"]) if p["ticket_id"] else None} for p in found["past"]],
                "upcoming": [{"occurrence_at": u["occurrence_at"].isoformat(), "create_at": u["create_at"].isoformat()}
                             for u in found["upcoming"]]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def run_due_plans(self):
        """The timer's work on demand (an admin's "generate now"); safe beside the timer."""
        from tickets.domain import require_dispatcher
        require_dispatcher(self.platform.ctx.actor_role)
        return {"created": self._generate(only_tenant=self.platform.ctx.tenant_id)}

    @timer(interval=tickets_settings().plan_scan_seconds)
    def generate_planned_orders(self):
        self._generate()

    def _generate(self, only_tenant: uuid.UUID | None = None) -> int:
        now = utcnow()
        with self.platform.db.session(None) as session:
            found = plans.due_plans(session, now)
        created = 0
        for tenant_id, plan_id in found:
            if only_tenant is not None and tenant_id != only_tenant:
                continue
            try:
                with UnitOfWork(self.platform.db, system_context(tenant_id)) as uow:
                    plan = plans.get_plan(uow, plan_id)
                    author, customer_id, targets = plan.created_by, plan.customer_id, plans.targets(plan)
                snapshots = {}
                for target, equipment_id in targets:
                    with UnitOfWork(self.platform.db, system_context(tenant_id)) as uow:
                        snapshots[target] = tickets.snapshot_from_replica(uow, customer_id, equipment_id,
                                                                          now.date())
                    if snapshots[target] is None:
                        snapshots[target] = self.customers.get_service_snapshot(
                            customer_id=str(customer_id), equipment_id=str(equipment_id) if equipment_id else None)
                # Orders of a plan are made in the name of its author, with office rights.
                ctx = RequestContext(tenant_id=tenant_id, actor_id=author, actor_role="admin",
                                     correlation_id=f"plan-{plan_id}")
                with UnitOfWork(self.platform.db, ctx) as uow:
                    created += len(plans.generate_due(uow, plan_id, now, snapshots))
            except (StaleDataError, IntegrityError):
                continue  # another instance got there: the next scan looks again
            except Exception:
                log.exception("plan %s: generating its orders failed; retried at the next scan", plan_id)
        return created

    @on_event("customers", "equipment.maintenance_due")
    def on_equipment_maintenance_due(self, envelope):
        self._due_order(envelope, "maintenance")

    @on_event("customers", "equipment.maintenance_overdue")
    def on_equipment_maintenance_overdue(self, envelope):
        self._due_order(envelope, "maintenance")

    @on_event("customers", "equipment.inspection_due")
    def on_equipment_inspection_due(self, envelope):
        self._due_order(envelope, "inspection")

    @on_event("customers", "equipment.inspection_overdue")
    def on_equipment_inspection_overdue(self, envelope):
        self._due_order(envelope, "inspection")

    def _due_order(self, envelope, kind: str) -> None:
        """When the tenant's reminder rule asks for it, the due equipment gets its work order, once per
        equipment and due date (the key is the order's unique request id: a redelivery, the overdue
        reminder after the due one, or a second instance finds the order instead of making another)."""
        event = EventEnvelope.model_validate(envelope)
        due = event.payload()
        if not due.create_work_order:
            return
        ctx = RequestContext(tenant_id=event.tenant_id, actor_role="admin", correlation_id=event.correlation_id,
                             request_id=plans.due_order_key(kind, due.equipment_id, due.due_date))
        with UnitOfWork(self.platform.db, ctx) as uow:
            if tickets.created_by_this_request(uow) is not None:
                return
            snapshot = tickets.snapshot_from_replica(uow, due.customer_id, due.equipment_id, utcnow().date())
        if snapshot is None:
            snapshot = self.customers.get_service_snapshot(customer_id=str(due.customer_id),
                                                           equipment_id=str(due.equipment_id))
        try:
            with UnitOfWork(self.platform.db, ctx) as uow:
                plans.create_due_order(uow, kind, due, snapshot)
        except IntegrityError:
            return  # another instance created it a moment ago
        except ServiceError as exc:  # e.g. the tenant disabled the type: retrying would not help
            log.warning("no %s order for equipment %s due %s: %s", kind, due.equipment_id, due.due_date, exc)

    # -- back-filled service records (补录) ------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def submit_service_record(self, record):
        data = parse(ServiceRecordIn, record)
        snapshot = self._snapshot(data.customer_id, data.equipment_id)
        with self._uow() as uow:
            return dump(ServiceRecordOut, records.submit(uow, data, snapshot))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def verify_service_record(self, record_id, approve, verification=None):
        if not isinstance(approve, bool):
            raise field_error("approve", "must be true or false")
        try:
            with self._uow() as uow:
                return dump(ServiceRecordOut, records.verify(uow, parse_id(record_id, "record_id"), approve,
                                                             parse(OptionalNoteIn, verification).note))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_service_records(self, status=None, customer_id=None, equipment_id=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self._uow() as uow:
            rows, total = records.list_records(
                uow, status, parse_id(customer_id, "customer_id") if customer_id else None,
                parse_id(equipment_id, "equipment_id") if equipment_id else None, offset, limit)
            return page([dump(ServiceRecordOut, r) for r in rows], total, offset, limit)

    # -- settlement -----------------------------------------------------------------------------------
    def _prices(self, part_ids, item_ids) -> dict:
        parts, items = {}, {}
        for part_id in dict.fromkeys(str(p) for p in part_ids):
            try:
                part = self.inventory.get_part(part_id=part_id)
            except Exception as exc:  # unknown part: the line is named by the handler
                if type(exc).__name__ not in ("NotFound", "RemoteError"):
                    raise
                continue
            parts[part_id] = {"name": part.get("name"), "sale_price": part.get("sale_price"),
                              "cost_price": part.get("cost_price")}
        if item_ids:
            try:
                found = self.inventory.get_service_items(ids=list(dict.fromkeys(str(i) for i in item_ids)))
            except (MethodNotFound, UnknownService):
                found = []
            items = {str(i["id"]): {"name": i.get("name"), "price": i.get("price"), "cost_price": i.get("cost_price")}
                     for i in found}
        return {"parts": parts, "service_items": items}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def build_settlement(self, ticket_id, stage="final", settlement=None):
        if stage not in ("quote", "final"):
            raise field_error("stage", "quote or final")
        data = parse(SettlementIn, settlement)
        ticket_id = parse_id(ticket_id, "ticket_id")
        with self._uow() as uow:
            parts, items = money.receipt_refs(tickets.get_ticket(uow, ticket_id)) if stage == "final" and \
                data.from_receipt else ([], [])
        for line in [*data.fee_lines, *data.cost_lines]:
            if line.ref_id and line.kind == "part":
                parts.append(line.ref_id)
            elif line.ref_id and line.kind == "service_item":
                items.append(line.ref_id)
        prices = self._prices(parts, items)
        try:
            with self._uow() as uow:
                return settlement_out(money.build_settlement(uow, ticket_id, stage, data, prices))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_settlement(self, ticket_id, stage="final"):
        with self._uow() as uow:
            return settlement_out(money.get_settlement(uow, parse_id(ticket_id, "ticket_id"), stage))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def approve_settlement(self, ticket_id, approval=None):
        note = parse(OptionalNoteIn, approval).note
        try:
            with self._uow() as uow:
                return settlement_out(money.approve_settlement(uow, parse_id(ticket_id, "ticket_id"), note))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reject_settlement(self, ticket_id, rejection=None):
        note = parse(OptionalNoteIn, rejection).note
        try:
            with self._uow() as uow:
                return settlement_out(money.reject_settlement(uow, parse_id(ticket_id, "ticket_id"), note))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def settle_settlement(self, ticket_id):
        try:
            with self._uow() as uow:
                return settlement_out(money.settle(uow, parse_id(ticket_id, "ticket_id")))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def batch_settle(self, batch):
        data = parse(BatchSettleIn, batch)
        try:
            with self._uow() as uow:
                return {"items": [settlement_out(r) for r in money.batch_settle(uow, data.ticket_ids)]}
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def settlement_queue(self, status=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self._uow() as uow:
            found = money.settlement_queue(uow, status, offset, limit)
            return {**page([settlement_out(r) for r in found["rows"]], found["total"], offset, limit),
                    "totals": found["totals"]}

    # -- return visits --------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_return_visit(self, ticket_id):
        from tickets.domain import require_dispatcher
        require_dispatcher(self.platform.ctx.actor_role)
        with self._uow() as uow:
            return dump(VisitOut, money.request_visit(uow, parse_id(ticket_id, "ticket_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def record_return_visit(self, visit):
        data = parse(ManualVisitIn, visit)
        try:
            with self._uow() as uow:
                return dump(VisitOut, money.manual_visit(uow, data))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_return_visits(self, ticket_id=None, status=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self._uow() as uow:
            rows, total = money.list_visits(uow, parse_id(ticket_id, "ticket_id") if ticket_id else None,
                                                 status, offset, limit)
            return page([dump(VisitOut, v) for v in rows], total, offset, limit)

    @on_event("tickets", "ticket.completed")
    def on_ticket_completed_open_visit(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: money.visit_after_completion(
            uow, event.payload().ticket_id))

    def _public_uow(self, token: str):
        """The rating page has no login: the token names the visit and so the tenant, and the caller is
        the customer (no user, no staff rights; so recorded on the timeline and in the events)."""
        with self.platform.db.session(None) as session:
            visit = money.visit_by_token(session, str(token))
        data = self.platform.worker_ctx.data
        return UnitOfWork(self.platform.db, RequestContext(
            tenant_id=visit.tenant_id, actor_role=domain.CUSTOMER_ROLE,
            correlation_id=data.get("correlation_id") or f"visit-{visit.id}", locale=data.get("locale") or "zh-CN"))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def public_get_visit(self, token):
        with self._public_uow(token) as uow:
            visit = money.visit_by_token(uow.session, str(token))
            ticket = tickets.get_ticket(uow, visit.ticket_id)
            settings = handlers.get_settings(uow)
            return {"status": visit.status, "number": ticket.number, "customer_name": ticket.customer_name,
                    "summary": ticket.summary, "completed_at": ticket.completed_at.isoformat()
                    if ticket.completed_at else None, "dimensions": settings.satisfaction_dimensions,
                    "tags": settings.satisfaction_tags}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def public_rate_visit(self, token, rating):
        data = parse(VisitRateIn, rating)
        try:
            with self._public_uow(token) as uow:
                visit = money.rate_by_token(uow, str(token), data)
                return {"status": visit.status, "satisfaction": visit.satisfaction}
        except StaleDataError:
            raise _stale() from None

    # -- knowledge base and announcements -------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_article(self, article):
        data = parse(ArticleIn, article)
        with self._uow() as uow:
            return dump(ArticleOut, knowledge.create_article(uow, data, default_storage()))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_article_attachment(self, article_id, index):
        if isinstance(index, bool) or not isinstance(index, int):
            raise field_error("index", "must be an integer")
        with self._uow() as uow:
            found, content = knowledge.attachment(uow, parse_id(article_id, "article_id"), index, default_storage())
        return {"filename": found["filename"], "content_type": found["content_type"],
                "content_base64": base64.b64encode(content).decode()}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_article(self, article_id, changes):
        data = parse(ArticlePatch, changes)
        with self._uow() as uow:
            return dump(ArticleOut, knowledge.update_article(uow, parse_id(article_id, "article_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_article(self, article_id):
        with self._uow() as uow:
            return dump(ArticleOut, knowledge.get_article(uow, parse_id(article_id, "article_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def search_articles(self, q=None, category=None, fault_code=None, product_model=None, tag=None, status=None,
                        offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self._uow() as uow:
            rows, total = knowledge.search_articles(uow, q, category, fault_code, product_model, tag, status,
                                                    offset, limit)
            return page([dump(ArticleOut, a) for a in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def article_categories(self):
        with self._uow() as uow:
            return {"items": knowledge.categories(uow)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def review_article(self, article_id, approve, review=None):
        if not isinstance(approve, bool):
            raise field_error("approve", "must be true or false")
        with self._uow() as uow:
            return dump(ArticleOut, knowledge.review_article(uow, parse_id(article_id, "article_id"), approve,
                                                             parse(OptionalNoteIn, review).note))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def share_article(self, article_id, shared=True):
        with self._uow() as uow:
            return dump(ArticleOut, knowledge.share_article(uow, parse_id(article_id, "article_id"), bool(shared)))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def public_article(self, token):
        with self.platform.db.session(None) as session:
            row = knowledge.public_article(session, str(token))
            return {"title": row.title, "category": row.category, "fault_type": row.fault_type,
                    "symptom": row.symptom, "solution": row.solution, "tags": row.tags,
                    "fault_codes": row.fault_codes, "product_models": row.product_models}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def link_article(self, article_id, ticket_id):
        with self._uow() as uow:
            return dump(ArticleOut, knowledge.link_article(uow, parse_id(article_id, "article_id"),
                                                           parse_id(ticket_id, "ticket_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def ticket_articles(self, ticket_id, suggest=False):
        with self._uow() as uow:
            ticket_id = parse_id(ticket_id, "ticket_id")
            rows = knowledge.suggest_for_ticket(uow, ticket_id) if suggest else knowledge.articles_of_ticket(uow, ticket_id)
            return {"items": [dump(ArticleOut, a) for a in rows]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_announcement(self, announcement):
        data = parse(AnnouncementIn, announcement)
        with self._uow() as uow:
            return dump(AnnouncementOut, knowledge.create_announcement(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def my_announcements(self, unread_only=False):
        with self._uow() as uow:
            return {"items": [{**dump(AnnouncementOut, x["announcement"]), "read": x["read"]}
                              for x in knowledge.my_announcements(uow, bool(unread_only))]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def read_announcement(self, announcement_id):
        with self._uow() as uow:
            return {**dump(AnnouncementOut, knowledge.mark_read(uow, parse_id(announcement_id, "announcement_id"))),
                    "read": True}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def announcement_receipts(self, announcement_id):
        with self._uow() as uow:
            return knowledge.read_receipts(uow, parse_id(announcement_id, "announcement_id"))

    # -- service report and custom templates ------------------------------------------------------------
    def _report_data(self, ticket_id: uuid.UUID) -> dict:
        """What a report shows: the order, its settlement, signature, technician, named parts and items."""
        with self._uow() as uow:
            ticket = tickets.require_visible(uow, tickets.get_ticket(uow, ticket_id))
            order = dump(TicketOut, ticket)
            fees = None
            try:
                fees = {**settlement_out(money.get_settlement(uow, ticket_id)), "currency": "CNY"}
            except NotFound:
                pass
            signature = None
            signature_id = (ticket.receipt or {}).get("signature_id")
            if signature_id:
                row = uow.session.get(StoredFile, uuid.UUID(str(signature_id)))
                if row is not None and row.ticket_id == ticket.id:
                    signature = default_storage().get(row.storage_key)
            photo_ids = [uuid.UUID(str(i)) for i in (ticket.receipt or {}).get("photo_ids", [])][:9]
            photos = [default_storage().get(f.storage_key) for f in uow.session.scalars(
                sa.select(StoredFile).where(StoredFile.id.in_(photo_ids), StoredFile.ticket_id == ticket.id))] \
                if photo_ids else []
            tech = uow.session.get(Technician, ticket.assignee_id) if ticket.assignee_id else None
            type_fields = tickets.get_type(uow, ticket.type).fields
            report_fields = handlers.get_settings(uow).report_fields
        parts_used = order["parts_used"]
        items_used = (order["receipt"] or {}).get("service_items", [])
        prices = self._prices([p["part_id"] for p in parts_used], [i["service_item_id"] for i in items_used])
        parts = [{"name": (prices["parts"].get(str(p["part_id"])) or {}).get("name") or p["part_id"],
                  "quantity": p["quantity"]} for p in parts_used]
        items = [{"name": (prices["service_items"].get(str(i["service_item_id"])) or {}).get("name")
                  or i["service_item_id"], "quantity": i["quantity"]} for i in items_used]
        return {"order": order, "fees": fees, "signature": signature, "technician": tech.name if tech else None,
                "parts": parts, "items": items, "type_fields": type_fields, "photos": photos,
                "report_fields": report_fields}

    @staticmethod
    def _render_report(data: dict, locale: str) -> dict:
        content = reports_pdf.render(data["order"], locale, data["parts"], data["items"], data["fees"],
                                     data["signature"], data["technician"], data["report_fields"], data["photos"])
        return {"filename": f"{data['order']['number']}.pdf", "content_type": "application/pdf",
                "content_base64": base64.b64encode(content).decode()}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def service_report_pdf(self, ticket_id=None, locale="zh-CN", token=None):
        """The report PDF (base64) of an order of the caller's tenant, or of the order behind a portal
        link's `token`. Services call it as the system: notify, for `service_report.sent`, with the
        event's tenant in the context data and `ticket_id`, or with only the `token`."""
        if locale not in reports_pdf.TEXT:
            raise field_error("locale", "zh-CN or en")
        if token is not None:
            return self._render_report(self._report_data(self._act_for_link(token)), locale)
        if ticket_id is None:
            raise field_error("ticket_id", "give ticket_id or token")
        return self._render_report(self._report_data(parse_id(ticket_id, "ticket_id")), locale)

    def _act_for_link(self, token) -> uuid.UUID:
        """The order behind a report link. From here on the call acts as the system of the link's tenant,
        for our reads and for the inventory calls naming the parts (nameko passes the worker's context
        data along); a caller of another tenant does not find the link."""
        with self.platform.db.session(None) as session:
            link = money.report_link_by_token(session, str(token))
        data = self.platform.worker_ctx.data
        if data.get("tenant_id") and str(data["tenant_id"]) != str(link.tenant_id):
            raise NotFound("this report link is unknown", [{"field": "token", "message": "not found"}])
        data.update({"tenant_id": str(link.tenant_id), "actor_role": "system"})
        return link.ticket_id

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def service_report_link(self, ticket_id):
        with self._uow() as uow:
            row = money.report_link(uow, parse_id(ticket_id, "ticket_id"))
            return {"ticket_id": str(row.ticket_id), "token": row.token}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def send_service_report(self, ticket_id, sending):
        """By e-mail or SMS to the customer: `service_report.sent` (notify delivers it) and a timeline line."""
        data = parse(ReportSendIn, sending)
        try:
            with self._uow() as uow:
                return dump(ReportSentOut, money.send_report(uow, parse_id(ticket_id, "ticket_id"), data))
        except StaleDataError:
            raise _stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def public_service_report(self, token, locale="zh-CN"):
        """The customer's portal link: the token names the order (and so the tenant)."""
        if locale not in reports_pdf.TEXT:
            raise field_error("locale", "zh-CN or en")
        self.platform.worker_ctx.data.pop("tenant_id", None)  # the portal's caller has none; the link's counts
        return self._render_report(self._report_data(self._act_for_link(token)), locale)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def report_template_fields(self, type=None):
        with self._uow() as uow:
            fields = tickets.get_type(uow, type, "type").fields if type else []
        return {"items": templates.field_dictionary(fields)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def upload_report_template(self, template):
        data = parse(ReportTemplateIn, template)
        with self._uow() as uow:
            return dump(ReportTemplateOut, templates.upload(uow, data.name, data.ticket_type, data.filename,
                                                            data.content_base64))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_report_templates(self):
        with self._uow() as uow:
            return {"items": [dump(ReportTemplateOut, t) for t in templates.list_templates(uow)]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def fill_report_template(self, template_id, ticket_id, format="xlsx", locale="zh-CN"):
        if format not in ("xlsx", "pdf"):
            raise field_error("format", "xlsx or pdf")
        with self._uow() as uow:
            template = templates.get_template(uow, parse_id(template_id, "template_id"))
            content = template.content
        data = self._report_data(parse_id(ticket_id, "ticket_id"))
        fees = data["fees"]["fee_lines"] if data["fees"] else []
        filled = templates.fill(content, templates.order_values(data["order"], data["technician"], data["fees"], locale),
                                {"parts": data["parts"], "items": data["items"], "fees": fees})
        number = data["order"]["number"]
        if format == "pdf":
            return {"filename": f"{number}.pdf", "content_type": "application/pdf",
                    "content_base64": base64.b64encode(templates.to_pdf(filled, number)).decode()}
        return {"filename": f"{number}.xlsx",
                "content_type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "content_base64": base64.b64encode(filled).decode()}
