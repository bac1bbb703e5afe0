"""nameko entrypoints of the notify service: validate → handler → DTO."""
import datetime as dt
import logging
import os

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from svc_common.consumer import on_event
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.settings import get_settings
from svc_common.uow import UnitOfWork
from svc_common.validation import dump, page, parse, parse_id

from . import domain, handlers
from .models import PLATFORM
from .providers import Registry
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
TIMER_SECONDS = float(os.environ.get("NOTIFY_TIMER_SECONDS", "5"))


def _items(items: list) -> dict:
    return {"items": items, "total": len(items)}


class Providers(DependencyProvider):
    """`providers = Providers()`: the registry that builds each tenant's provider plug-ins."""

    def setup(self):
        self.registry = Registry(sms_log_path=get_settings().sms_log_path)

    def get_dependency(self, worker_ctx) -> Registry:
        return self.registry


def notifiable(fn):
    """Subscribe `fn` to every event notify turns into messages (domain.HANDLED_EVENTS) by type name:
    the producers' contracts need not be known here; the data is read through the agreed field names.
    ticket.completed has its own entrypoint (below)."""
    for event_type in domain.HANDLED_EVENTS:
        source = domain.producer_of(event_type)
        if source and event_type != "ticket.completed":
            fn = on_event(source, event_type)(fn)
    return fn


class NotifyService(HealthRpc):
    name = "notify"
    platform = Platform(PLATFORM)
    providers = Providers()
    send_policy = handlers.SendPolicy.from_env()
    _next_digest_check: dict = {}  # per process: when the timer next looks for due daily digests

    # -- events -----------------------------------------------------------------------------
    @notifiable
    def on_notifiable_event(self, envelope):
        queued = []
        self.platform.handle_once(envelope, lambda uow, event: queued.extend(handlers.fan_out(uow, event)))
        # Sent after the commit: a crash before this leaves rows queued, and the timer sends them.
        self._dispatch(EventEnvelope.model_validate(envelope).tenant_id, queued)

    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        """ticket.completed keeps the queue and consumer name it had before notify handled other
        events: an upgrade neither strands the messages in that queue nor repeats processed ones."""
        self.on_notifiable_event(envelope)

    @on_event("gateway", "user.created")
    @on_event("gateway", "user.updated")
    @on_event("gateway", "user.deactivated")
    def on_user_event(self, envelope):
        self.platform.handle_once(envelope, handlers.upsert_user)

    @on_event("gateway", "team.updated")
    def on_team_updated(self, envelope):
        self.platform.handle_once(envelope, handlers.upsert_team)

    def _uow_factory(self, tenant_id):
        return lambda: UnitOfWork(self.platform.db, system_context(tenant_id))

    def _dispatch(self, tenant_id, delivery_ids):
        try:
            handlers.dispatch_many(self._uow_factory(tenant_id), self.providers, delivery_ids, self.send_policy)
        except Exception:  # the database, not a provider: the timer picks the queued rows up again
            log.exception("could not dispatch deliveries %s", delivery_ids)

    @timer(interval=TIMER_SECONDS)
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
                    queued = handlers.fan_out(uow, digest, now) if digest else []
                self._dispatch(tenant_id, queued)
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
