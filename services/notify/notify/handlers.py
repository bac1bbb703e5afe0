"""Use cases of the notify service: plain Python over a unit of work (no nameko).

An event becomes messages in two steps:
1. `fan_out`, inside the event's transaction (with its idempotency claim): find the rule,
   resolve recipients, apply mutes / validation / rate limits / quiet hours, render, and write
   one delivery row per (event, channel, recipient) — the unique key that makes a redelivered
   event or a second notify instance unable to send twice. Inbox messages are written here.
2. `dispatch`, after commit, per queued row: claim it (queued → sending, one winner across
   instances), call the provider with retries (tenacity: exponential backoff with jitter, only
   for transient failures), then record sent or failed and emit notification.sent/failed.
A timer releases deferred rows when quiet hours end and picks up rows a crash left queued.
"""
import datetime as dt
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from svc_common.contracts import EventEnvelope, NotificationV1
from svc_common.db import insert_if_absent, utcnow
from svc_common.errors import Forbidden, NotFound, ValidationFailed, field_error
from svc_common.uow import UnitOfWork

from . import domain, templates
from .models import (
    Delivery,
    DigestCounter,
    InboxMessage,
    ListMember,
    ProviderConfig,
    SubscriptionRule,
    TeamReplica,
    TemplateOverride,
    TenantSettings,
    UserPreference,
    UserReplica,
)
from .providers import OutgoingMessage, ProviderError, Registry, Sent
from .schemas import (
    DeliveryQuery,
    InboxQuery,
    ListMembersIn,
    PreferenceIn,
    ProviderIn,
    RuleIn,
    SettingsIn,
    TemplateIn,
)

log = logging.getLogger(__name__)

INBOX_PROVIDER = "inbox"
ADMIN_ROLES = ("admin",)
DELIVERY_LOG_ROLES = ("admin", "dispatcher")
SENDABLE = ("queued", "deferred", "sending", "sent")  # what counts against rate limits
STALE_QUEUED = dt.timedelta(seconds=30)
STALE_SENDING = dt.timedelta(minutes=10)
DIGEST_NAMESPACE = uuid.UUID("6f1d9a4e-3c1b-4e7a-9a55-0d7b4d1c2e10")


@dataclass(frozen=True)
class SendPolicy:
    """How hard to try a transient failure before the delivery stops as failed."""
    attempts: int = 4
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 8.0

    @classmethod
    def from_env(cls) -> "SendPolicy":
        return cls(int(os.environ.get("NOTIFY_SEND_ATTEMPTS", cls.attempts)),
                   float(os.environ.get("NOTIFY_BACKOFF_SECONDS", cls.backoff_seconds)),
                   float(os.environ.get("NOTIFY_BACKOFF_MAX_SECONDS", cls.backoff_max_seconds)))


def _require(uow: UnitOfWork, roles: tuple[str, ...], what: str) -> None:
    if uow.ctx.actor_role not in roles and uow.ctx.actor_role != "system":
        raise Forbidden(f"{what} is for {', '.join(roles)}")


# -- replicas -------------------------------------------------------------------------------

def upsert_user(uow: UnitOfWork, event: EventEnvelope) -> None:
    data = event.data
    user_id = uuid.UUID(str(data["user_id"]))
    user = uow.session.scalar(sa.select(UserReplica).where(UserReplica.user_id == user_id))
    if user is None:
        user = UserReplica(user_id=user_id)
        uow.session.add(user)
    user.name = data.get("name") or data.get("username") or ""
    user.role = data.get("role") or ""
    user.phone = data.get("phone")
    user.email = data.get("email")
    user.active = bool(data.get("active", True)) and event.type != "user.deactivated"
    if "team_ids" in data:
        user.team_ids = [str(t) for t in data.get("team_ids") or []]


def upsert_team(uow: UnitOfWork, event: EventEnvelope) -> None:
    data = event.data
    team_id = uuid.UUID(str(data["team_id"]))
    team = uow.session.scalar(sa.select(TeamReplica).where(TeamReplica.team_id == team_id))
    if team is None:
        team = TeamReplica(team_id=team_id)
        uow.session.add(team)
    team.name = data.get("name") or ""
    team.member_ids = [str(u) for u in data.get("member_ids") or []]
    team.manager_ids = [str(u) for u in data.get("manager_ids") or []]


# -- settings, rules, templates -------------------------------------------------------------

# A tenant's whole notification configuration is read once per CONFIG_TTL per process rather
# than on every event (the fan-out's hot path). A change made through this process takes effect
# at once; one made through another instance within CONFIG_TTL seconds.
CONFIG_TTL = float(os.environ.get("NOTIFY_CONFIG_TTL_SECONDS", "5"))
_config_cache: dict[tuple[int, uuid.UUID], tuple[float, "TenantConfig"]] = {}


@dataclass
class TenantConfig:
    settings: domain.TenantDefaults
    rules: dict[str, dict]
    providers: dict[str, dict]  # channel → {kind, settings, secrets} of the enabled provider
    templates: dict[tuple[str, str, str], dict]

    def rule(self, event_type: str) -> dict | None:
        return self.rules.get(event_type) or domain.DEFAULT_RULES.get(event_type)

    def template(self, event_type: str, channel: str, locale: str) -> dict[str, str] | None:
        for candidate in (locale, locale.split("-")[0], templates.DEFAULT_LOCALE):
            if (event_type, channel, candidate) in self.templates:
                return self.templates[(event_type, channel, candidate)]
        return templates.builtin(event_type, channel, locale)


def tenant_config(uow: UnitOfWork) -> TenantConfig:
    key = (id(uow.db), uow.ctx.tenant_id)
    cached = _config_cache.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    config = TenantConfig(
        settings=tenant_settings(uow),
        rules={r.event_type: {"recipients": r.recipients, "channels": r.channels, "urgent": r.urgent,
                              "enabled": r.enabled} for r in uow.session.scalars(sa.select(SubscriptionRule))},
        providers={c.channel: {"kind": c.kind, "settings": dict(c.settings), "secrets": dict(c.secrets)}
                   for c in uow.session.scalars(sa.select(ProviderConfig).where(ProviderConfig.enabled.is_(True)))},
        templates={(t.event_type, t.channel, t.locale): t.parts for t in uow.session.scalars(sa.select(TemplateOverride))},
    )
    _config_cache[key] = (time.monotonic() + CONFIG_TTL, config)
    return config


def _config_changed(uow: UnitOfWork) -> None:
    _config_cache.pop((id(uow.db), uow.ctx.tenant_id), None)


def tenant_settings(uow: UnitOfWork) -> domain.TenantDefaults:
    row = uow.session.scalar(sa.select(TenantSettings))
    return domain.TenantDefaults.from_values(row.values if row else None)


def effective_rule(uow: UnitOfWork, event_type: str) -> dict | None:
    row = uow.session.scalar(sa.select(SubscriptionRule).where(SubscriptionRule.event_type == event_type))
    if row is not None:
        return {"recipients": row.recipients, "channels": row.channels, "urgent": row.urgent,
                "enabled": row.enabled}
    return domain.DEFAULT_RULES.get(event_type)


# -- fan-out --------------------------------------------------------------------------------

@dataclass
class Target:
    user_id: uuid.UUID | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    muted: tuple[str, ...] = ()
    quiet: tuple[str | None, str | None] = (None, None)
    locale: str | None = None


def _users(uow: UnitOfWork, ids: list[uuid.UUID]) -> list[Target]:
    """Targets for user ids; a user the replica does not know yet still gets the inbox."""
    if not ids:
        return []
    known = {u.user_id: u for u in uow.session.scalars(sa.select(UserReplica).where(UserReplica.user_id.in_(ids)))}
    prefs = {p.user_id: p for p in uow.session.scalars(sa.select(UserPreference).where(UserPreference.user_id.in_(ids)))}
    out = []
    for user_id in dict.fromkeys(ids):
        user, pref = known.get(user_id), prefs.get(user_id)
        if user is not None and not user.active:
            continue
        out.append(Target(user_id=user_id, name=user.name if user else None, phone=user.phone if user else None,
                          email=user.email if user else None,
                          muted=tuple(pref.muted_channels) if pref else (),
                          quiet=(pref.quiet_start, pref.quiet_end) if pref else (None, None),
                          locale=pref.locale if pref else None))
    return out


def _role_ids(uow: UnitOfWork, role: str) -> list[uuid.UUID]:
    return list(uow.session.scalars(sa.select(UserReplica.user_id).where(
        UserReplica.role == role, UserReplica.active.is_(True)).order_by(UserReplica.name)))


def _team_ids(uow: UnitOfWork, team_id) -> list[uuid.UUID]:
    ids = domain.ids_in(team_id)
    if not ids:
        return []
    team = uow.session.scalar(sa.select(TeamReplica).where(TeamReplica.team_id == ids[0]))
    members = domain.ids_in(team.member_ids) if team else []
    # Users whose own replica names the team (user.* team_ids) count too.
    for user in uow.session.scalars(sa.select(UserReplica).where(UserReplica.active.is_(True))):
        if str(ids[0]) in (user.team_ids or []):
            members.append(user.user_id)
    return list(dict.fromkeys(members))


def resolve(uow: UnitOfWork, spec: dict, data: dict) -> list[Target]:
    kind = spec["kind"]
    if kind == "contact":
        if not (data.get("contact_phone") or data.get("contact_email")):
            return []
        return [Target(name=data.get("contact_name"), phone=data.get("contact_phone"), email=data.get("contact_email"))]
    if kind in domain.FIELD_KINDS:
        ids = domain.users_of_field(kind, data)
        # An event that does not name them (no manager_ids / dispatcher_id): every user of the role.
        if not ids and kind in domain.ROLE_FALLBACK:
            ids = _role_ids(uow, domain.ROLE_FALLBACK[kind])
        return _users(uow, ids)
    if kind == "team":
        return _users(uow, _team_ids(uow, spec.get("team_id") or data.get("pool_team_id") or data.get("team_id")))
    if kind == "users":
        return _users(uow, domain.ids_in(spec.get("user_ids")))
    if kind == "list":
        return _users(uow, list(uow.session.scalars(sa.select(ListMember.user_id).where(
            ListMember.list_name == spec.get("list")).order_by(ListMember.id))))
    if kind == "role":
        return _users(uow, _role_ids(uow, spec.get("role")))
    return []


def _variables(uow: UnitOfWork, event: EventEnvelope, settings: domain.TenantDefaults) -> dict:
    data = event.data
    variables = {name: None for name in templates.variables_of(event.type)}
    variables.update(data)
    variables["event_type"] = event.type
    variables["occurred_at"] = event.occurred_at.isoformat()
    technician = domain.ids_in(data.get("technician_id"))
    if technician:
        user = uow.session.scalar(sa.select(UserReplica).where(UserReplica.user_id == technician[0]))
        variables["technician_name"] = user.name if user else None
    if settings.portal_url and data.get("rating_path"):
        variables["rating_url"] = settings.portal_url.rstrip("/") + data["rating_path"]
    return variables


def count_for_digest(uow: UnitOfWork, event: EventEnvelope, settings: domain.TenantDefaults) -> None:
    metrics = {"ticket.created": {"created": 1}, "ticket.completed": {"completed": 1},
               "ticket.overdue": {"overdue": 1}, "stock.low": {"stock_alerts": 1}}.get(event.type, {})
    if event.type == "ticket.visited" and event.data.get("satisfaction") is not None:
        metrics = {"visits": 1, "satisfaction_sum": int(event.data["satisfaction"])}
    if not metrics:
        return
    day = event.occurred_at.astimezone(ZoneInfo(settings.timezone)).date()
    table = DigestCounter.__table__
    for metric, amount in metrics.items():
        insert_if_absent(uow.session, table, {"id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "day": day,
                                              "metric": metric, "value": 0})
        uow.session.execute(sa.update(DigestCounter).where(DigestCounter.day == day, DigestCounter.metric == metric)
                            .values(value=DigestCounter.value + amount))


def fan_out(uow: UnitOfWork, event: EventEnvelope, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Write this event's deliveries (and inbox messages); the ids of those to send now."""
    now = now or utcnow()
    config = tenant_config(uow)
    settings = config.settings
    count_for_digest(uow, event, settings)
    rule = config.rule(event.type)
    if not rule or not rule.get("enabled", True):
        return []
    data = event.data
    providers = config.providers
    urgent = domain.is_urgent(rule, data)
    variables = _variables(uow, event, settings)

    # (channel, address) → target, first rule entry wins; address is what the provider needs.
    messages: dict[tuple[str, str], tuple[Target, str | None]] = {}
    actor = event.actor.id if event.actor else None
    for spec in rule["recipients"]:
        channels = [c for c in (spec.get("channels") or rule["channels"]) if c != "robot"]
        for target in resolve(uow, spec, data):
            if actor is not None and target.user_id == actor:
                continue  # nobody is told of what they did themselves
            for channel in channels:
                if channel == "in_app":
                    if target.user_id is not None:
                        messages.setdefault((channel, str(target.user_id)), (target, None))
                    continue
                if channel == "email" and "email" not in providers:
                    continue  # no SMTP server configured: email is simply not a channel of this tenant
                raw = target.phone if channel == "sms" else target.email
                if not raw:
                    continue
                address = domain.normalize_phone(raw) if channel == "sms" else domain.normalize_email(raw)
                key = (channel, address or str(raw))
                messages.setdefault(key, (target, None if address else f"invalid {'phone number' if channel == 'sms' else 'email address'}"))
    if "robot" in rule["channels"] and "robot" in providers:
        messages.setdefault(("robot", providers["robot"]["kind"]), (Target(), None))

    external = [key for key in messages if key[0] != "in_app"]
    per_recipient, per_tenant = _recent_counts(uow, now, external)
    queued, emitted = [], []
    ref_type, ref_id = domain.ref_of(event.type, data)
    for (channel, address), (target, invalid) in messages.items():
        parts = config.template(event.type, channel, target.locale or settings.locale)
        if parts is None:
            continue
        rendered = templates.render_parts(parts, {**variables, "recipient_name": target.name})
        subject = rendered.get("title")
        text = rendered.get("text") or rendered.get("body", "")
        provider = INBOX_PROVIDER if channel == "in_app" else providers.get(channel, {"kind": "file"})["kind"]
        delivery = Delivery(id=uuid.uuid4(), event_id=event.event_id, event_type=event.type,
                            event_occurred_at=event.occurred_at, channel=channel, recipient=address,
                            user_id=target.user_id, provider=provider, subject=subject, text=text, urgent=urgent,
                            attempts=0, variables=variables if channel == "sms" else None,
                            created_at=now, updated_at=now)
        if channel in target.muted:
            delivery.status, delivery.error = "muted", "muted by the recipient"
        elif invalid:
            delivery.status, delivery.error = "failed", invalid
        elif channel == "in_app":
            delivery.status, delivery.attempts, delivery.sent_at = "sent", 1, now
            uow.session.add(InboxMessage(user_id=target.user_id, title=subject or "", body=text, event_type=event.type,
                                         category=domain.category_of(event.type), ref_type=ref_type,
                                         ref_id=domain.ids_in(ref_id)[0] if ref_id else None, created_at=now))
        elif per_recipient.get((channel, address), 0) >= settings.per_recipient_per_hour.get(channel, 10**9):
            delivery.status, delivery.error = "rate_limited", "too many messages to this recipient in the last hour"
        elif per_tenant.get(channel, 0) >= settings.per_tenant_per_minute.get(channel, 10**9):
            delivery.status, delivery.error = "rate_limited", "too many messages from this company in the last minute"
        else:
            start, end = target.quiet if target.quiet[0] else (settings.quiet_start, settings.quiet_end)
            until = None if urgent else domain.quiet_until(now, start, end, settings.timezone)
            delivery.status, delivery.send_after = ("deferred", until) if until else ("queued", None)
            per_recipient[(channel, address)] = per_recipient.get((channel, address), 0) + 1
            per_tenant[channel] = per_tenant.get(channel, 0) + 1
        uow.session.add(delivery)
        if delivery.status in ("sent", "failed"):
            emitted.append(delivery)
        if delivery.status == "queued":
            queued.append(delivery.id)
    uow.session.flush()  # one round of INSERTs for the whole event
    for delivery in emitted:
        _emit(uow, delivery)
    return queued


def _recent_counts(uow: UnitOfWork, now: dt.datetime, keys: list[tuple[str, str]]
                   ) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """What counts against the rate limits: messages per (channel, recipient) in the last hour
    and per channel for the whole tenant in the last minute (two queries per event)."""
    if not keys:
        return {}, {}
    sendable = Delivery.status.in_(SENDABLE)
    by_recipient = uow.session.execute(
        sa.select(Delivery.channel, Delivery.recipient, sa.func.count())
        .where(sendable, Delivery.created_at >= now - dt.timedelta(hours=1),
               sa.tuple_(Delivery.channel, Delivery.recipient).in_(keys))
        .group_by(Delivery.channel, Delivery.recipient)).all()
    by_channel = uow.session.execute(
        sa.select(Delivery.channel, sa.func.count())
        .where(sendable, Delivery.created_at >= now - dt.timedelta(minutes=1),
               Delivery.channel.in_({channel for channel, _ in keys}))
        .group_by(Delivery.channel)).all()
    return {(c, r): n for c, r, n in by_recipient}, {c: n for c, n in by_channel}


def _emit(uow: UnitOfWork, delivery: Delivery) -> None:
    uow.emit(f"notification.{delivery.status}", NotificationV1(
        notification_id=delivery.id, channel=delivery.channel, recipient=delivery.recipient,
        source_event_type=delivery.event_type, error=delivery.error, source_event_id=delivery.event_id,
        user_id=delivery.user_id, provider=delivery.provider, attempts=delivery.attempts))


# -- sending --------------------------------------------------------------------------------

def claim(uow: UnitOfWork, delivery_ids: list[uuid.UUID], now: dt.datetime) -> list[dict]:
    """Take due deliveries for sending (one winner per row across instances): the send jobs."""
    claimed = list(uow.session.scalars(
        sa.update(Delivery)
        .where(Delivery.id.in_(delivery_ids),
               sa.or_(Delivery.status == "queued", sa.and_(Delivery.status == "deferred", Delivery.send_after <= now)))
        .values(status="sending", claimed_at=now, updated_at=now)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)))
    if not claimed:
        return []
    providers = tenant_config(uow).providers
    jobs = []
    for delivery in uow.session.scalars(sa.select(Delivery).where(Delivery.id.in_(claimed))):
        config = providers.get(delivery.channel) or ({"kind": "file"} if delivery.channel == "sms" else None)
        jobs.append({"delivery_id": delivery.id, "kind": config["kind"] if config else None,
                     "settings": (config or {}).get("settings", {}), "secrets": (config or {}).get("secrets", {}),
                     "message": OutgoingMessage(channel=delivery.channel, recipient=delivery.recipient,
                                                event_type=delivery.event_type, subject=delivery.subject,
                                                text=delivery.text, variables=delivery.variables or {})})
    return jobs


def send_with_retries(registry: Registry, job: dict, policy: SendPolicy,
                      sleep: Callable[[float], None] | None = None) -> tuple[Sent | None, ProviderError | None, int]:
    """(what the provider answered, or the final error; attempts made). Only transient errors retry."""
    if job["kind"] is None:
        return None, ProviderError(f"no {job['message'].channel} provider configured", transient=False), 0
    provider = registry.build(job["message"].channel, job["kind"], job["settings"], job["secrets"])
    retrying = Retrying(stop=stop_after_attempt(max(policy.attempts, 1)),
                        wait=wait_random_exponential(multiplier=policy.backoff_seconds, max=policy.backoff_max_seconds),
                        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.transient),
                        reraise=True, **({"sleep": sleep} if sleep else {}))
    try:
        sent = retrying(provider.send, job["message"])
        return sent, None, retrying.statistics.get("attempt_number", 1)
    except ProviderError as exc:
        return None, exc, retrying.statistics.get("attempt_number", 1)
    except Exception as exc:  # a provider bug or bad settings: permanent; never echo settings (secrets)
        return None, ProviderError(f"{type(exc).__name__} in the {job['kind']} provider", transient=False), \
            retrying.statistics.get("attempt_number", 1)


def finish(uow: UnitOfWork, outcomes: list[tuple[uuid.UUID, Sent | None, ProviderError | None, int]],
           now: dt.datetime) -> dict[uuid.UUID, str]:
    """Record what the providers answered and emit notification.sent / notification.failed."""
    rows = {d.id: d for d in uow.session.scalars(sa.select(Delivery).where(Delivery.id.in_([o[0] for o in outcomes])))}
    for delivery_id, sent, error, attempts in outcomes:
        delivery = rows[delivery_id]
        delivery.attempts += attempts
        delivery.updated_at = now
        if sent is not None:
            delivery.status, delivery.error, delivery.sent_at = "sent", None, now
            delivery.provider_message_id, delivery.provider_response = sent.message_id, sent.response
        else:
            delivery.status, delivery.error = "failed", str(error)
            delivery.provider_response = error.response if error else None
    uow.session.flush()
    for delivery in rows.values():
        _emit(uow, delivery)
    return {delivery_id: delivery.status for delivery_id, delivery in rows.items()}


def dispatch_many(uow_factory: Callable[[], UnitOfWork], registry: Registry, delivery_ids: list[uuid.UUID],
                  policy: SendPolicy = SendPolicy(), sleep: Callable[[float], None] | None = None
                  ) -> dict[uuid.UUID, str]:
    """Send due deliveries: claim them in one transaction, call the providers outside any
    transaction, record the outcomes in one more. Their new statuses (absent: not due, or taken)."""
    if not delivery_ids:
        return {}
    with uow_factory() as uow:
        jobs = claim(uow, delivery_ids, utcnow())
    outcomes = []
    for job in jobs:
        sent, error, attempts = send_with_retries(registry, job, policy, sleep)
        if error is not None:
            log.warning("delivery failed", extra={"delivery_id": str(job["delivery_id"]), "provider": job["kind"],
                                                  "error": str(error), "attempts": attempts})
        outcomes.append((job["delivery_id"], sent, error, attempts))
    if not outcomes:
        return {}
    with uow_factory() as uow:
        return finish(uow, outcomes, utcnow())


def dispatch(uow_factory: Callable[[], UnitOfWork], registry: Registry, delivery_id: uuid.UUID,
             policy: SendPolicy = SendPolicy(), sleep: Callable[[float], None] | None = None) -> str | None:
    """Send one due delivery; its new status, or None if it was not due or another instance has it."""
    return dispatch_many(uow_factory, registry, [delivery_id], policy, sleep).get(delivery_id)


def resend(uow: UnitOfWork, delivery_id: uuid.UUID) -> Delivery:
    """An admin puts a failed delivery back in the queue (the caller dispatches it after commit)."""
    _require(uow, ADMIN_ROLES, "resending")
    delivery = uow.get_or_404(Delivery, delivery_id, "delivery_id", "delivery")
    if delivery.status not in ("failed", "rate_limited"):
        raise ValidationFailed(f"delivery is {delivery.status}", [{"field": "status", "message": f"delivery is {delivery.status}; only failed or rate-limited ones are resent"}])
    if delivery.channel == "sms" and domain.normalize_phone(delivery.recipient) is None:
        raise field_error("recipient", "invalid phone number; it cannot be resent")
    delivery.status, delivery.error, delivery.send_after = "queued", None, None
    return delivery


def due_deliveries(db, now: dt.datetime, limit: int = 500) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, delivery) of every delivery due across tenants: deferred ones whose quiet hours
    ended, and queued ones a crash left behind (older than STALE_QUEUED)."""
    with db.session(None) as session:
        rows = session.execute(sa.select(Delivery.tenant_id, Delivery.id).where(sa.or_(
            sa.and_(Delivery.status == "deferred", Delivery.send_after <= now),
            sa.and_(Delivery.status == "queued", Delivery.updated_at <= now - STALE_QUEUED),
        )).order_by(Delivery.created_at).limit(limit)).all()
    return [(r[0], r[1]) for r in rows]


def stale_sending(db, now: dt.datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
    with db.session(None) as session:
        rows = session.execute(sa.select(Delivery.tenant_id, Delivery.id).where(
            Delivery.status == "sending", Delivery.claimed_at <= now - STALE_SENDING).limit(500)).all()
    return [(r[0], r[1]) for r in rows]


def fail_interrupted(uow: UnitOfWork, delivery_id: uuid.UUID) -> None:
    """A send interrupted by a crash is not repeated blindly (at most once): it fails, an admin may resend."""
    delivery = uow.session.get(Delivery, delivery_id)
    if delivery is not None and delivery.status == "sending":
        delivery.status, delivery.error = "failed", "interrupted while sending; resend if it did not arrive"
        uow.session.flush()
        _emit(uow, delivery)


# -- daily digest ---------------------------------------------------------------------------

def known_tenants(db) -> list[uuid.UUID]:
    with db.session(None) as session:
        return list(session.scalars(sa.select(UserReplica.tenant_id).distinct()))


def digest_event(uow: UnitOfWork, now: dt.datetime) -> EventEnvelope | None:
    """The tenant's daily digest if it is due now and not yet taken by an instance (it is then)."""
    settings = tenant_settings(uow)
    row = uow.session.scalar(sa.select(TenantSettings))
    today = domain.digest_due(now, settings.digest_time, settings.timezone, row.last_digest_on if row else None)
    if today is None:
        return None
    if row is None:
        row = TenantSettings(values={})
        uow.session.add(row)
        uow.session.flush()
    taken = uow.session.execute(sa.update(TenantSettings).where(
        TenantSettings.id == row.id,
        sa.or_(TenantSettings.last_digest_on.is_(None), TenantSettings.last_digest_on < today))
        .values(last_digest_on=today).execution_options(synchronize_session=False)).rowcount
    if taken != 1:
        return None
    day = today - dt.timedelta(days=1)
    counts = dict(uow.session.execute(sa.select(DigestCounter.metric, DigestCounter.value)
                                      .where(DigestCounter.day == day)).all())
    visits = counts.get("visits", 0)
    data = {"day": day.isoformat(), "created": counts.get("created", 0), "completed": counts.get("completed", 0),
            "overdue": counts.get("overdue", 0), "visits": visits, "stock_alerts": counts.get("stock_alerts", 0),
            "satisfaction": (f"{counts.get('satisfaction_sum', 0) / visits:.1f}" if visits else None)}
    return EventEnvelope(event_id=uuid.uuid5(DIGEST_NAMESPACE, f"{uow.ctx.tenant_id}:{today}"), type="digest.daily",
                         occurred_at=now, tenant_id=uow.ctx.tenant_id, data=data)


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
    if query.category:
        listed = listed.where(InboxMessage.category == query.category)
    rows = uow.session.scalars(listed.order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
                               .offset(query.offset).limit(query.limit)).all()
    return list(rows), _count(uow, listed), _count(uow, unread)


def unread_count(uow: UnitOfWork) -> int:
    return _count(uow, sa.select(InboxMessage).where(InboxMessage.user_id == _caller(uow),
                                                     InboxMessage.read_at.is_(None)))


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
    _require(uow, DELIVERY_LOG_ROLES, "the delivery log")
    listed = sa.select(Delivery)
    if query.channel:
        listed = listed.where(Delivery.channel == query.channel)
    if query.status:
        listed = listed.where(Delivery.status == query.status)
    if query.event_type:
        listed = listed.where(Delivery.event_type == query.event_type)
    rows = uow.session.scalars(listed.order_by(Delivery.created_at.desc(), Delivery.id.desc())
                               .offset(query.offset).limit(query.limit)).all()
    return list(rows), _count(uow, listed)


# -- configuration (admins) -----------------------------------------------------------------

def provider_view(config: ProviderConfig) -> dict:
    """A provider config as the API shows it: secrets masked, never in full."""
    return {"channel": config.channel, "kind": config.kind, "enabled": config.enabled,
            "settings": config.settings, "secrets": {k: domain.mask(v) for k, v in (config.secrets or {}).items()},
            "updated_at": config.updated_at.isoformat() if config.updated_at else None}


def list_providers(uow: UnitOfWork) -> list[dict]:
    _require(uow, ADMIN_ROLES, "provider settings")
    return [provider_view(c) for c in uow.session.scalars(sa.select(ProviderConfig).order_by(ProviderConfig.channel))]


def configure_provider(uow: UnitOfWork, channel: str, body: ProviderIn, registry: Registry) -> dict:
    _require(uow, ADMIN_ROLES, "provider settings")
    _config_changed(uow)
    if channel not in ("sms", "email", "robot"):
        raise field_error("channel", "must be sms, email or robot")
    cls = registry.kinds.get((channel, body.kind))
    if cls is None:
        kinds = sorted(k for c, k in registry.kinds if c == channel)
        raise field_error("kind", f"unknown {channel} provider; one of {', '.join(kinds)}")
    config = uow.session.scalar(sa.select(ProviderConfig).where(ProviderConfig.channel == channel))
    secrets = dict(config.secrets) if config is not None and config.kind == body.kind else {}
    secrets.update({k: v for k, v in body.secrets.items() if v})
    errors = [{"field": f"secrets.{k}", "message": "unknown secret"} for k in body.secrets if k not in cls.secret_fields]
    errors += [{"field": f"settings.{k}", "message": "required"} for k in cls.required_settings if not body.settings.get(k)]
    errors += [{"field": f"secrets.{k}", "message": "required"} for k in cls.required_secrets if not secrets.get(k)]
    if "templates" in cls.required_settings:  # template-based SMS (Aliyun, Tencent)
        errors += _check_sms_templates(body.settings.get("templates"))
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    if config is None:
        config = ProviderConfig(channel=channel)
        uow.session.add(config)
    config.kind, config.enabled, config.settings, config.secrets = body.kind, body.enabled, body.settings, secrets
    config.updated_at = utcnow()
    uow.session.flush()
    return provider_view(config)


def _check_sms_templates(mapping) -> list[dict]:
    if not isinstance(mapping, dict) or not mapping:
        return [{"field": "settings.templates", "message": "map event types (or \"*\") to {code, params}"}]
    errors = []
    for event_type, entry in mapping.items():
        field = f"settings.templates.{event_type}"
        if event_type != "*" and event_type not in domain.HANDLED_EVENTS:
            errors.append({"field": field, "message": "unknown event type"})
            continue
        if not isinstance(entry, dict) or not entry.get("code"):
            errors.append({"field": f"{field}.code", "message": "required"})
            continue
        known = (templates.COMMON_VARIABLES if event_type == "*" else templates.variables_of(event_type)) | {"text"}
        unknown = [p for p in entry.get("params", []) if p not in known]
        if unknown:
            errors.append({"field": f"{field}.params", "message": f"unknown variable(s) {', '.join(unknown)}"})
    return errors


def remove_provider(uow: UnitOfWork, channel: str) -> None:
    _require(uow, ADMIN_ROLES, "provider settings")
    _config_changed(uow)
    config = uow.session.scalar(sa.select(ProviderConfig).where(ProviderConfig.channel == channel))
    if config is None:
        raise NotFound(f"no {channel} provider", [{"field": "channel", "message": "not configured"}])
    uow.session.delete(config)


def _event_type(event_type: str) -> str:
    if event_type not in domain.HANDLED_EVENTS:
        raise field_error("event_type", f"not an event notify handles; one of {', '.join(domain.HANDLED_EVENTS)}")
    return event_type


def list_rules(uow: UnitOfWork) -> list[dict]:
    _require(uow, ADMIN_ROLES, "subscription rules")
    own = {r.event_type: r for r in uow.session.scalars(sa.select(SubscriptionRule))}
    out = []
    for event_type in domain.HANDLED_EVENTS:
        rule = effective_rule(uow, event_type) if event_type in own else domain.DEFAULT_RULES[event_type]
        out.append({"event_type": event_type, "default": event_type not in own, **rule})
    return out


def save_rule(uow: UnitOfWork, event_type: str, body: RuleIn) -> dict:
    _require(uow, ADMIN_ROLES, "subscription rules")
    _config_changed(uow)
    _event_type(event_type)
    row = uow.session.scalar(sa.select(SubscriptionRule).where(SubscriptionRule.event_type == event_type))
    if row is None:
        row = SubscriptionRule(event_type=event_type)
        uow.session.add(row)
    row.enabled, row.urgent, row.channels = body.enabled, body.urgent, list(body.channels)
    row.recipients = [r.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"kind": r.kind}
                      for r in body.recipients]
    row.updated_at = utcnow()
    uow.session.flush()
    return {"event_type": event_type, "default": False, **effective_rule(uow, event_type)}


def reset_rule(uow: UnitOfWork, event_type: str) -> dict:
    _require(uow, ADMIN_ROLES, "subscription rules")
    _config_changed(uow)
    _event_type(event_type)
    uow.session.execute(sa.delete(SubscriptionRule).where(SubscriptionRule.event_type == event_type))
    return {"event_type": event_type, "default": True, **domain.DEFAULT_RULES[event_type]}


def list_templates(uow: UnitOfWork, event_type: str | None) -> list[dict]:
    """Built-in and own templates, with the variables each event offers."""
    _require(uow, ADMIN_ROLES, "templates")
    own = {(t.event_type, t.channel, t.locale): t.parts for t in uow.session.scalars(sa.select(TemplateOverride))}
    out = []
    for et in ([_event_type(event_type)] if event_type else domain.HANDLED_EVENTS):
        for channel in ("in_app", "sms", "email", "robot"):
            for locale in templates.LOCALES:
                parts = own.get((et, channel, locale)) or templates.builtin(et, channel, locale)
                if parts is None:
                    continue
                out.append({"event_type": et, "channel": channel, "locale": locale, "parts": parts,
                            "custom": (et, channel, locale) in own,
                            "variables": sorted(templates.variables_of(et))})
    return out


def save_template(uow: UnitOfWork, event_type: str, channel: str, locale: str, body: TemplateIn) -> dict:
    _require(uow, ADMIN_ROLES, "templates")
    _config_changed(uow)
    _event_type(event_type)
    if locale not in templates.LOCALES:
        raise field_error("locale", f"must be one of {', '.join(templates.LOCALES)}")
    errors = templates.check(event_type, channel, body.parts)
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    row = uow.session.scalar(sa.select(TemplateOverride).where(
        TemplateOverride.event_type == event_type, TemplateOverride.channel == channel,
        TemplateOverride.locale == locale))
    if row is None:
        row = TemplateOverride(event_type=event_type, channel=channel, locale=locale)
        uow.session.add(row)
    row.parts, row.updated_at = dict(body.parts), utcnow()
    return {"event_type": event_type, "channel": channel, "locale": locale, "parts": row.parts, "custom": True,
            "variables": sorted(templates.variables_of(event_type))}


def reset_template(uow: UnitOfWork, event_type: str, channel: str, locale: str) -> None:
    _require(uow, ADMIN_ROLES, "templates")
    _config_changed(uow)
    uow.session.execute(sa.delete(TemplateOverride).where(
        TemplateOverride.event_type == event_type, TemplateOverride.channel == channel,
        TemplateOverride.locale == locale))


def get_settings(uow: UnitOfWork) -> dict:
    _require(uow, ADMIN_ROLES, "notification settings")
    return vars(tenant_settings(uow))


def save_settings(uow: UnitOfWork, body: SettingsIn) -> dict:
    _require(uow, ADMIN_ROLES, "notification settings")
    _config_changed(uow)
    row = uow.session.scalar(sa.select(TenantSettings))
    if row is None:
        row = TenantSettings()
        uow.session.add(row)
    row.values = body.model_dump(mode="json")
    uow.session.flush()
    return vars(domain.TenantDefaults.from_values(row.values))


def _preference_view(user_id: uuid.UUID, pref: UserPreference | None) -> dict:
    return {"user_id": str(user_id), "muted_channels": list(pref.muted_channels) if pref else [],
            "quiet_start": pref.quiet_start if pref else None, "quiet_end": pref.quiet_end if pref else None,
            "locale": pref.locale if pref else None}


def _preference_owner(uow: UnitOfWork, user_id: uuid.UUID | None) -> uuid.UUID:
    if user_id is None or user_id == uow.ctx.actor_id:
        return _caller(uow)
    _require(uow, ADMIN_ROLES, "another user's preferences")
    return user_id


def get_preferences(uow: UnitOfWork, user_id: uuid.UUID | None = None) -> dict:
    owner = _preference_owner(uow, user_id)
    return _preference_view(owner, uow.session.scalar(sa.select(UserPreference).where(UserPreference.user_id == owner)))


def save_preferences(uow: UnitOfWork, body: PreferenceIn, user_id: uuid.UUID | None = None) -> dict:
    owner = _preference_owner(uow, user_id)
    pref = uow.session.scalar(sa.select(UserPreference).where(UserPreference.user_id == owner))
    if pref is None:
        pref = UserPreference(user_id=owner)
        uow.session.add(pref)
    pref.muted_channels = sorted(set(body.muted_channels))
    pref.quiet_start, pref.quiet_end, pref.locale = body.quiet_start, body.quiet_end, body.locale
    uow.session.flush()
    return _preference_view(owner, pref)


def list_lists(uow: UnitOfWork) -> list[dict]:
    members: dict[str, list[str]] = {name: [] for name in domain.LISTS}
    for m in uow.session.scalars(sa.select(ListMember).order_by(ListMember.id)):
        members.setdefault(m.list_name, []).append(str(m.user_id))
    me = str(uow.ctx.actor_id) if uow.ctx.actor_id else None
    return [{"name": name, "user_ids": ids, "subscribed": me in ids} for name, ids in members.items()]


def _list_name(name: str) -> str:
    if name not in domain.LISTS:
        raise field_error("list", f"must be one of {', '.join(domain.LISTS)}")
    return name


def set_list_members(uow: UnitOfWork, name: str, body: ListMembersIn) -> dict:
    _require(uow, ADMIN_ROLES, "list members")
    _list_name(name)
    uow.session.execute(sa.delete(ListMember).where(ListMember.list_name == name))
    for user_id in dict.fromkeys(body.user_ids):
        uow.session.add(ListMember(list_name=name, user_id=user_id))
    uow.session.flush()
    return next(item for item in list_lists(uow) if item["name"] == name)


def subscribe(uow: UnitOfWork, name: str, on: bool) -> dict:
    """The caller subscribes to (or leaves) a list themselves (列表页的订阅按钮)."""
    _list_name(name)
    me = _caller(uow)
    existing = uow.session.scalar(sa.select(ListMember).where(ListMember.list_name == name, ListMember.user_id == me))
    if on and existing is None:
        uow.session.add(ListMember(list_name=name, user_id=me))
    elif not on and existing is not None:
        uow.session.delete(existing)
    uow.session.flush()
    return next(item for item in list_lists(uow) if item["name"] == name)
