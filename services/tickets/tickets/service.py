"""nameko entrypoints of the tickets service: validate → handler → DTO."""
import base64
import logging

import eventlet

from nameko.exceptions import MethodNotFound, UnknownService
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from svc_common.consumer import on_event
from svc_common.context import system_context
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS, Conflict
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.uow import UnitOfWork
from svc_common.validation import dump, page, parse, parse_id, window

from . import handlers
from tickets.desk.rpc import DeskRpc
from .models import PLATFORM
from .schemas import (
    AssignIn, BatchAssignIn, BranchIn, CheckInIn, FieldsIn, FileIn, FileOut, GrabIn, IncompleteIn, NoteIn,
    OptionalReasonIn, OutsourceIn, PositionIn, PublishIn, ReasonIn, ReassignIn, ReceiptIn, ReorderIn, SettingsIn,
    SettingsOut, SettleIn, TicketIn, TicketOut, TicketTypeIn, TicketTypeOut, TicketTypePatch, TimelineOut, UnitIn, VisitIn,
)
from .settings import tickets_settings
from .storage import default_storage

log = logging.getLogger(__name__)


def stale() -> Conflict:
    return Conflict("the work order was changed by someone else; reload and retry",
                    [{"field": "version", "message": "concurrent update"}])


class TicketsService(DeskRpc, HealthRpc):
    name = "tickets"
    platform = Platform(PLATFORM)
    customers = RpcProxy("customers")
    inventory = RpcProxy("inventory")

    def _change(self, handler, ticket_id, *args):
        """Run a state change; losing an optimistic-lock race is a 409, not a 500."""
        try:
            with self.platform.uow() as uow:
                return dump(TicketOut, handler(uow, parse_id(ticket_id, "ticket_id"), *args))
        except StaleDataError:
            raise stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_ticket(self, ticket):
        data = parse(TicketIn, ticket)
        try:
            ticket = self._create_ticket(data)
        except IntegrityError:
            # The order of this very call exists (unique request id): RabbitMQ redelivered the call
            # after its first worker committed and died before acking. Looked up only then, not first.
            with self.platform.uow() as uow:
                ticket = handlers.created_by_this_request(uow)
            if ticket is None:
                raise
        except StaleDataError:  # automatic dispatch raced a roster change
            raise stale() from None
        return dump(TicketOut, ticket)  # after commit: no lock is held while it is serialized

    def _create_ticket(self, data: TicketIn):
        with self.platform.uow() as uow:
            snapshot = handlers.snapshot_from_replica(uow, data.customer_id, data.equipment_id, utcnow().date())
            if snapshot is not None:
                return handlers.create_ticket(uow, data, snapshot)
        # Not replicated yet (created a moment ago) or unknown: ask customers, outside our transaction.
        snapshot = self.customers.get_service_snapshot(
            customer_id=str(data.customer_id), equipment_id=str(data.equipment_id) if data.equipment_id else None)
        with self.platform.uow() as uow:
            return handlers.create_ticket(uow, data, snapshot)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_ticket(self, ticket_id):
        with self.platform.uow() as uow:
            return dump(TicketOut, handlers.require_visible(uow, handlers.get_ticket(uow, parse_id(ticket_id, "ticket_id"))))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_tickets(self, status=None, assignee_id=None, customer_id=None, offset=0, limit=50, type=None,
                     priority=None, team_id=None, branch_id=None, scope=None, exceptions=False, pool=False, q=None,
                     sort="-created_at", reassignment_pending=False):
        offset, limit = window(offset, limit)
        with self.platform.uow() as uow:
            rows, total = handlers.list_tickets(
                uow, status, parse_id(assignee_id, "assignee_id") if assignee_id else None,
                parse_id(customer_id, "customer_id") if customer_id else None, offset, limit,
                type=type, priority=priority, team_id=parse_id(team_id, "team_id") if team_id else None,
                branch_id=parse_id(branch_id, "branch_id") if branch_id else None, scope=scope,
                exceptions=bool(exceptions), pool=bool(pool), q=q, sort=sort or "-created_at",
                reassignment_pending=bool(reassignment_pending))
            return page([dump(TicketOut, t) for t in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_timeline(self, ticket_id):
        with self.platform.uow() as uow:
            ticket = handlers.require_visible(uow, handlers.get_ticket(uow, parse_id(ticket_id, "ticket_id")))
            return {"items": [dump(TimelineOut, e) for e in ticket.timeline],
                    "state_seconds": handlers.domain.add_state_time(
                        ticket.state_seconds, ticket.status, ticket.status_since, utcnow())}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_ticket_fields(self, ticket_id, fields):
        return self._change(handlers.update_fields, ticket_id, parse(FieldsIn, fields).custom_fields)

    # -- dispatch -------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def assign_ticket(self, ticket_id, assignment):
        return self._change(handlers.assign_ticket, ticket_id, parse(AssignIn, assignment))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def batch_assign_tickets(self, assignment):
        data = parse(BatchAssignIn, assignment)
        try:
            with self.platform.uow() as uow:
                return {"items": [dump(TicketOut, t) for t in handlers.batch_assign(uow, data)]}
        except StaleDataError:
            raise stale() from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reassign_ticket(self, ticket_id, assignment):
        return self._change(handlers.reassign_ticket, ticket_id, parse(ReassignIn, assignment))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def auto_dispatch_ticket(self, ticket_id):
        return self._change(handlers.auto_dispatch, ticket_id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def accept_ticket(self, ticket_id):
        return self._change(handlers.accept_ticket, ticket_id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def refuse_ticket(self, ticket_id, refusal):
        return self._change(handlers.refuse_ticket, ticket_id, parse(ReasonIn, refusal).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def publish_ticket(self, ticket_id, publication=None):
        return self._change(handlers.publish_to_pool, ticket_id, parse(PublishIn, publication))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def grab_ticket(self, ticket_id, grab=None):
        return self._change(handlers.grab_ticket, ticket_id, parse(GrabIn, grab))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def dispatch_ticket_to_branch(self, ticket_id, dispatch):
        return self._change(handlers.dispatch_to_branch, ticket_id, parse(BranchIn, dispatch))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def request_reassignment(self, ticket_id, request):
        return self._change(handlers.request_reassignment, ticket_id, parse(ReasonIn, request).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def approve_reassignment(self, ticket_id, decision=None):
        return self._change(handlers.approve_reassignment, ticket_id, parse(OptionalReasonIn, decision).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reject_reassignment(self, ticket_id, decision):
        return self._change(handlers.reject_reassignment, ticket_id, parse(ReasonIn, decision).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def outsource_ticket(self, ticket_id, outsourcing):
        return self._change(handlers.outsource_ticket, ticket_id, parse(OutsourceIn, outsourcing))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def answer_outsource(self, ticket_id, accept, reason=None):
        return self._change(handlers.answer_outsource, ticket_id, bool(accept),
                            parse(OptionalReasonIn, {"reason": reason}).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def record_position(self, position):
        with self.platform.uow() as uow:
            tech = handlers.record_position(uow, parse(PositionIn, position))
            return {"user_id": str(tech.user_id), "latitude": tech.latitude, "longitude": tech.longitude,
                    "position_at": tech.position_at.isoformat(), "on_duty": tech.on_duty}

    # -- field execution --------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def check_in_ticket(self, ticket_id, position):
        return self._change(handlers.check_in, ticket_id, parse(CheckInIn, position))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def pause_ticket(self, ticket_id, pause=None):
        return self._change(handlers.pause_ticket, ticket_id, parse(OptionalReasonIn, pause).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def resume_ticket(self, ticket_id):
        return self._change(handlers.resume_ticket, ticket_id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def upload_ticket_file(self, ticket_id, file):
        data = parse(FileIn, file)
        with self.platform.uow() as uow:
            return dump(FileOut, handlers.upload_file(uow, parse_id(ticket_id, "ticket_id"), data, default_storage()))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_ticket_file(self, ticket_id, file_id):
        with self.platform.uow() as uow:
            row, content = handlers.get_file(uow, parse_id(ticket_id, "ticket_id"), parse_id(file_id, "file_id"),
                                             default_storage())
            return {**dump(FileOut, row), "content_base64": base64.b64encode(content).decode()}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def add_ticket_feedback(self, ticket_id, feedback):
        return self._change(handlers.add_feedback, ticket_id, parse(NoteIn, feedback).note)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def save_ticket_unit(self, ticket_id, unit):
        return self._change(handlers.save_unit, ticket_id, parse(UnitIn, unit))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def report_incomplete(self, ticket_id, report):
        return self._change(handlers.report_incomplete, ticket_id, parse(IncompleteIn, report))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def complete_ticket(self, ticket_id, receipt):
        data = parse(ReceiptIn, receipt)
        if data.parts_used:
            self._check_stock(parse_id(ticket_id, "ticket_id"), data)
        return self._change(handlers.complete_ticket, ticket_id, data)

    def _check_stock(self, ticket_id, data: ReceiptIn) -> None:
        """The parts must be in the technician's personal stock (asked of inventory, outside our
        transaction); a shortfall is a 409 naming the line."""
        with self.platform.uow() as uow:
            technician_id = handlers.get_ticket(uow, ticket_id).assignee_id
        try:
            answer = None
            with eventlet.Timeout(tickets_settings().stock_check_timeout_seconds, False):
                answer = self.inventory.check_stock_available(
                    technician_id=str(technician_id),
                    parts=[{"part_id": str(p.part_id), "quantity": str(p.quantity)} for p in data.parts_used])
            if answer is None:
                log.warning("inventory did not answer the stock check within %ss; completing without it",
                            tickets_settings().stock_check_timeout_seconds)
                return
        except (MethodNotFound, UnknownService):
            # An inventory without the check (older version): completion consumes and inventory
            # reports any shortfall itself (consumption.shortfall).
            log.warning("inventory.check_stock_available unavailable; completing without the check")
            return
        if not answer.get("available", False):
            lines = {str(p.part_id): i for i, p in enumerate(data.parts_used)}
            errors = [{"field": f"parts_used.{lines.get(str(s['part_id']), 0)}.quantity",
                       "message": f"only {s.get('available')} in the technician's stock, {s.get('requested')} needed"}
                      for s in answer.get("shortfalls", [])]
            raise Conflict("not enough parts in the technician's stock",
                           errors or [{"field": "parts_used", "message": "not available"}])

    # -- after completion ---------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def approve_ticket(self, ticket_id, approval=None):
        return self._change(handlers.approve_ticket, ticket_id, parse(OptionalReasonIn, approval).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def settle_ticket(self, ticket_id, settlement):
        return self._change(handlers.settle_ticket, ticket_id, parse(SettleIn, settlement))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def visit_ticket(self, ticket_id, visit):
        return self._change(handlers.visit_ticket, ticket_id, parse(VisitIn, visit))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def close_ticket(self, ticket_id, closing=None):
        return self._change(handlers.close_ticket, ticket_id, parse(OptionalReasonIn, closing).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def cancel_ticket(self, ticket_id, cancellation):
        return self._change(handlers.cancel_ticket, ticket_id, parse(ReasonIn, cancellation).reason)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reopen_ticket(self, ticket_id, reopening):
        return self._change(handlers.reopen_ticket, ticket_id, parse(ReasonIn, reopening).reason)

    # -- settings: types, SLA, dispatch rules --------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_ticket_types(self, enabled_only=False):
        with self.platform.uow() as uow:
            return {"items": [dump(TicketTypeOut, t) for t in handlers.list_types(uow, bool(enabled_only))]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_ticket_type(self, ticket_type):
        data = parse(TicketTypeIn, ticket_type)
        with self.platform.uow() as uow:
            return dump(TicketTypeOut, handlers.create_type(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_ticket_type(self, code, changes):
        data = parse(TicketTypePatch, changes)
        with self.platform.uow() as uow:
            return dump(TicketTypeOut, handlers.update_type(uow, code, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reorder_ticket_types(self, order):
        data = parse(ReorderIn, order)
        with self.platform.uow() as uow:
            return {"items": [dump(TicketTypeOut, t) for t in handlers.reorder_types(uow, data.codes)]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_ticket_settings(self):
        with self.platform.uow() as uow:
            return dump(SettingsOut, handlers.get_settings(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_ticket_settings(self, settings):
        data = parse(SettingsIn, settings)
        with self.platform.uow() as uow:
            return dump(SettingsOut, handlers.update_settings(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_teams(self):
        with self.platform.uow() as uow:
            return {"items": [{"team_id": str(t.team_id), "name": t.name, "kind": t.kind,
                               "parent_id": str(t.parent_id) if t.parent_id else None,
                               "member_ids": t.member_ids, "manager_ids": t.manager_ids}
                              for t in handlers.list_teams(uow)]}

    # -- SLA clock ------------------------------------------------------------------------------------
    @timer(interval=tickets_settings().sla_scan_seconds)
    def raise_overdue(self):
        """Raise ticket.overdue once per missed deadline. Several instances may scan at once: the
        order's version lock lets only one of them record it."""
        now = utcnow()
        with self.platform.db.session(None) as session:
            found = handlers.overdue_candidates(session, now)
        for tenant_id, ticket_id in found:
            try:
                with UnitOfWork(self.platform.db, system_context(tenant_id)) as uow:
                    handlers.raise_overdue(uow, ticket_id, now)
            except StaleDataError:
                continue  # someone else changed it: the next scan looks again

    # -- replicas of customers and equipment ----------------------------------------------------
    @on_event("customers", "customer.created")
    def on_customer_created(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_customer_event(uow, event.payload()))

    @on_event("customers", "customer.updated")
    def on_customer_updated(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_customer_event(uow, event.payload()))

    @on_event("customers", "equipment.registered")
    def on_equipment_registered(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_equipment_event(uow, event.payload()))

    @on_event("customers", "equipment.updated")
    def on_equipment_updated(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_equipment_event(uow, event.payload()))

    # -- roster and teams from the gateway's accounts ----------------------------------------------
    def _apply_user(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_user_event(
            uow, event.type, event.payload()))

    @on_event("gateway", "user.created")
    def on_user_created(self, envelope):
        self._apply_user(envelope)

    @on_event("gateway", "user.updated")
    def on_user_updated(self, envelope):
        self._apply_user(envelope)

    @on_event("gateway", "user.deactivated")
    def on_user_deactivated(self, envelope):
        self._apply_user(envelope)

    @on_event("gateway", "team.updated")
    def on_team_updated(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_team_event(uow, event.payload()))
