"""Rules of notification: default subscriptions, recipients, quiet hours, limits, validation.
Plain Python, no I/O."""
import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo


# -- recipients -----------------------------------------------------------------------------

# Recipient kinds of a rule and the agreed event field (COMMON.md) each one reads.
FIELD_KINDS = {
    "assignee": "technician_id",
    "collaborators": "assistant_ids",
    "dispatcher": "dispatcher_id",
    "warehouse_managers": "manager_ids",
    "creator": "created_by",
    "requester": "requested_by",
    "owner": "owner_id",
}
# When an event does not carry the field, these kinds fall back to every active user of a role.
ROLE_FALLBACK = {"warehouse_managers": "warehouse_manager", "dispatcher": "dispatcher"}
# contact: the customer's contact (contact_phone); team: the event's team_id or a fixed team_id;
# users: named user_ids; list: subscribers of a named list; role: every active user of a role;
# audience: an announcement's audience (all staff, its team_ids, or its roles);
# report_recipient: whom a service report is sent to (recipient_email / recipient_phone).
RECIPIENT_KINDS = (*FIELD_KINDS, "contact", "team", "users", "list", "role", "audience", "report_recipient")
# Addresses a person at the desk typed in for this one message: they get it on its channel even
# when the tenant has no provider for it, so a missing provider shows in the failed list.
EXPLICIT_KINDS = ("report_recipient",)

# Named subscription lists of the spec (§9.4 订阅通知管理), users subscribe themselves or are added.
LISTS = ("pending_dispatch", "pool", "pending_settlement", "pending_visit", "service_desk",
         "equipment_alerts", "daily_digest")


def ids_in(value) -> list[uuid.UUID]:
    """User ids from an event field that may be one id, a list of ids, or absent."""
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        try:
            out.append(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))
        except (TypeError, ValueError):
            continue
    return out


def users_of_field(kind: str, data: dict) -> list[uuid.UUID]:
    return ids_in(data.get(FIELD_KINDS[kind]))


# -- default rules for a new tenant ---------------------------------------------------------

def _r(*recipients, channels=("in_app",), urgent=False):
    return {"recipients": [r if isinstance(r, dict) else {"kind": r} for r in recipients],
            "channels": list(channels), "urgent": urgent, "enabled": True}


_ADMINS = {"kind": "role", "role": "admin"}
_DISPATCHERS = {"kind": "role", "role": "dispatcher"}
# Sensible defaults per event (what 售后宝 does out of the box): the people an event concerns
# in the inbox, SMS where someone must act or a customer is told, the group robot (when the
# tenant configured one) for what the whole team should see. A tenant's own rule replaces one.
DEFAULT_RULES: dict[str, dict] = {
    "ticket.created": _r({"kind": "list", "list": "pending_dispatch"}, channels=("in_app", "robot")),
    "ticket.assigned": _r("assignee", "collaborators", channels=("in_app", "sms")),
    "ticket.accepted": _r("dispatcher"),
    "ticket.refused": _r("dispatcher", channels=("in_app", "sms")),
    "ticket.overdue": _r("assignee", "dispatcher", channels=("in_app", "sms", "robot"), urgent=True),
    "ticket.completed": {"recipients": [{"kind": "dispatcher", "channels": ["in_app"]},
                                        {"kind": "contact", "channels": ["sms"]},
                                        {"kind": "list", "list": "pending_settlement", "channels": ["in_app"]},
                                        {"kind": "list", "list": "pending_visit", "channels": ["in_app"]}],
                         "channels": ["in_app", "sms"], "urgent": False, "enabled": True},
    "ticket.closed": _r("creator", "dispatcher"),
    "ticket.cancelled": _r("assignee", "collaborators"),
    "ticket.reopened": _r("assignee", "dispatcher"),
    "ticket.published_to_pool": _r("team", {"kind": "list", "list": "pool"}, channels=("in_app", "robot")),
    "ticket.grabbed": _r("dispatcher"),
    "ticket.reassigned": _r("assignee", channels=("in_app", "sms")),
    "ticket.reassignment_requested": _r("dispatcher"),
    "ticket.reassignment_rejected": _r("assignee", "requester"),
    "ticket.visited": _r("assignee", "dispatcher"),  # the technician sees the customer's rating
    # 短信回访: the customer's contact gets the no-login rating link
    "ticket.visit_requested": _r("contact", channels=("sms",)),
    "requisition.requested": _r("warehouse_managers"),
    "requisition.approved": _r("assignee", "requester"),
    "requisition.rejected": _r("assignee", "requester"),
    "stock.low": _r("warehouse_managers", channels=("in_app", "email", "robot")),
    "consumption.shortfall": _r("warehouse_managers", "assignee"),
    "equipment.warranty_expiring": {"recipients": [{"kind": "owner", "channels": ["in_app", "email"]},
                                                   {"kind": "contact", "channels": ["sms"]},
                                                   {"kind": "list", "list": "equipment_alerts"}],
                                    "channels": ["in_app", "email", "sms"], "urgent": False, "enabled": True},
    "equipment.maintenance_due": {"recipients": [{"kind": "owner", "channels": ["in_app", "email"]},
                                                 {"kind": "contact", "channels": ["sms"]},
                                                 {"kind": "list", "list": "equipment_alerts"}],
                                  "channels": ["in_app", "email", "sms"], "urgent": False, "enabled": True},
    "equipment.maintenance_overdue": _r("owner", {"kind": "list", "list": "equipment_alerts"},
                                        channels=("in_app", "email", "robot")),
    "customer.change_requested": _r(_ADMINS),
    "customer.change_approved": _r("requester"),
    "customer.change_rejected": _r("requester"),
    "stock.return_requested": _r("warehouse_managers"),
    "stock.return_approved": _r("assignee", "requester"),
    "stock.return_rejected": _r("assignee", "requester"),
    "equipment.inspection_due": _r("owner", {"kind": "list", "list": "equipment_alerts"}),
    "equipment.inspection_overdue": _r("owner", {"kind": "list", "list": "equipment_alerts"}, channels=("in_app", "robot")),
    "service_request.created": _r({"kind": "list", "list": "service_desk"}, _DISPATCHERS),
    # 管理员汇总日报: by role (system admins) and whoever subscribed to the list.
    "digest.daily": _r(_ADMINS, {"kind": "list", "list": "daily_digest"}, channels=("in_app", "email")),
    # 通知公告: the audience's inbox (always, see REQUIRED_RECIPIENTS); a tenant's rule may add channels.
    "announcement.published": _r("audience"),
    # 服务报告: sent on request by the desk, to the address it names, on the channel it chose (one of the
    # two: the recipient has only that address). Not held back by quiet hours: someone asked for it now.
    "service_report.sent": _r("report_recipient", channels=("email", "sms"), urgent=True),
}
# Recipients an event reaches whatever the tenant's rule says (even a disabled one): an announcement
# is published to its audience's inbox, where its read receipts come from.
REQUIRED_RECIPIENTS: dict[str, list[dict]] = {
    "announcement.published": [{"kind": "audience", "channels": ["in_app"]}],
}


def recipients_of(event_type: str, rule: dict | None, data: dict) -> list[dict]:
    """The recipient specs an event reaches: its rule's (when enabled) and the required ones.

    A back-filled order (补录: work done in the past, entered afterwards) tells no customer anything
    and asks for no dispatch: its ticket.created reaches nobody, its ticket.completed no contact."""
    specs = list(rule["recipients"]) if rule and rule.get("enabled", True) else []
    specs += [dict(spec, required=True) for spec in REQUIRED_RECIPIENTS.get(event_type, [])]
    if data.get("backfilled"):
        if event_type == "ticket.created":
            return []
        specs = [spec for spec in specs if spec["kind"] != "contact"]
    return specs
HANDLED_EVENTS = tuple(DEFAULT_RULES)
# Which service publishes each family of events (digest.daily is notify's own, from its timer).
_PRODUCERS = {"ticket": "tickets", "service_request": "tickets", "announcement": "tickets", "service_report": "tickets",
              "requisition": "inventory", "stock": "inventory", "consumption": "inventory", "equipment": "customers",
              "customer": "customers"}


def producer_of(event_type: str) -> str | None:
    return _PRODUCERS.get(event_type.split(".")[0])

# The inbox tabs of the mobile app (§10.3 通知).
_CATEGORIES = (("digest.", "digest"), ("ticket.", "ticket"), ("requisition.", "parts"), ("stock.", "parts"),
               ("consumption.", "parts"), ("service_request.", "service_desk"), ("customer.change", "approval"),
               ("equipment.", "alert"), ("announcement.", "announcement"), ("service_report.", "ticket"))


def category_of(event_type: str) -> str:
    return next((c for prefix, c in _CATEGORIES if event_type.startswith(prefix)), "system")


def ref_of(event_type: str, data: dict) -> tuple[str | None, str | None]:
    """What an inbox message links to."""
    if event_type.startswith("customer."):
        return "customer", data.get("customer_id")
    for ref_type, key in (("ticket", "ticket_id"), ("requisition", "requisition_id"), ("equipment", "equipment_id"),
                          ("service_request", "request_id"), ("announcement", "announcement_id"),
                          ("customer", "customer_id")):
        if data.get(key):
            return ref_type, data[key]
    return None, None


def attachments_of(event_type: str, data: dict) -> list[dict]:
    """What an email about the event carries attached, as sources fetched when it is sent."""
    if event_type == "service_report.sent" and data.get("ticket_id"):
        return [{"source": "service_report", "ticket_id": str(data["ticket_id"]), "locale": data.get("locale") or "zh-CN"}]
    return []


def is_urgent(rule: dict, data: dict) -> bool:
    return bool(rule.get("urgent")) or str(data.get("priority") or "").lower() in ("urgent", "critical")


# -- tenant settings ------------------------------------------------------------------------

@dataclass
class TenantDefaults:
    timezone: str = "Asia/Shanghai"
    locale: str = "zh-CN"
    # Quiet hours for recipients without their own (customers' contacts, robots); none by default.
    quiet_start: str | None = None
    quiet_end: str | None = None
    digest_time: str | None = "08:00"  # local time of the daily digest; None = off
    # Where the customer portal lives; with it the completion SMS carries a rating link (回访).
    portal_url: str | None = None
    # Flood protection: messages per recipient per channel per hour, and per tenant per channel per minute.
    per_recipient_per_hour: dict = field(default_factory=lambda: {"sms": 10, "email": 30, "robot": 1000})
    per_tenant_per_minute: dict = field(default_factory=lambda: {"sms": 600, "email": 600, "robot": 20})

    @classmethod
    def from_values(cls, values: dict | None) -> "TenantDefaults":
        base = cls()
        for key, value in (values or {}).items():
            if key in ("per_recipient_per_hour", "per_tenant_per_minute"):
                setattr(base, key, {**getattr(base, key), **(value or {})})
            elif hasattr(base, key):
                setattr(base, key, value)
        return base


# -- quiet hours ----------------------------------------------------------------------------

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(now: dt.datetime, start: str | None, end: str | None, timezone: str) -> dt.datetime | None:
    """When the quiet period containing `now` ends (UTC), or None if `now` is not quiet.

    Quiet hours are local times of the tenant's zone and may span midnight (22:00–08:00)."""
    if not start or not end or start == end:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    s, e, t = _hm(start), _hm(end), local.time().replace(second=0, microsecond=0)
    if s < e:
        quiet = s <= t < e
        end_day = local.date()
    else:  # spans midnight
        quiet = t >= s or t < e
        end_day = local.date() + dt.timedelta(days=1) if t >= s else local.date()
    if not quiet:
        return None
    return dt.datetime.combine(end_day, e, tzinfo=zone).astimezone(dt.timezone.utc)


def digest_due(now: dt.datetime, digest_time: str | None, timezone: str, last_sent_on: dt.date | None
               ) -> dt.date | None:
    """The local day whose digest is due now (the digest covers the day before it), or None."""
    if not digest_time:
        return None
    local = now.astimezone(ZoneInfo(timezone))
    if local.time() < _hm(digest_time) or last_sent_on == local.date():
        return None
    return local.date()


def mask(secret: str | None) -> str | None:
    """What the API shows of a secret: enough to recognise it, never enough to use it."""
    if not secret:
        return None
    return "****" + secret[-4:] if len(secret) > 8 else "****"
