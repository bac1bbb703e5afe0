"""Rules of customers, equipment, QR codes and reminders: plain Python, no I/O."""
import datetime as dt
import math
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from dateutil.relativedelta import relativedelta

from svc_common.errors import ValidationFailed
from svc_common.geo import EARTH_RADIUS_M

# -- duplicates ---------------------------------------------------------------------------------

def name_key(name: str) -> str:
    """What two customer names must share to be duplicates: case and spaces ignored."""
    return "".join(name.split()).lower()


def phone_key(phone: str | None) -> str | None:
    """Digits only, without a leading China country code: 138-0013-8000 and +86 13800138000 match."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits or None


# -- custom fields --------------------------------------------------------------------------------

ENTITIES = ("customer", "equipment")
FIELD_TYPES = ("text", "number", "date", "select", "boolean")
# Built-in fields: fixed (not editable, not deletable), and no custom field may take their key.
BUILTIN_FIELDS: dict[str, list[tuple[str, str, str]]] = {  # entity → [(key, zh-CN, en)]
    "customer": [("name", "客户名称", "Name"), ("contacts", "联系人", "Contacts"), ("addresses", "地址", "Addresses"),
                 ("tags", "标签", "Tags"), ("owner_id", "负责人", "Owner"), ("team_id", "所属团队", "Team")],
    "equipment": [("model", "型号", "Model"), ("serial_number", "序列号", "Serial number"),
                  ("template_id", "产品模板", "Template"), ("customer_id", "客户", "Customer"),
                  ("address_id", "安装地址", "Install address"), ("install_date", "安装日期", "Install date"),
                  ("warranty_end", "质保到期", "Warranty end"),
                  ("maintenance_interval_days", "保养周期(天)", "Maintenance interval (days)"),
                  ("next_maintenance_date", "下次保养", "Next maintenance"),
                  ("inspection_interval_days", "巡检周期(天)", "Inspection interval (days)"),
                  ("next_inspection_date", "下次巡检", "Next inspection"), ("status", "状态", "Status")],
}


@dataclass(frozen=True)
class FieldDef:
    key: str
    label: str
    type: str
    options: tuple[str, ...] = ()
    required: bool = False


def builtin_keys(entity: str) -> set[str]:
    return {key for key, _, _ in BUILTIN_FIELDS[entity]}


def coerce_field_value(field: FieldDef, value):
    """The stored form of one custom field value; ValueError with a user-facing message if wrong."""
    if field.type == "text":
        text = str(value).strip()
        if len(text) > 1000:
            raise ValueError("at most 1000 characters")
        return text
    if field.type == "number":
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("must be a number") from None
        if not number.is_finite():
            raise ValueError("must be a number")
        return str(number)
    if field.type == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        try:
            return dt.date.fromisoformat(str(value).strip()).isoformat()
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if field.type == "select":
        text = str(value).strip()
        if text not in field.options:
            raise ValueError(f"must be one of: {', '.join(field.options)}")
        return text
    if field.type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "是", "y"):
            return True
        if text in ("false", "0", "no", "否", "n"):
            return False
        raise ValueError("must be true or false")
    raise ValueError(f"unknown field type {field.type}")


def validate_custom_fields(defs: list[FieldDef], values: dict | None, prefix: str = "custom_fields",
                           partial: bool = False) -> dict:
    """Values checked against the tenant's field definitions: unknown keys, wrong types and missing
    required fields are field errors naming `custom_fields.<key>`. Empty values are dropped."""
    values = values or {}
    by_key = {d.key: d for d in defs}
    errors, clean = [], {}
    for key, value in values.items():
        field = by_key.get(key)
        if field is None:
            errors.append({"field": f"{prefix}.{key}", "message": "no such custom field"})
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            clean[key] = coerce_field_value(field, value)
        except ValueError as exc:
            errors.append({"field": f"{prefix}.{key}", "message": str(exc)})
    if not partial:
        for field in defs:
            if field.required and field.key not in clean and not any(
                    e["field"] == f"{prefix}.{field.key}" for e in errors):
                errors.append({"field": f"{prefix}.{field.key}", "message": "required"})
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return clean


# -- geography ------------------------------------------------------------------------------------



def bounding_box(lat: float, lng: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) that contains the circle: an index-friendly first filter."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    cos_lat = max(math.cos(math.radians(lat)), 1e-6)
    dlng = min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * cos_lat)))
    return lat - dlat, lat + dlat, lng - dlng, lng + dlng


# -- equipment ------------------------------------------------------------------------------------

EQUIPMENT_STATUSES = ("active", "inactive", "scrapped")
STATUS_LABELS = {"active": ("在用", "In use"), "inactive": ("停用", "Out of use"), "scrapped": ("报废", "Scrapped")}


def warranty_end_from(install_date: dt.date | None, warranty_months: int | None) -> dt.date | None:
    if install_date is None or not warranty_months:
        return None
    return install_date + relativedelta(months=warranty_months) - dt.timedelta(days=1)


def next_maintenance_from(last: dt.date | None, interval_days: int | None) -> dt.date | None:
    if last is None or not interval_days:
        return None
    return last + dt.timedelta(days=interval_days)


def warranty_state(warranty_end: dt.date | None, today: dt.date) -> str:
    """in_warranty | expired | unknown (for the public page)."""
    if warranty_end is None:
        return "unknown"
    return "in_warranty" if warranty_end >= today else "expired"


# -- QR maintenance codes ------------------------------------------------------------------------

# Crockford's base32 without I, L, O, U: printed codes are read and typed by people.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12  # 60 random bits: not guessable, not sequential
MAX_BATCH = 20_000


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str | None:
    """The code as stored, from what a URL or a person gives; None if it cannot be one."""
    text = re.sub(r"[\s-]", "", str(code or "")).upper()
    text = text.replace("O", "0").replace("I", "1").replace("L", "1")
    if len(text) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in text):
        return None
    return text


def printed_code(code: str) -> str:
    """Grouped for reading off a sticker: 4-4-4."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


# -- reminders (预警) -------------------------------------------------------------------------------

REMINDER_KINDS = ("warranty_expiring", "maintenance_due", "maintenance_overdue", "inspection_due",
                  "inspection_overdue")
# kind → (days, enabled): N days before the date; for overdue, N days after it passed.
DEFAULT_RULES = {"warranty_expiring": (30, True), "maintenance_due": (7, True), "maintenance_overdue": (1, True),
                 "inspection_due": (7, True), "inspection_overdue": (1, True)}
EVENT_OF_KIND = {k: f"equipment.{k}" for k in REMINDER_KINDS}
# The equipment date each kind watches.
DATE_OF_KIND = {"warranty_expiring": "warranty_end", "maintenance_due": "next_maintenance_date",
                "maintenance_overdue": "next_maintenance_date", "inspection_due": "next_inspection_date",
                "inspection_overdue": "next_inspection_date"}
# A completed work order of this type restarts that interval (so "overdue" means: no completed order).
INTERVAL_OF_TYPE = {"maintenance": ("maintenance_interval_days", "last_maintenance_date", "next_maintenance_date"),
                    "inspection": ("inspection_interval_days", "last_inspection_date", "next_inspection_date")}


def reminder_window(kind: str, days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """Due dates [first, last] that a rule fires for today. Overdue looks back a year at most:
    older dates were reported when they passed."""
    if kind.endswith("_overdue"):
        return today - dt.timedelta(days=365), today - dt.timedelta(days=max(days, 1))
    return today, today + dt.timedelta(days=days)


# -- public fault reports -------------------------------------------------------------------------

FAULT_TEXT = re.compile(r"[\u4e00-\u9fffA-Za-z]")
LINK = re.compile(r"https?://|www\.", re.IGNORECASE)


def check_fault_report(description: str, contact_phone: str) -> list[dict]:
    """Junk a public form must refuse, as field errors with messages the customer reads (zh-CN)."""
    errors = []
    text = description.strip()
    if len(text) < 4 or not FAULT_TEXT.search(text):
        errors.append({"field": "description", "message": "请描述故障现象（至少4个字） / describe the fault (4+ characters)"})
    elif LINK.search(text):
        errors.append({"field": "description", "message": "描述中不能包含链接 / links are not allowed"})
    elif re.search(r"(.)\1{9,}", text):
        errors.append({"field": "description", "message": "描述无效 / the description looks like junk"})
    key = phone_key(contact_phone)
    if not key or not re.fullmatch(r"1[3-9]\d{9}|0\d{9,11}|\d{7,8}", key):
        errors.append({"field": "contact_phone", "message": "请填写有效的手机或座机号码 / enter a valid phone number"})
    return errors
