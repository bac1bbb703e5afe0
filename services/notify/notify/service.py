"""nameko entrypoints of the notify service: validate → handler → DTO."""
from nameko.rpc import rpc

from svc_common.consumer import on_event
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.errors import EXPECTED_ERRORS
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.uow import UnitOfWork
from svc_common.validation import dump, page, parse, parse_id

from . import handlers
from .models import PLATFORM
from .schemas import DeliveryOut, DeliveryQuery, InboxMessageOut, InboxQuery
from .sms import Sms


class NotifyService(HealthRpc):
    name = "notify"
    platform = Platform(PLATFORM)
    sms = Sms()

    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        try:
            self.platform.handle_once(envelope, lambda uow, event: handlers.notify_ticket_completed(
                uow, event, event.payload(), self.sms))
        except handlers.DeliveryFailed as failed:
            event = EventEnvelope.model_validate(envelope)
            # The event's transaction rolled back, so the retry redoes the whole notification;
            # the failed attempt goes to the delivery log in a transaction of its own.
            with UnitOfWork(self.platform.db, system_context(event.tenant_id, event.correlation_id)) as uow:
                handlers.record_failed_delivery(uow, failed)
            raise

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_inbox(self, unread_only=False, offset=0, limit=50):
        query = parse(InboxQuery, {"unread_only": unread_only, "offset": offset, "limit": limit})
        with self.platform.uow() as uow:
            rows, total, unread = handlers.list_inbox(uow, query)
            result = page([dump(InboxMessageOut, m) for m in rows], total, query.offset, query.limit)
            return {**result, "unread": unread}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def mark_read(self, message_id):
        with self.platform.uow() as uow:
            return dump(InboxMessageOut, handlers.mark_read(uow, parse_id(message_id, "message_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def mark_all_read(self):
        with self.platform.uow() as uow:
            return {"updated": handlers.mark_all_read(uow)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_deliveries(self, channel=None, offset=0, limit=50):
        query = parse(DeliveryQuery, {"channel": channel, "offset": offset, "limit": limit})
        with self.platform.uow() as uow:
            rows, total = handlers.list_deliveries(uow, query)
            return page([dump(DeliveryOut, d) for d in rows], total, query.offset, query.limit)
