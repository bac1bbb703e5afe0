"""nameko entrypoints of the tickets service: validate → handler → DTO."""
from nameko.rpc import RpcProxy, rpc
from sqlalchemy.orm.exc import StaleDataError

from svc_common.consumer import on_event
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS, Conflict
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.validation import dump, page, parse, parse_id, window

from . import handlers
from .models import PLATFORM
from .schemas import AssignIn, CheckInIn, ReceiptIn, TicketIn, TicketOut, TimelineOut


class TicketsService(HealthRpc):
    name = "tickets"
    platform = Platform(PLATFORM)
    customers = RpcProxy("customers")

    def _change(self, handler, ticket_id, *args):
        """Run a state change; losing an optimistic-lock race is a 409, not a 500."""
        try:
            with self.platform.uow() as uow:
                return dump(TicketOut, handler(uow, parse_id(ticket_id, "ticket_id"), *args))
        except StaleDataError:
            raise Conflict("the work order was changed by someone else; reload and retry",
                           [{"field": "version", "message": "concurrent update"}]) from None

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_ticket(self, ticket):
        data = parse(TicketIn, ticket)
        with self.platform.uow() as uow:
            ticket = handlers.created_by_this_request(uow)
            if ticket is None:
                snapshot = handlers.snapshot_from_replica(uow, data.customer_id, data.equipment_id, utcnow().date())
                ticket = handlers.create_ticket(uow, data, snapshot) if snapshot is not None else None
        if ticket is None:
            # Not replicated yet (created a moment ago) or unknown: ask customers, outside our transaction.
            snapshot = self.customers.get_service_snapshot(
                customer_id=str(data.customer_id), equipment_id=str(data.equipment_id) if data.equipment_id else None)
            with self.platform.uow() as uow:
                ticket = handlers.create_ticket(uow, data, snapshot)
        return dump(TicketOut, ticket)  # after commit: no lock is held while it is serialized

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_ticket(self, ticket_id):
        with self.platform.uow() as uow:
            return dump(TicketOut, handlers.get_ticket(uow, parse_id(ticket_id, "ticket_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_tickets(self, status=None, assignee_id=None, customer_id=None, offset=0, limit=50):
        offset, limit = window(offset, limit)
        with self.platform.uow() as uow:
            rows, total = handlers.list_tickets(
                uow, status, parse_id(assignee_id, "assignee_id") if assignee_id else None,
                parse_id(customer_id, "customer_id") if customer_id else None, offset, limit)
            return page([dump(TicketOut, t) for t in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_timeline(self, ticket_id):
        with self.platform.uow() as uow:
            ticket = handlers.get_ticket(uow, parse_id(ticket_id, "ticket_id"))
            return {"items": [dump(TimelineOut, e) for e in ticket.timeline]}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def assign_ticket(self, ticket_id, assignment):
        return self._change(handlers.assign_ticket, ticket_id, parse(AssignIn, assignment))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def accept_ticket(self, ticket_id):
        return self._change(handlers.accept_ticket, ticket_id)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def check_in_ticket(self, ticket_id, position):
        return self._change(handlers.check_in, ticket_id, parse(CheckInIn, position))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def complete_ticket(self, ticket_id, receipt):
        return self._change(handlers.complete_ticket, ticket_id, parse(ReceiptIn, receipt))

    # -- replicas of customers and equipment ----------------------------------------------------
    @on_event("customers", "customer.created")
    def on_customer_created(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_customer_event(uow, event.payload()))

    @on_event("customers", "equipment.registered")
    def on_equipment_registered(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.apply_equipment_event(uow, event.payload()))

    # -- roster from the gateway's accounts ------------------------------------------------
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
