"""Use cases of the notify service: plain Python over a unit of work (no nameko).

An event becomes messages in two steps:
1. `fan_out`, inside the event's transaction (with its idempotency claim): find the rule,
   resolve recipients, apply mutes / validation / rate limits / quiet hours, render, and write
   one delivery row per (event, channel, recipient) — the unique key that makes a redelivered
   event or a second notify instance unable to send twice — and the inbox messages, each kind
   in one bulk INSERT. It returns the send jobs (what the providers need, so nothing is re-read).
2. `send_jobs`, after commit, for a batch of jobs (of many events): claim them (queued → sending,
   one winner per row across instances) in one UPDATE, call the providers outside any transaction
   with retries (tenacity: exponential backoff with jitter, only for transient failures), then
   record sent or failed in one more transaction and emit notification.sent/failed.
A timer releases deferred rows when quiet hours end and picks up rows a crash left queued
(`dispatch_many`, by id); an admin's resend goes the same way.
"""
import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from cachetools import TTLCache
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from svc_common.addresses import normalize_email, normalize_phone
from svc_common.contracts import EventEnvelope
from svc_common.db import UTCDateTime, utcnow
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
from .providers import Attachment, OutgoingMessage, ProviderError, Registry, Sent
from .settings import notify_settings
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
    def configured(cls) -> "SendPolicy":
        settings = notify_settings()
        return cls(settings.send_attempts, settings.backoff_seconds, settings.backoff_max_seconds)


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
    _forget_user(uow, user_id)


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
# at once; one made through another instance within CONFIG_TTL seconds. (The caches are touched
# only by the service's green threads, between yields: no lock.)
CONFIG_TTL = notify_settings().config_ttl_seconds
CACHED_TENANTS, CACHED_USERS = 10_000, 200_000  # per process; the least recently used go first
_config_cache: TTLCache = TTLCache(maxsize=CACHED_TENANTS, ttl=CONFIG_TTL)  # (db, tenant) → TenantConfig


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
    config = _config_cache.get(key)
    if config is not None:
        return config
    config = TenantConfig(
        settings=tenant_settings(uow),
        rules={r.event_type: {"recipients": r.recipients, "channels": r.channels, "urgent": r.urgent,
                              "enabled": r.enabled} for r in uow.session.scalars(sa.select(SubscriptionRule))},
        providers={c.channel: {"kind": c.kind, "settings": dict(c.settings), "secrets": dict(c.secrets)}
                   for c in uow.session.scalars(sa.select(ProviderConfig).where(ProviderConfig.enabled.is_(True)))},
        templates={(t.event_type, t.channel, t.locale): t.parts for t in uow.session.scalars(sa.select(TemplateOverride))},
    )
    _config_cache[key] = config
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


# -- recipients -----------------------------------------------------------------------------

@dataclass
class Target:
    user_id: uuid.UUID | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    muted: tuple[str, ...] = ()
    quiet: tuple[str | None, str | None] = (None, None)
    locale: str | None = None


# Recipients' replica rows and preferences are kept per process for CONFIG_TTL too (the fan-out
# would read them again for every event): a user.* event or saved preferences handled by this
# process take effect at once, by another instance within CONFIG_TTL seconds. Users the replica
# does not know yet are not cached, so their user.created is seen at once.
_user_cache: TTLCache = TTLCache(maxsize=CACHED_USERS, ttl=CONFIG_TTL)  # (db, tenant, user) → (Target, active)


def _user_key(uow: UnitOfWork, user_id: uuid.UUID) -> tuple[int, uuid.UUID, uuid.UUID]:
    return (id(uow.db), uow.ctx.tenant_id, user_id)


def _forget_user(uow: UnitOfWork, user_id: uuid.UUID) -> None:
    _user_cache.pop(_user_key(uow, user_id), None)


def _known_users(uow: UnitOfWork, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[Target, bool]]:
    """user id → (target, active), from the cache or (for the others) two queries."""
    found: dict[uuid.UUID, tuple[Target, bool]] = {}
    missing = []
    for user_id in dict.fromkeys(ids):
        cached = _user_cache.get(_user_key(uow, user_id))
        if cached is not None:
            found[user_id] = cached
        else:
            missing.append(user_id)
    if not missing:
        return found
    known = {u.user_id: u for u in uow.session.scalars(sa.select(UserReplica).where(UserReplica.user_id.in_(missing)))}
    prefs = {p.user_id: p for p in uow.session.scalars(sa.select(UserPreference).where(UserPreference.user_id.in_(missing)))}
    for user_id in missing:
        user, pref = known.get(user_id), prefs.get(user_id)
        target = Target(user_id=user_id, name=user.name if user else None, phone=user.phone if user else None,
                        email=user.email if user else None,
                        muted=tuple(pref.muted_channels) if pref else (),
                        quiet=(pref.quiet_start, pref.quiet_end) if pref else (None, None),
                        locale=pref.locale if pref else None)
        found[user_id] = (target, user.active if user else True)
        if user is not None:
            _user_cache[_user_key(uow, user_id)] = (target, user.active)
    return found


def _users(uow: UnitOfWork, ids: list[uuid.UUID]) -> list[Target]:
    """Targets for user ids, active ones only; a user the replica does not know yet still gets the inbox."""
    if not ids:
        return []
    return [target for target, active in _known_users(uow, ids).values() if active]


def _role_ids(uow: UnitOfWork, roles: list[str]) -> list[uuid.UUID]:
    return list(uow.session.scalars(sa.select(UserReplica.user_id).where(
        UserReplica.role.in_(roles), UserReplica.active.is_(True)).order_by(UserReplica.name)))


def _team_ids(uow: UnitOfWork, team_ids) -> list[uuid.UUID]:
    """Members of the teams (one id or several), from team.updated and from the users' own team_ids."""
    ids = domain.ids_in(team_ids)
    if not ids:
        return []
    members = []
    for team in uow.session.scalars(sa.select(TeamReplica).where(TeamReplica.team_id.in_(ids))):
        members += domain.ids_in(team.member_ids)
    wanted = {str(i) for i in ids}
    for user in uow.session.scalars(sa.select(UserReplica).where(UserReplica.active.is_(True))):
        if wanted.intersection(user.team_ids or []):
            members.append(user.user_id)
    return list(dict.fromkeys(members))


def _audience_ids(uow: UnitOfWork, data: dict) -> list[uuid.UUID]:
    """An announcement's audience: all staff, the members of its teams, or the users of its roles."""
    audience = data.get("audience")
    if audience == "teams":
        return _team_ids(uow, data.get("team_ids") or [])
    if audience == "roles":
        roles = [str(r) for r in data.get("roles") or []]
        return _role_ids(uow, roles) if roles else []
    if audience == "all":
        return list(uow.session.scalars(sa.select(UserReplica.user_id).where(UserReplica.active.is_(True))
                                        .order_by(UserReplica.name)))
    return []


def _group_ids(uow: UnitOfWork, spec: dict, data: dict) -> tuple[tuple, Callable[[], list[uuid.UUID]]]:
    """(memo key, lookup) of a recipient kind that names a group of users rather than event fields."""
    kind = spec["kind"]
    if kind == "team":
        team = spec.get("team_id") or data.get("pool_team_id") or data.get("team_id")
        return ("team", str(team)), lambda: _team_ids(uow, team)
    if kind == "list":
        return ("list", spec.get("list")), lambda: list(uow.session.scalars(sa.select(ListMember.user_id).where(
            ListMember.list_name == spec.get("list")).order_by(ListMember.id)))
    if kind == "role":
        return ("role", spec.get("role")), lambda: _role_ids(uow, [spec.get("role")])
    if kind in domain.ROLE_FALLBACK:  # an event that does not name them: every user of the role
        return ("role", domain.ROLE_FALLBACK[kind]), lambda: _role_ids(uow, [domain.ROLE_FALLBACK[kind]])
    # audience
    teams, roles = tuple(map(str, data.get("team_ids") or [])), tuple(map(str, data.get("roles") or []))
    return ("audience", data.get("audience"), teams, roles), lambda: _audience_ids(uow, data)


def resolve(uow: UnitOfWork, spec: dict, data: dict, memo: dict | None = None) -> list[Target]:
    """The targets of one recipient spec for an event's data. `memo` keeps group lookups (a list's
    members, a role's users ...) across the events of a batch."""
    kind = spec["kind"]
    if kind == "contact":
        if not (data.get("contact_phone") or data.get("contact_email")):
            return []
        return [Target(name=data.get("contact_name"), phone=data.get("contact_phone"), email=data.get("contact_email"))]
    if kind == "report_recipient":
        if not (data.get("recipient_phone") or data.get("recipient_email")):
            return []
        return [Target(name=data.get("contact_name"), phone=data.get("recipient_phone"),
                       email=data.get("recipient_email"), locale=data.get("locale"))]
    if kind == "users":
        return _users(uow, domain.ids_in(spec.get("user_ids")))
    if kind in domain.FIELD_KINDS:
        ids = domain.users_of_field(kind, data)
        if ids or kind not in domain.ROLE_FALLBACK:
            return _users(uow, ids)
    if kind not in (*domain.FIELD_KINDS, "team", "list", "role", "audience"):
        return []
    key, lookup = _group_ids(uow, spec, data)
    memo = {} if memo is None else memo
    if key not in memo:
        memo[key] = lookup()
    return _users(uow, memo[key])


def _variables(uow: UnitOfWork, event: EventEnvelope, settings: domain.TenantDefaults) -> dict:
    data = event.data
    variables = {name: None for name in templates.variables_of(event.type)}
    variables.update(data)
    variables["event_type"] = event.type
    variables["occurred_at"] = event.occurred_at.isoformat()
    technician = domain.ids_in(data.get("technician_id"))
    if technician:
        known = _known_users(uow, technician[:1]).get(technician[0])
        variables["technician_name"] = known[0].name if known else None
    portal = settings.portal_url.rstrip("/") if settings.portal_url else None
    if portal and data.get("rating_path"):
        variables["rating_url"] = portal + data["rating_path"]
    if portal and data.get("report_path"):
        variables["report_url"] = portal + data["report_path"]
    return variables


def _upsert_add(session: Session, table: sa.Table, values: dict, keys: list[str], column: str) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET column = column + excluded.column (PostgreSQL and SQLite)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=keys, set_={column: table.c[column] + statement.excluded[column]}))


def count_for_digest(uow: UnitOfWork, events: list[EventEnvelope], settings: domain.TenantDefaults) -> None:
    """Add the events to the daily digest's per-day counters: one upsert per (day, metric) of the batch."""
    totals: dict[tuple[dt.date, str], int] = {}
    for event in events:
        metrics = {"ticket.created": {"created": 1}, "ticket.completed": {"completed": 1},
                   "ticket.overdue": {"overdue": 1}, "stock.low": {"stock_alerts": 1}}.get(event.type, {})
        if event.type == "ticket.visited" and event.data.get("satisfaction") is not None:
            metrics = {"visits": 1, "satisfaction_sum": int(event.data["satisfaction"])}
        day = event.occurred_at.astimezone(ZoneInfo(settings.timezone)).date()
        for metric, amount in metrics.items():
            totals[(day, metric)] = totals.get((day, metric), 0) + amount
    for (day, metric), amount in sorted(totals.items()):  # one order everywhere: no deadlock between batches
        _upsert_add(uow.session, DigestCounter.__table__,
                    {"id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "day": day, "metric": metric, "value": amount},
                    ["tenant_id", "day", "metric"], "value")


# -- rate limits ----------------------------------------------------------------------------

# The counts the limits compare with (a recipient's messages of the last hour, the tenant's of the
# last minute, per channel) are read from the delivery log at most once per RATE_REFRESH_SECONDS per
# process and counted on locally in between: reading them for every batch would count the same
# thousands of rows again and again (a group robot, a busy tenant). Within one instance the limits
# are exact; messages another instance queued in the last RATE_REFRESH_SECONDS may be missing, so
# with n instances a flood may overshoot a cap by what n - 1 of them send in that second.
RATE_REFRESH_SECONDS = 1.0
_RATE_CACHE_MAX = 100_000
_rate_counts: dict[tuple, list] = {}  # (db, tenant, window, channel, recipient or None) → [read at, count]


def _stale_rate_entries(uow: UnitOfWork, window: str, keys, clock: float) -> tuple[dict, list]:
    fresh, stale = {}, []
    for key in keys:
        entry = _rate_counts.get((id(uow.db), uow.ctx.tenant_id, window, *key))
        if entry is not None and clock - entry[0] < RATE_REFRESH_SECONDS:
            fresh[key] = entry
        else:
            stale.append(key)
    if stale and len(_rate_counts) > _RATE_CACHE_MAX:
        for cache_key in [k for k, entry in _rate_counts.items() if clock - entry[0] >= RATE_REFRESH_SECONDS]:
            del _rate_counts[cache_key]
    return fresh, stale


def _per_recipient_counts(uow: UnitOfWork, now: dt.datetime, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list]:
    """(channel, recipient) → [read at, messages in the last hour that count against the limit]; the
    caller adds what it queues."""
    clock = time.monotonic()
    out, stale = _stale_rate_entries(uow, "hour", keys, clock)
    if stale:
        counted = dict(((c, r), n) for c, r, n in uow.session.execute(
            sa.select(Delivery.channel, Delivery.recipient, sa.func.count())
            .where(Delivery.status.in_(SENDABLE), Delivery.created_at >= now - dt.timedelta(hours=1),
                   sa.tuple_(Delivery.channel, Delivery.recipient).in_(stale))
            .group_by(Delivery.channel, Delivery.recipient)))
        for key in stale:
            out[key] = _rate_counts[(id(uow.db), uow.ctx.tenant_id, "hour", *key)] = [clock, counted.get(key, 0)]
    return out


def _per_tenant_counts(uow: UnitOfWork, now: dt.datetime, channels: set[str],
                       settings: domain.TenantDefaults) -> dict[str, list]:
    """channel → [read at, messages of the tenant in the last minute]; the caller adds what it queues."""
    clock = time.monotonic()
    fresh, stale = _stale_rate_entries(uow, "minute", [(channel, None) for channel in channels], clock)
    out = {channel: entry for (channel, _), entry in fresh.items()}
    for channel, _ in stale:
        # Counting past the cap tells nothing more: the scan stops there.
        recent = (sa.select(Delivery.id).where(Delivery.channel == channel, Delivery.status.in_(SENDABLE),
                                               Delivery.created_at >= now - dt.timedelta(minutes=1))
                  .limit(settings.per_tenant_per_minute.get(channel, 10**9)).subquery())
        out[channel] = _rate_counts[(id(uow.db), uow.ctx.tenant_id, "minute", channel, None)] = \
            [clock, uow.session.scalar(sa.select(sa.func.count()).select_from(recent))]
    return out


# -- fan-out --------------------------------------------------------------------------------

@dataclass
class Job:
    """A queued delivery to send, carried from the fan-out (or read back by `claim`) with what the
    provider needs; `kind`, `settings` and `secrets` are the tenant's provider, filled in when claimed."""
    delivery_id: uuid.UUID
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID | None
    provider: str  # as recorded on the delivery
    message: OutgoingMessage
    attempts: int = 0  # made before (a resent delivery)
    correlation_id: str | None = None  # of the event's request (not kept: a job read back has none)
    kind: str | None = None
    settings: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)


def fan_out(uow: UnitOfWork, event: EventEnvelope, now: dt.datetime | None = None) -> list[Job]:
    """Write one event's deliveries and inbox messages; the jobs to send now."""
    return fan_out_many(uow, [event], now)


def fan_out_many(uow: UnitOfWork, events: list[EventEnvelope], now: dt.datetime | None = None) -> list[Job]:
    """Write the deliveries and inbox messages of a batch of one tenant's events, each kind of row
    in one bulk INSERT, with the rule, templates, recipients and rate-limit counts read once for the
    batch; the jobs to send now."""
    now = now or utcnow()
    config = tenant_config(uow)
    plans = []
    for event in events:
        rule = config.rule(event.type)
        enabled = rule if rule and rule.get("enabled", True) else None
        plans.append((event, enabled, domain.recipients_of(event.type, rule, event.data)))
    _known_users(uow, _named_users(plans))  # one read for every user the batch names by id
    memo: dict = {}
    planned = [(event, rule, _messages(uow, event, rule, specs, config.providers, memo))
               for event, rule, specs in plans if specs]
    external = list(dict.fromkeys(key for _, _, messages in planned for key in messages if key[0] != "in_app"))
    per_recipient = _per_recipient_counts(uow, now, external)
    per_tenant = _per_tenant_counts(uow, now, {channel for channel, _ in external}, config.settings)
    rows, inbox, jobs = [], [], []
    for event, rule, messages in planned:
        _deliveries(uow, event, rule, messages, config, now, per_recipient, per_tenant, rows, inbox, jobs)
    _insert_all(uow, Delivery.__table__, rows)
    _insert_all(uow, InboxMessage.__table__, inbox)
    _emit_all(uow, [row for row in rows if row["status"] in ("sent", "failed")],
              {event.event_id: event.correlation_id for event in events})
    count_for_digest(uow, events, config.settings)  # last: its counter rows stay locked only until the commit
    return jobs


def _insert_all(uow: UnitOfWork, table: sa.Table, rows: list[dict]) -> None:
    """INSERT many rows (all with the same keys, tenant_id set) in one statement. On PostgreSQL each
    column goes as one array (unnest): psycopg2 adapts arrays in C, where SQLAlchemy's bind step
    costs about 0.2 ms of Python per row of these tables."""
    if not rows:
        return
    if uow.session.get_bind().dialect.name != "postgresql":
        uow.session.execute(sa.insert(table), rows)
        return
    columns = tuple(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
    uow.session.execute(_unnest_insert(table, columns), {
        c: [_array_value(row[c], c in json_columns) for row in rows] for c in columns})


def _array_value(value, as_json: bool):
    if value is None:
        return None
    if as_json:
        return json.dumps(value)
    return str(value) if isinstance(value, uuid.UUID) else value


@lru_cache(maxsize=16)
def _unnest_insert(table: sa.Table, columns: tuple[str, ...]) -> sa.TextClause:
    dialect = postgresql.dialect()
    arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
    return sa.text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})")


def _named_users(plans: list) -> list[uuid.UUID]:
    ids = []
    for event, _, specs in plans:
        ids += domain.ids_in(event.data.get("technician_id"))
        for spec in specs:
            if spec["kind"] in domain.FIELD_KINDS:
                ids += domain.users_of_field(spec["kind"], event.data)
            elif spec["kind"] == "users":
                ids += domain.ids_in(spec.get("user_ids"))
    return ids


def _messages(uow: UnitOfWork, event: EventEnvelope, rule: dict | None, specs: list[dict], providers: dict,
              memo: dict) -> dict[tuple[str, str], tuple[Target, str | None]]:
    """(channel, address) → (target, why it is invalid or None); the first rule entry naming an
    address wins. The address is what the provider needs (a user id for the inbox)."""
    rule_channels = rule["channels"] if rule else []
    messages: dict[tuple[str, str], tuple[Target, str | None]] = {}
    actor = event.actor.id if event.actor else None
    for spec in specs:
        channels = [c for c in (spec.get("channels") or rule_channels) if c != "robot"]
        explicit = spec["kind"] in domain.EXPLICIT_KINDS
        for target in resolve(uow, spec, event.data, memo):
            if actor is not None and target.user_id == actor:
                continue  # nobody is told of what they did themselves
            for channel in channels:
                if channel == "in_app":
                    if target.user_id is not None:
                        messages.setdefault((channel, str(target.user_id)), (target, None))
                    continue
                if channel == "email" and "email" not in providers and not explicit:
                    continue  # no SMTP server configured: email is simply not a channel of this tenant
                raw = target.phone if channel == "sms" else target.email
                if not raw:
                    continue
                address = normalize_phone(raw) if channel == "sms" else normalize_email(raw)
                messages.setdefault((channel, address or str(raw)), (target, None if address else
                                    f"invalid {'phone number' if channel == 'sms' else 'email address'}"))
    if "robot" in rule_channels and "robot" in providers:
        messages.setdefault(("robot", providers["robot"]["kind"]), (Target(), None))
    return messages


def _deliveries(uow: UnitOfWork, event: EventEnvelope, rule: dict | None, messages: dict, config: "TenantConfig",
                now: dt.datetime, per_recipient: dict, per_tenant: dict, rows: list, inbox: list,
                jobs: list) -> None:
    """Render an event's messages and decide each one's fate (muted, invalid, inbox, rate-limited,
    deferred by quiet hours, queued), adding to the batch's delivery rows, inbox rows and jobs."""
    settings, providers, data = config.settings, config.providers, event.data
    urgent = domain.is_urgent(rule or {}, data)
    variables = _variables(uow, event, settings)
    # What a template-based SMS provider may name (an absent one is blank there): kept on the row for a resend.
    sms_variables = {name: value for name, value in variables.items() if value is not None}
    attachments = domain.attachments_of(event.type, data)
    ref_type, ref_id = domain.ref_of(event.type, data)
    ref_ids = domain.ids_in(ref_id) if ref_id else []
    tenant_id = uow.ctx.tenant_id
    for (channel, address), (target, invalid) in messages.items():
        parts = config.template(event.type, channel, target.locale or settings.locale)
        if parts is None:
            continue
        rendered = templates.render_parts(parts, {**variables, "recipient_name": target.name})
        subject = rendered.get("title")
        text = rendered.get("text") or rendered.get("body", "")
        provider = INBOX_PROVIDER if channel == "in_app" else providers.get(channel, {"kind": "file"})["kind"]
        row = {"id": uuid.uuid4(), "tenant_id": tenant_id, "event_id": event.event_id, "event_type": event.type,
               "event_occurred_at": event.occurred_at, "channel": channel, "recipient": address,
               "user_id": target.user_id, "provider": provider, "provider_message_id": None,
               "provider_response": None, "subject": subject, "text": text, "urgent": urgent, "attempts": 0,
               "variables": sms_variables if channel == "sms" else
               ({"attachments": attachments} if channel == "email" and attachments else None),
               "status": "queued", "error": None, "send_after": None, "claimed_at": None, "sent_at": None,
               "created_at": now, "updated_at": now}
        limit_key = (channel, address)
        if channel in target.muted:
            row["status"], row["error"] = "muted", "muted by the recipient"
        elif invalid:
            row["status"], row["error"] = "failed", invalid
        elif channel == "in_app":
            row["status"], row["attempts"], row["sent_at"] = "sent", 1, now
            inbox.append({"id": uuid.uuid4(), "tenant_id": tenant_id, "user_id": target.user_id, "title": subject or "",
                          "body": text, "event_type": event.type, "category": domain.category_of(event.type),
                          "ref_type": ref_type, "ref_id": ref_ids[0] if ref_ids else None, "created_at": now,
                          "read_at": None})
        elif per_recipient[limit_key][1] >= settings.per_recipient_per_hour.get(channel, 10**9):
            row["status"], row["error"] = "rate_limited", "too many messages to this recipient in the last hour"
        elif per_tenant[channel][1] >= settings.per_tenant_per_minute.get(channel, 10**9):
            row["status"], row["error"] = "rate_limited", "too many messages from this company in the last minute"
        else:
            start, end = target.quiet if target.quiet[0] else (settings.quiet_start, settings.quiet_end)
            until = None if urgent else domain.quiet_until(now, start, end, settings.timezone)
            if until:
                row["status"], row["send_after"] = "deferred", until
            per_recipient[limit_key][1] += 1
            per_tenant[channel][1] += 1
        rows.append(row)
        if row["status"] == "queued":
            jobs.append(Job(row["id"], tenant_id, event.event_id, target.user_id, provider, OutgoingMessage(
                channel=channel, recipient=address, event_type=event.type, subject=subject, text=text,
                variables=sms_variables if channel == "sms" else {},
                attachments=attachments if channel == "email" else []), correlation_id=event.correlation_id))


def _emit_all(uow: UnitOfWork, deliveries: list[dict], correlation_of: dict | None = None) -> None:
    """notification.sent / notification.failed for each delivery (a dict of its columns), each with the
    correlation id of the request behind its source event where known (`correlation_of`: source
    event id → correlation id; a batch mixes requests)."""
    events = [(f"notification.{d['status']}", {
        "notification_id": d["id"], "channel": d["channel"], "recipient": d["recipient"],
        "source_event_type": d["event_type"], "error": d["error"], "source_event_id": d["event_id"],
        "user_id": d["user_id"], "provider": d["provider"], "attempts": d["attempts"]}) for d in deliveries]
    correlation_of = correlation_of or {}
    uow.emit_many(events, correlation_ids=[correlation_of.get(d["event_id"]) for d in deliveries])  # one INSERT


def _emit_row(uow: UnitOfWork, delivery: Delivery) -> None:
    _emit_all(uow, [{name: getattr(delivery, name) for name in (
        "id", "status", "channel", "recipient", "event_type", "error", "event_id", "user_id", "provider", "attempts")}])


# -- sending --------------------------------------------------------------------------------

def _with_provider(config: "TenantConfig", job: Job) -> Job:
    provider = config.providers.get(job.message.channel) or ({"kind": "file"} if job.message.channel == "sms" else None)
    if provider is not None:
        job.kind, job.settings, job.secrets = provider["kind"], provider.get("settings", {}), provider.get("secrets", {})
    return job


def claim_jobs(uow: UnitOfWork, jobs: list[Job], now: dt.datetime) -> list[Job]:
    """Take the fan-out's queued deliveries for sending (one winner per row across instances: the
    timer of another instance may have taken a row that waited long). One UPDATE, no re-read."""
    if not jobs:
        return []
    taken = set(uow.session.scalars(
        sa.update(Delivery)
        .where(Delivery.id.in_([job.delivery_id for job in jobs]), Delivery.status == "queued")
        .values(status="sending", claimed_at=now, updated_at=now)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)))
    config = tenant_config(uow)
    return [_with_provider(config, job) for job in jobs if job.delivery_id in taken]


def claim(uow: UnitOfWork, delivery_ids: list[uuid.UUID], now: dt.datetime) -> list[Job]:
    """Take due deliveries by id for sending (the timer, a resend): queued ones and deferred ones
    whose quiet hours are over, one winner per row across instances. The send jobs."""
    claimed = list(uow.session.scalars(
        sa.update(Delivery)
        .where(Delivery.id.in_(delivery_ids),
               sa.or_(Delivery.status == "queued", sa.and_(Delivery.status == "deferred", Delivery.send_after <= now)))
        .values(status="sending", claimed_at=now, updated_at=now)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)))
    if not claimed:
        return []
    config = tenant_config(uow)
    return [_with_provider(config, Job(
        d.id, d.tenant_id, d.event_id, d.user_id, d.provider, OutgoingMessage(
            channel=d.channel, recipient=d.recipient, event_type=d.event_type, subject=d.subject, text=d.text,
            variables=d.variables if d.channel == "sms" and d.variables else {},
            attachments=(d.variables or {}).get("attachments", []) if d.channel == "email" else []),
        attempts=d.attempts)) for d in uow.session.scalars(sa.select(Delivery).where(Delivery.id.in_(claimed)))]


# fetch(tenant_id, attachment source) → the file; raises ProviderError (transient) when it cannot.
Fetch = Callable[[uuid.UUID, dict], Attachment]


def send_with_retries(registry: Registry, job: Job, policy: SendPolicy,
                      sleep: Callable[[float], None] | None = None,
                      fetch: Fetch | None = None) -> tuple[Sent | None, ProviderError | None, int]:
    """(what the provider answered, or the final error; attempts made). Only transient errors retry;
    fetching an attachment is part of each attempt."""
    if job.kind is None:
        return None, ProviderError(f"no {job.message.channel} provider configured", transient=False), 0
    provider = registry.build(job.message.channel, job.kind, job.settings, job.secrets)

    def attempt() -> Sent:
        message = job.message
        if message.attachments:
            if fetch is None:
                raise ProviderError("this sender cannot fetch attachments", transient=False)
            message = replace(message, files=[fetch(job.tenant_id, source) for source in message.attachments])
        return provider.send(message)

    retrying = Retrying(stop=stop_after_attempt(max(policy.attempts, 1)),
                        wait=wait_random_exponential(multiplier=policy.backoff_seconds, max=policy.backoff_max_seconds),
                        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.transient),
                        reraise=True, **({"sleep": sleep} if sleep else {}))
    try:
        sent = retrying(attempt)
        return sent, None, retrying.statistics.get("attempt_number", 1)
    except ProviderError as exc:
        return None, exc, retrying.statistics.get("attempt_number", 1)
    except Exception as exc:  # a provider bug or bad settings: permanent; never echo settings (secrets)
        return None, ProviderError(f"{type(exc).__name__} in the {job.kind} provider", transient=False), \
            retrying.statistics.get("attempt_number", 1)


Outcome = tuple[Job, Sent | None, ProviderError | None, int]


def finish(uow: UnitOfWork, outcomes: list[Outcome], now: dt.datetime) -> dict[uuid.UUID, str]:
    """Record what the providers answered (one executemany UPDATE with a statement compiled once, no
    re-read) and emit notification.sent / notification.failed."""
    if not outcomes:
        return {}
    params, emitted = [], []
    for job, sent, error, attempts in outcomes:
        status = "sent" if sent is not None else "failed"
        params.append({
            "b_id": job.delivery_id, "b_status": status, "b_attempts": job.attempts + attempts,
            "b_error": None if sent is not None else str(error), "b_sent_at": now if sent is not None else None,
            "b_message_id": sent.message_id if sent is not None else None,
            "b_response": sent.response if sent is not None else (error.response if error else None)})
        emitted.append({"id": job.delivery_id, "status": status, "channel": job.message.channel,
                        "recipient": job.message.recipient, "event_type": job.message.event_type,
                        "error": params[-1]["b_error"], "event_id": job.event_id, "user_id": job.user_id,
                        "provider": job.provider, "attempts": params[-1]["b_attempts"]})
    if uow.session.get_bind().dialect.name == "postgresql":
        # One statement for the batch (executemany is a round trip per row): the answers as arrays.
        uow.session.execute(_FINISH_PG, {
            "tenant": uow.ctx.tenant_id, "now": now, "ids": [str(p["b_id"]) for p in params],
            **{column: [p[f"b_{column}"] for p in params] for column in ("status", "attempts", "error", "message_id",
                                                                        "response")},
            "sent": [p["b_sent_at"] is not None for p in params]})
    else:
        uow.session.execute(_FINISH, [{**p, "b_tenant": uow.ctx.tenant_id, "b_now": now} for p in params])
    _emit_all(uow, emitted, {job.event_id: job.correlation_id for job, *_ in outcomes})
    return {row["id"]: row["status"] for row in emitted}


def _finish_statement() -> sa.Update:
    table = Delivery.__table__
    # A failure keeps what an earlier send recorded (sent_at, the provider's message id): there is none.
    return (sa.update(table).where(table.c.tenant_id == sa.bindparam("b_tenant"), table.c.id == sa.bindparam("b_id"))
            .values(status=sa.bindparam("b_status"), attempts=sa.bindparam("b_attempts"), error=sa.bindparam("b_error"),
                    sent_at=sa.func.coalesce(sa.bindparam("b_sent_at", type_=UTCDateTime), table.c.sent_at),
                    provider_message_id=sa.func.coalesce(sa.bindparam("b_message_id", type_=sa.String),
                                                         table.c.provider_message_id),
                    provider_response=sa.bindparam("b_response"), updated_at=sa.bindparam("b_now", type_=UTCDateTime)))


_FINISH = _finish_statement()  # built once: SQLAlchemy keys its compiled cache by the statement
_FINISH_PG = sa.text("""
    UPDATE deliveries AS d SET status = a.status, attempts = a.attempts, error = a.error,
        sent_at = CASE WHEN a.sent THEN :now ELSE d.sent_at END,
        provider_message_id = CASE WHEN a.sent THEN a.message_id ELSE d.provider_message_id END,
        provider_response = a.response, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:status AS text[]), CAST(:attempts AS integer[]), CAST(:error AS text[]),
                CAST(:sent AS boolean[]), CAST(:message_id AS text[]), CAST(:response AS text[]))
        AS a (id, status, attempts, error, sent, message_id, response)
    WHERE d.tenant_id = :tenant AND d.id = a.id""").bindparams(sa.bindparam("now", type_=UTCDateTime),
                                                               sa.bindparam("tenant", type_=sa.Uuid))


def _send_and_finish(uow_for: Callable[[uuid.UUID], UnitOfWork], registry: Registry, jobs: list[Job],
                     policy: SendPolicy, sleep=None, fetch: Fetch | None = None, pmap=map) -> dict[uuid.UUID, str]:
    def send(job: Job) -> Outcome:
        sent, error, attempts = send_with_retries(registry, job, policy, sleep, fetch)
        if error is not None:
            log.warning("delivery failed", extra={"delivery_id": str(job.delivery_id), "provider": job.kind,
                                                  "error": str(error), "attempts": attempts})
        return job, sent, error, attempts

    outcomes = list(pmap(send, jobs))
    if not outcomes:
        return {}
    with uow_for(jobs[0].tenant_id) as uow:
        return finish(uow, outcomes, utcnow())


def send_jobs(uow_for: Callable[[uuid.UUID], UnitOfWork], registry: Registry, jobs: list[Job],
              policy: SendPolicy = SendPolicy(), sleep=None, fetch: Fetch | None = None,
              pmap=map) -> dict[uuid.UUID, str]:
    """Send the fan-out's jobs (of any tenants): per tenant, claim them in one transaction, call the
    providers outside any transaction (`pmap` may run them concurrently), record the outcomes in one
    more. `uow_for(tenant_id)` opens a unit of work. Their new statuses (absent: taken elsewhere)."""
    by_tenant: dict[uuid.UUID, list[Job]] = {}
    for job in jobs:
        by_tenant.setdefault(job.tenant_id, []).append(job)
    statuses = {}
    for tenant_id, own in by_tenant.items():
        with uow_for(tenant_id) as uow:
            claimed = claim_jobs(uow, own, utcnow())
        statuses.update(_send_and_finish(uow_for, registry, claimed, policy, sleep, fetch, pmap))
    return statuses


def dispatch_many(uow_factory: Callable[[], UnitOfWork], registry: Registry, delivery_ids: list[uuid.UUID],
                  policy: SendPolicy = SendPolicy(), sleep: Callable[[float], None] | None = None,
                  fetch: Fetch | None = None, pmap=map) -> dict[uuid.UUID, str]:
    """Send due deliveries of one tenant by id: claim them in one transaction, call the providers
    outside any transaction, record the outcomes in one more. Their new statuses (absent: not due,
    or taken)."""
    if not delivery_ids:
        return {}
    with uow_factory() as uow:
        jobs = claim(uow, delivery_ids, utcnow())
    return _send_and_finish(lambda _tenant: uow_factory(), registry, jobs, policy, sleep, fetch, pmap)


def dispatch(uow_factory: Callable[[], UnitOfWork], registry: Registry, delivery_id: uuid.UUID,
             policy: SendPolicy = SendPolicy(), sleep: Callable[[float], None] | None = None,
             fetch: Fetch | None = None) -> str | None:
    """Send one due delivery; its new status, or None if it was not due or another instance has it."""
    return dispatch_many(uow_factory, registry, [delivery_id], policy, sleep, fetch).get(delivery_id)


def resend(uow: UnitOfWork, delivery_id: uuid.UUID) -> Delivery:
    """An admin puts a failed delivery back in the queue (the caller dispatches it after commit)."""
    _require(uow, ADMIN_ROLES, "resending")
    delivery = uow.get_or_404(Delivery, delivery_id, "delivery_id", "delivery")
    if delivery.status not in ("failed", "rate_limited"):
        raise ValidationFailed(f"delivery is {delivery.status}", [{"field": "status", "message": f"delivery is {delivery.status}; only failed or rate-limited ones are resent"}])
    if delivery.channel == "sms" and normalize_phone(delivery.recipient) is None:
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
        _emit_row(uow, delivery)


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
    _forget_user(uow, owner)
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
