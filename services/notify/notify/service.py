"""nameko entrypoints of the notify service: validate → handler → DTO."""
import base64
import datetime as dt
import logging
import uuid
from contextlib import contextmanager

from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from svc_common.batch_consumer import handle_batch, on_events
from svc_common.consumer import on_event
from svc_common.context import system_context
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.uow import UnitOfWork
from svc_common.validation import dump, page, parse, parse_id

from . import domain, handlers
from .models import PLATFORM
from .providers import Attachment, ProviderError
from .sender import Providers, Sender
from .settings import notify_settings
from .schemas import (
    DeliveryOut,
    DeliveryQuery,
    InboxMessageOut,
    InboxQuery,
    ListMembersIn,
    PreferenceIn,
    ProviderIn,
    RuleIn,
    SettingsIn,
    TemplateIn,
)

log = logging.getLogger(__name__)


def _items(items: list) -> dict:
    return {"items": items, "total": len(items)}


def notifiable(fn):
    """Subscribe `fn` to every event notify turns into messages (domain.HANDLED_EVENTS) by type name,
    in batches (many events per transaction, svc_common.batch_consumer): the producers' contracts need
    not be known here; the data is read through the agreed field names. ticket.completed has its own
    entrypoint (below)."""
    for event_type in domain.HANDLED_EVENTS:
        source = domain.producer_of(event_type)
        if source and event_type != "ticket.completed":
            fn = on_events(source, event_type)(fn)
    return fn


class NotifyService(HealthRpc):
    name = "notify"
    platform = Platform(PLATFORM)
    providers = Providers()
    sender = Sender()
    tickets = RpcProxy("tickets")  # the service report PDF attached to service_report.sent emails
    send_policy = handlers.SendPolicy.configured()
    _next_digest_check: dict = {}  # per process: when the timer next looks for due daily digests

    # -- events -----------------------------------------------------------------------------
    @notifiable
    def on_notifiable_event(self, envelopes):
        jobs = []
        try:
            handle_batch(self.platform, envelopes, lambda uow, events: jobs.extend(handlers.fan_out_many(uow, events)))
        finally:
            # Sent after the commit (of each tenant's part): a crash before that leaves rows queued, and
            # the timer sends them.
            self._send(jobs)

    @on_events("tickets", "ticket.completed")
    def on_ticket_completed(self, envelopes):
        """ticket.completed keeps the queue and consumer name it had before notify handled other
        events: an upgrade neither strands the messages in that queue nor repeats processed ones."""
        self.on_notifiable_event(envelopes)

    @on_event("gateway", "user.created")
    @on_event("gateway", "user.updated")
    @on_event("gateway", "user.deactivated")
    def on_user_event(self, envelope):
        self.platform.handle_once(envelope, handlers.upsert_user)

    @on_event("gateway", "team.updated")
    def on_team_updated(self, envelope):
        self.platform.handle_once(envelope, handlers.upsert_team)

    def _uow_for(self, tenant_id):
        return UnitOfWork(self.platform.db, system_context(tenant_id))

    def _send(self, jobs: list[handlers.Job]) -> None:
        """Most jobs go to the background sender; those with attachments are sent here, by this worker,
        which can ask tickets for them."""
        with_files = [job for job in jobs if job.message.attachments]
        if with_files:
            try:
                handlers.send_jobs(self._uow_for, self.providers, with_files, self.send_policy,
                                   fetch=self._fetch_attachment)
            except Exception:  # the database, not a provider: the timer picks the queued rows up again
                log.exception("could not send %d deliveries", len(with_files))
        self.sender.submit([job for job in jobs if not job.message.attachments])

    def _dispatch(self, tenant_id, delivery_ids):
        try:
            handlers.dispatch_many(lambda: self._uow_for(tenant_id), self.providers, delivery_ids, self.send_policy,
                                   fetch=self._fetch_attachment)
        except Exception:  # the database, not a provider: the timer picks the queued rows up again
            log.exception("could not dispatch deliveries %s", delivery_ids)

    @contextmanager
    def _as_system_of(self, tenant_id: uuid.UUID):
        """This worker's RPC calls act as the system of `tenant_id` (the timer's worker has no tenant)."""
        data = self.platform.worker_ctx.data
        saved = dict(data)
        data.clear()
        data.update(system_context(tenant_id, saved.get("correlation_id")).to_context_data())
        try:
            yield
        finally:
            data.clear()
            data.update(saved)

    def _fetch_attachment(self, tenant_id: uuid.UUID, source: dict) -> Attachment:
        """An attachment's file; a failure is a transient provider error, so the send is retried."""
        if source.get("source") != "service_report":
            raise ProviderError(f"unknown attachment source {source.get('source')!r}", transient=False)
        try:
            with self._as_system_of(tenant_id):
                pdf = self.tickets.service_report_pdf(ticket_id=source["ticket_id"], locale=source.get("locale"))
            return Attachment(pdf["filename"], pdf["content_type"], base64.b64decode(pdf["content_base64"]))
        except Exception as exc:
            raise ProviderError(f"the service report PDF could not be fetched ({type(exc).__name__})",
                                transient=True) from None

    @timer(interval=notify_settings().timer_seconds)
    def release_due(self):
        """Quiet hours over, crash leftovers, interrupted sends, daily digests."""
        now = utcnow()
        db = self.platform.db
        for tenant_id, delivery_id in handlers.stale_sending(db, now):
            with UnitOfWork(db, system_context(tenant_id)) as uow:
                handlers.fail_interrupted(uow, delivery_id)
        due: dict = {}
        for tenant_id, delivery_id in handlers.due_deliveries(db, now):
            due.setdefault(tenant_id, []).append(delivery_id)
        for tenant_id, delivery_ids in due.items():
            self._dispatch(tenant_id, delivery_ids)
        if now < self._next_digest_check.get("at", now):
            return
        # Digests are due at a minute of the day: a look per tenant once a minute is enough.
        NotifyService._next_digest_check["at"] = now + dt.timedelta(seconds=60)
        for tenant_id in handlers.known_tenants(db):
            try:
                with UnitOfWork(db, system_context(tenant_id)) as uow:
                    digest = handlers.digest_event(uow, now)
                    jobs = handlers.fan_out(uow, digest, now) if digest else []
                self._send(jobs)
            except Exception:
                log.exception("daily digest of tenant %s failed", tenant_id)

    # -- inbox ------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_inbox(self, unread_only=False, offset=0, limit=50, category=None):
        query = parse(InboxQuery, {"unread_only": unread_only, "offset": offset, "limit": limit, "category": category})
        with self.platform.uow() as uow:
            rows, total, unread = handlers.list_inbox(uow, query)
            result = page([dump(InboxMessageOut, m) for m in rows], total, query.offset, query.limit)
            return {**result, "unread": unread}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def unread_count(self):
        with self.platform.uow() as uow:
            return {"unread": handlers.unread_count(uow)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def mark_read(self, message_id):
        with self.platform.uow() as uow:
            return dump(InboxMessageOut, handlers.mark_read(uow, parse_id(message_id, "message_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def mark_all_read(self):
        with self.platform.uow() as uow:
            return {"updated": handlers.mark_all_read(uow)}

    # -- delivery log -----------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_deliveries(self, channel=None, status=None, event_type=None, offset=0, limit=50):
        query = parse(DeliveryQuery, {"channel": channel, "status": status, "event_type": event_type,
                                      "offset": offset, "limit": limit})
        with self.platform.uow() as uow:
            rows, total = handlers.list_deliveries(uow, query)
            return page([dump(DeliveryOut, d) for d in rows], total, query.offset, query.limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def resend_delivery(self, delivery_id):
        delivery_id = parse_id(delivery_id, "delivery_id")
        with self.platform.uow() as uow:
            handlers.resend(uow, delivery_id)
            tenant_id = uow.ctx.tenant_id
        self._dispatch(tenant_id, [delivery_id])
        with self.platform.uow() as uow:
            return dump(DeliveryOut, uow.get_or_404(handlers.Delivery, delivery_id, "delivery_id", "delivery"))

    # -- configuration ----------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_providers(self):
        with self.platform.uow() as uow:
            return _items(handlers.list_providers(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def configure_provider(self, channel, provider):
        body = parse(ProviderIn, provider)
        with self.platform.uow() as uow:
            return handlers.configure_provider(uow, channel, body, self.providers)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def remove_provider(self, channel):
        with self.platform.uow() as uow:
            handlers.remove_provider(uow, channel)
            return {"removed": channel}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_rules(self):
        with self.platform.uow() as uow:
            return _items(handlers.list_rules(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def save_rule(self, event_type, rule):
        body = parse(RuleIn, rule)
        with self.platform.uow() as uow:
            return handlers.save_rule(uow, event_type, body)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reset_rule(self, event_type):
        with self.platform.uow() as uow:
            return handlers.reset_rule(uow, event_type)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_templates(self, event_type=None):
        with self.platform.uow() as uow:
            return _items(handlers.list_templates(uow, event_type))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def save_template(self, event_type, channel, locale, template):
        body = parse(TemplateIn, template)
        with self.platform.uow() as uow:
            return handlers.save_template(uow, event_type, channel, locale, body)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def reset_template(self, event_type, channel, locale):
        with self.platform.uow() as uow:
            handlers.reset_template(uow, event_type, channel, locale)
            return {"reset": True}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_settings(self):
        with self.platform.uow() as uow:
            return handlers.get_settings(uow)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def save_settings(self, settings):
        body = parse(SettingsIn, settings)
        with self.platform.uow() as uow:
            return handlers.save_settings(uow, body)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_preferences(self, user_id=None):
        owner = parse_id(user_id, "user_id") if user_id else None
        with self.platform.uow() as uow:
            return handlers.get_preferences(uow, owner)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def save_preferences(self, preferences, user_id=None):
        body = parse(PreferenceIn, preferences)
        owner = parse_id(user_id, "user_id") if user_id else None
        with self.platform.uow() as uow:
            return handlers.save_preferences(uow, body, owner)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_lists(self):
        with self.platform.uow() as uow:
            return _items(handlers.list_lists(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def set_list_members(self, name, members):
        body = parse(ListMembersIn, members)
        with self.platform.uow() as uow:
            return handlers.set_list_members(uow, name, body)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def subscribe_list(self, name, subscribed=True):
        with self.platform.uow() as uow:
            return handlers.subscribe(uow, name, bool(subscribed))
