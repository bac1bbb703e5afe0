"""Use cases of the notify service: plain Python over a unit of work (no nameko)."""
import uuid

import sqlalchemy as sa

from svc_common.contracts import EventEnvelope, NotificationV1, TicketCompletedV1
from svc_common.db import utcnow
from svc_common.errors import Forbidden, NotFound
from svc_common.uow import UnitOfWork

from .models import Delivery, InboxMessage
from .schemas import DeliveryQuery, InboxQuery
from .sms import SmsProvider
from .templates import DEFAULT_LOCALE, render

INBOX_PROVIDER = "inbox"
DELIVERY_LOG_ROLES = ("admin", "dispatcher")


class DeliveryFailed(Exception):
    """A provider could not send.

    Raised out of the event's unit of work so it rolls back and the reliable consumer retries
    the whole notification; the service then keeps the attempt with `record_failed_delivery`.
    """

    def __init__(self, event: EventEnvelope, channel: str, recipient: str, provider: str, text: str, error: str):
        super().__init__(f"{channel} delivery for {event.type} {event.event_id} failed: {error}")
        self.event = event
        self.channel = channel
        self.recipient = recipient
        self.provider = provider
        self.text = text
        self.error = error


# -- events ---------------------------------------------------------------------------------

def notify_ticket_completed(uow: UnitOfWork, event: EventEnvelope, data: TicketCompletedV1, sms: SmsProvider,
                            locale: str = DEFAULT_LOCALE) -> None:
    """Tell the dispatcher in the inbox and the customer's contact by SMS.

    Recipients' own locale preferences come with subscriptions; until then the default one.
    """
    variables = data.model_dump()
    # Render everything first: a template error must not come after an SMS went out.
    inbox = render(event.type, "in_app", locale, variables) if data.dispatcher_id else None
    sms_text = render(event.type, "sms", locale, variables)["text"] if data.contact_phone else None
    if inbox:
        deliver_in_app(uow, event, data.dispatcher_id, inbox["title"], inbox["body"], "ticket", data.ticket_id)
    if sms_text:
        # Last: the only effect outside the transaction, so only the commit can fail after it.
        send_sms(uow, event, sms, data.contact_phone, sms_text)


def deliver_in_app(uow: UnitOfWork, event: EventEnvelope, user_id: uuid.UUID, title: str, body: str,
                   ref_type: str | None = None, ref_id: uuid.UUID | None = None) -> InboxMessage:
    message = InboxMessage(user_id=user_id, title=title, body=body, event_type=event.type,
                           ref_type=ref_type, ref_id=ref_id)
    uow.session.add(message)
    _record_delivery(uow, event, "in_app", str(user_id), INBOX_PROVIDER, "sent", f"{title}\n{body}")
    return message


def send_sms(uow: UnitOfWork, event: EventEnvelope, sms: SmsProvider, phone: str, text: str) -> Delivery:
    try:
        message_id = sms.send(phone, text)
    except Exception as exc:  # any provider error: recorded and retried, never swallowed
        raise DeliveryFailed(event, "sms", phone, sms.name, text, f"{type(exc).__name__}: {exc}") from exc
    return _record_delivery(uow, event, "sms", phone, sms.name, "sent", text, provider_message_id=message_id)


def record_failed_delivery(uow: UnitOfWork, failed: DeliveryFailed) -> Delivery:
    """Keep a failed attempt in the delivery log (in its own transaction, see DeliveryFailed)."""
    return _record_delivery(uow, failed.event, failed.channel, failed.recipient, failed.provider, "failed",
                            failed.text, error=failed.error)


def _record_delivery(uow: UnitOfWork, event: EventEnvelope, channel: str, recipient: str, provider: str,
                     status: str, text: str, provider_message_id: str | None = None,
                     error: str | None = None) -> Delivery:
    # A retry of the same event finds the row of its earlier attempts and counts this one.
    delivery = uow.session.scalar(sa.select(Delivery).where(
        Delivery.event_id == event.event_id, Delivery.channel == channel, Delivery.recipient == recipient))
    if delivery is None:
        delivery = Delivery(event_id=event.event_id, event_type=event.type, channel=channel,
                            recipient=recipient, attempts=0)
        uow.session.add(delivery)
    delivery.provider = provider
    delivery.status = status
    delivery.text = text
    delivery.attempts += 1
    delivery.error = error
    delivery.provider_message_id = provider_message_id
    uow.session.flush()
    uow.emit(f"notification.{status}", NotificationV1(
        notification_id=delivery.id, channel=channel, recipient=recipient,
        source_event_type=event.type, error=error,
    ))
    return delivery


# -- inbox ----------------------------------------------------------------------------------

def _caller(uow: UnitOfWork) -> uuid.UUID:
    if uow.ctx.actor_id is None:
        raise Forbidden("the inbox belongs to a signed-in user")
    return uow.ctx.actor_id


def _count(uow: UnitOfWork, query: sa.Select) -> int:
    return uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()


def list_inbox(uow: UnitOfWork, query: InboxQuery) -> tuple[list[InboxMessage], int, int]:
    """The caller's messages, newest first: (page, total of the listing, unread count)."""
    mine = sa.select(InboxMessage).where(InboxMessage.user_id == _caller(uow))
    unread = mine.where(InboxMessage.read_at.is_(None))
    listed = unread if query.unread_only else mine
    rows = uow.session.scalars(listed.order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
                               .offset(query.offset).limit(query.limit)).all()
    return list(rows), _count(uow, listed), _count(uow, unread)


def mark_read(uow: UnitOfWork, message_id: uuid.UUID) -> InboxMessage:
    message = uow.session.get(InboxMessage, message_id)
    # Another user's (or tenant's) message is simply not found: its existence is not revealed.
    if message is None or message.tenant_id != uow.ctx.tenant_id or message.user_id != _caller(uow):
        raise NotFound(f"message {message_id} not found", [{"field": "message_id", "message": "not found"}])
    if message.read_at is None:
        message.read_at = utcnow()
    return message


def mark_all_read(uow: UnitOfWork) -> int:
    result = uow.session.execute(
        sa.update(InboxMessage)
        .where(InboxMessage.user_id == _caller(uow), InboxMessage.read_at.is_(None))
        .values(read_at=utcnow())
    )
    return result.rowcount


# -- delivery log ---------------------------------------------------------------------------

def list_deliveries(uow: UnitOfWork, query: DeliveryQuery) -> tuple[list[Delivery], int]:
    if uow.ctx.actor_role not in DELIVERY_LOG_ROLES:
        raise Forbidden("the delivery log is for admins and dispatchers")
    listed = sa.select(Delivery)
    if query.channel:
        listed = listed.where(Delivery.channel == query.channel)
    rows = uow.session.scalars(listed.order_by(Delivery.created_at.desc(), Delivery.id.desc())
                               .offset(query.offset).limit(query.limit)).all()
    return list(rows), _count(uow, listed)
