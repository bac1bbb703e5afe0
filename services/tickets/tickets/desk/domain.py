"""Desk rules: the request state machine, plan recurrence, money lines, satisfaction. No I/O."""
import datetime as dt
import zoneinfo
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from dateutil import rrule as rr

from svc_common.addresses import normalize_email, normalize_phone
from svc_common.errors import Conflict, Forbidden, field_error

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


class RStatus(StrEnum):
    PENDING_ASSIGNMENT = "pending_assignment"  # 待分配
    PENDING = "pending"                        # 待处理
    IN_PROGRESS = "in_progress"                # 处理中
    PAUSED = "paused"                          # 异常: 暂停
    DONE = "done"                              # 已完成
    CANCELLED = "cancelled"                    # 已取消


R = RStatus
OPEN = frozenset({R.PENDING_ASSIGNMENT, R.PENDING, R.IN_PROGRESS, R.PAUSED})
# action → (allowed from, target; None = decided by the handler)
REQUEST_TRANSITIONS = {
    "assign": (frozenset({R.PENDING_ASSIGNMENT, R.PENDING}), R.PENDING),
    "start": (frozenset({R.PENDING}), R.IN_PROGRESS),
    "pause": (frozenset({R.PENDING, R.IN_PROGRESS}), R.PAUSED),
    "resume": (frozenset({R.PAUSED}), None),
    "complete": (frozenset({R.PENDING_ASSIGNMENT, R.PENDING, R.IN_PROGRESS}), R.DONE),  # e.g. solved on the phone
    "cancel": (OPEN, R.CANCELLED),
    "reopen": (frozenset({R.DONE}), R.IN_PROGRESS),
    "convert": (frozenset({R.PENDING_ASSIGNMENT, R.PENDING, R.IN_PROGRESS}), R.IN_PROGRESS),
    "request_approval": (OPEN - {R.PAUSED}, None),
}
CHANNELS = ("phone", "portal", "qr_scan", "chat", "api")
BUILTIN_REQUEST_TYPES = {  # code → (zh-CN, en, work-order type on conversion)
    "fault": ("故障报修", "Fault report", "repair"),
    "consult": ("咨询", "Enquiry", None),
    "complaint": ("投诉", "Complaint", "complaint"),
    "install": ("安装申请", "Installation request", "install"),
}
# 附加组件: structured blocks a request type adds to its form (code → (zh-CN, en, field definitions)).
COMPONENTS: dict[str, tuple[str, str, list[dict]]] = {
    "shipping": ("发货信息", "Shipping", [
        {"key": "carrier", "label": "物流公司", "kind": "text"},
        {"key": "tracking_no", "label": "运单号", "kind": "text", "required": True},
        {"key": "shipped_on", "label": "发货日期", "kind": "date"}]),
    "return_exchange": ("退换货", "Return / exchange", [
        {"key": "kind", "label": "类型", "kind": "select", "options": ["退货", "换货"], "required": True},
        {"key": "order_no", "label": "订单号", "kind": "text"},
        {"key": "reason", "label": "原因", "kind": "text", "required": True}]),
    "quality": ("质量评测", "Quality evaluation", [
        {"key": "score", "label": "评分", "kind": "number", "min": 1, "max": 5, "required": True},
        {"key": "remark", "label": "评语", "kind": "text"}]),
    "complaint": ("客户投诉", "Complaint", [
        {"key": "category", "label": "投诉类别", "kind": "select", "required": True,
         "options": ["服务态度", "产品质量", "响应速度", "收费", "其他"]},
        {"key": "severity", "label": "严重程度", "kind": "select", "options": ["一般", "严重"]},
        {"key": "content", "label": "投诉内容", "kind": "text", "required": True}]),
}
DESK_ROLES = frozenset({"admin", "dispatcher"})
# Who acts on the no-login portal pages (the rating page): the customer, with no staff rights at all.
CUSTOMER_ROLE = "customer"
DEFAULT_DIMENSIONS = [{"key": "quality", "label": "服务质量", "label_en": "Quality"},
                      {"key": "efficiency", "label": "服务效率", "label_en": "Efficiency"},
                      {"key": "attitude", "label": "服务态度", "label_en": "Attitude"}]
# What a tenant may pick for its service report (服务报告字段), in their order; none picked = all.
REPORT_FIELDS = ("number", "type", "status", "customer", "contact", "phone", "address", "equipment", "serial",
                 "warranty", "technician", "checked_in", "completed", "satisfaction", "summary", "parts", "items",
                 "fees", "photos", "signature")
DEFAULT_TAGS = ["准时到达", "专业", "态度好", "收费合理", "需改进"]


def require_desk(role: str | None) -> None:
    if role not in DESK_ROLES:
        raise Forbidden("only an admin or a dispatcher (客服) may do this")


def request_target(current: str, action: str) -> RStatus:
    allowed, target = REQUEST_TRANSITIONS[action]
    if RStatus(current) not in allowed:
        raise Conflict(f"cannot {action} a service request that is {current}",
                       [{"field": "status", "message": f"service request is {current}"}])
    return target if target is not None else RStatus(current)


def add_state_time(durations: dict | None, state: str, since: dt.datetime | None, now: dt.datetime) -> dict:
    out = dict(durations or {})
    if since is not None:
        out[state] = round(out.get(state, 0) + max((now - since).total_seconds(), 0.0), 3)
    return out


def match_assignee(rules: list[dict], event_type: str, channel: str):
    """服务台事件分配规则: the first rule whose event_type / channel (each optional) matches."""
    for rule in rules or []:
        if rule.get("event_type") not in (None, event_type):
            continue
        if rule.get("channel") not in (None, channel):
            continue
        return rule.get("assignee_id")
    return None


# -- planned work ---------------------------------------------------------------------------------

def zone(name: str, field: str = "timezone") -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise field_error(field, "unknown IANA time zone") from None


def parse_rule(rule: str, starts_at: dt.datetime, tz: str = "UTC", field: str = "rrule") -> rr.rrule:
    """An RFC 5545 RRULE (with or without the `RRULE:` prefix) anchored at `starts_at` in the plan's
    time zone: BYHOUR=9 is nine o'clock where the customer is, across daylight-saving changes too."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if "DTSTART" in text.upper():
        raise field_error(field, "give the start as starts_at, not DTSTART")
    try:
        parsed = rr.rrulestr(text, dtstart=starts_at.astimezone(zone(tz)))
    except (ValueError, TypeError) as exc:
        raise field_error(field, f"not a valid RFC 5545 RRULE: {exc}") from None
    if not isinstance(parsed, rr.rrule):
        raise field_error(field, "one RRULE only")
    return parsed


def occurrences(rule: str, starts_at: dt.datetime, ends_at: dt.datetime | None, after: dt.datetime | None,
                until: dt.datetime, limit: int = 500, tz: str = "UTC") -> list[dt.datetime]:
    """Occurrences in (after, until], not past ends_at, in UTC."""
    parsed = parse_rule(rule, starts_at, tz)
    out = []
    start = after if after is not None else starts_at - dt.timedelta(microseconds=1)
    for when in parsed.xafter(start, count=limit, inc=False):
        when = when.astimezone(dt.timezone.utc)
        if when > until or (ends_at is not None and when > ends_at):
            break
        out.append(when)
    return out


def next_occurrence(rule: str, starts_at: dt.datetime, ends_at: dt.datetime | None,
                    after: dt.datetime | None, tz: str = "UTC") -> dt.datetime | None:
    found = occurrences(rule, starts_at, ends_at, after, dt.datetime.max.replace(tzinfo=dt.timezone.utc), 1, tz)
    return found[0] if found else None


def plan_state(paused: bool, ended: bool, next_at: dt.datetime | None) -> str:
    """running | paused | expired (ended by hand, or the rule has no more occurrences)."""
    if ended or next_at is None:
        return "expired"
    return "paused" if paused else "running"


# -- money ----------------------------------------------------------------------------------------

FEE_KINDS = ("part", "service_item", "travel", "other")
COST_KINDS = ("part", "labour", "travel", "other")


def money_line(kind: str, description: str, quantity: Decimal, unit_price: Decimal, ref_id=None) -> dict:
    amount = (Decimal(quantity) * Decimal(unit_price)).quantize(CENT, ROUND_HALF_UP)
    return {"kind": kind, "ref_id": str(ref_id) if ref_id else None, "description": description,
            "quantity": str(Decimal(quantity)), "unit_price": str(Decimal(unit_price).quantize(CENT)),
            "amount": str(amount)}


def totals(fee_lines: list[dict], cost_lines: list[dict]) -> tuple[Decimal, Decimal, Decimal]:
    fee = sum((Decimal(x["amount"]) for x in fee_lines), ZERO)
    cost = sum((Decimal(x["amount"]) for x in cost_lines), ZERO)
    return fee, cost, fee - cost


def free_under_warranty(kind: str, warranty: bool | None) -> bool:
    """Under warranty the customer pays nothing for parts and service items (保内免费); travel and
    other fees stay as entered (a tenant may still charge them)."""
    return bool(warranty) and kind in ("part", "service_item")


# -- satisfaction ---------------------------------------------------------------------------------

def overall_satisfaction(scores: dict[str, int]) -> int | None:
    """The order's satisfaction 1–5: the rounded mean of the dimensions rated."""
    if not scores:
        return None
    mean = Decimal(sum(scores.values())) / Decimal(len(scores))
    return int(mean.quantize(Decimal("1"), ROUND_HALF_UP))


def check_scores(scores: dict, dimensions: list[dict]) -> dict[str, int]:
    keys = {d["key"] for d in dimensions}
    out = {}
    for key, value in (scores or {}).items():
        if key not in keys:
            raise field_error(f"scores.{key}", f"no such dimension; one of {', '.join(sorted(keys))}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise field_error(f"scores.{key}", "1 to 5 stars")
        out[key] = value
    return out


def search_text(*parts) -> str:
    words = []
    for p in parts:
        if isinstance(p, (list, tuple)):
            words.extend(str(x) for x in p)
        elif p:
            words.append(str(p))
    return "\n".join(words).lower()


def validate_components(enabled: list[str], values: dict | None, partial: bool = False) -> dict:
    """Values of the type's add-on components, each checked against its fields (errors name
    `components.<component>.<field>`)."""
    from tickets.domain import validate_custom_fields
    from svc_common.errors import ValidationFailed
    out, errors = {}, []
    for name, block in (values or {}).items():
        if name not in enabled:
            errors.append({"field": f"components.{name}", "message": "not a component of this request type"})
            continue
        try:
            out[name] = validate_custom_fields(COMPONENTS[name][2], block if isinstance(block, dict) else {},
                                               partial=partial)
        except ValidationFailed as exc:
            errors += [{"field": e["field"].replace("custom_fields.", f"components.{name}.", 1),
                        "message": e["message"]} for e in exc.errors]
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return out


# -- back-filled orders (补录) ----------------------------------------------------------------------

# A back-filled work order waits for the office in this state: outside the dispatch queues, the pool
# and the SLA scans (no deadlines); only the desk's verification moves it (completed, or cancelled).
PENDING_VERIFICATION = "pending_verification"


def check_backfill_time(done_at: dt.datetime, now: dt.datetime) -> None:
    if done_at > now:
        raise field_error("done_at", "a back-filled record is for work already done")


# -- sending the service report ------------------------------------------------------------------------

def report_recipient(channel: str, to: str | None, contact_phone: str | None) -> str:
    """Where the report goes: `to`, else the order's contact (its phone, for SMS; customers keep no
    e-mail address yet). A bad or missing address is a 422 naming `to`."""
    if channel == "email":
        if not to:
            raise field_error("to", "the customer has no e-mail address on record; give one")
        email = normalize_email(to)
        if email is None:
            raise field_error("to", "not a valid e-mail address")
        return email
    phone = to or contact_phone
    if not phone:
        raise field_error("to", "the order has no contact phone; give one")
    normalized = normalize_phone(phone)
    if normalized is None:
        raise field_error("to", "not a mobile number (11-digit mainland number or +<country code><number>)")
    return normalized