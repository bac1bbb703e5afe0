"""Customer import and export as XLSX (openpyxl) or CSV: columns, parsing, a row-by-row error report."""
import uuid
from typing import Iterable

from svc_common.errors import ValidationFailed, field_error
from svc_common.tabular import read_table, write_table

FORMATS = ("xlsx", "csv")
MAX_ROWS = 20_000

# (key, zh-CN header, en header): the built-in columns, in file order.
COLUMNS = [
    ("name", "客户名称", "Name"),
    ("contact_name", "联系人", "Contact"),
    ("contact_phone", "联系电话", "Phone"),
    ("address", "地址", "Address"),
    ("latitude", "纬度", "Latitude"),
    ("longitude", "经度", "Longitude"),
    ("tags", "标签", "Tags"),
    ("owner_id", "负责人ID", "Owner ID"),
    ("team_id", "团队ID", "Team ID"),
]


def headers(custom: list[tuple[str, str]], locale: str = "zh-CN") -> list[str]:
    """Header row: built-in columns then custom fields by label."""
    builtin = [zh if locale.startswith("zh") else en for _, zh, en in COLUMNS]
    return builtin + [label for _, label in custom]


def _header_map(header: list, custom: list[tuple[str, str]]) -> dict[int, str]:
    """Column index → key; headers in Chinese, English, or the keys themselves."""
    names = {}
    for key, zh, en in COLUMNS:
        for alias in (key, zh, en):
            names[alias.strip().lower()] = key
    for key, label in custom:
        names[label.strip().lower()] = f"custom:{key}"
        names[key.lower()] = f"custom:{key}"
    mapping, unknown = {}, []
    for i, cell in enumerate(header):
        text = str(cell or "").strip()
        if not text:
            continue
        key = names.get(text.lower())
        if key is None:
            unknown.append(text)
        else:
            mapping[i] = key
    if "name" not in mapping.values():
        raise field_error("file", "the header row has no 客户名称 / Name column")
    if unknown:
        raise field_error("file", f"unknown columns: {', '.join(unknown)}")
    return mapping


def read_rows(content: bytes, fmt: str, custom: list[tuple[str, str]]) -> list[tuple[int, dict]]:
    """(spreadsheet row number, {key: value}) for each non-empty data row."""
    table = read_table(content, fmt)
    iterator = iter(table)
    mapping = _header_map(list(next(iterator)), custom)
    rows = []
    for number, values in enumerate(iterator, start=2):
        row = {}
        for i, key in mapping.items():
            value = values[i] if i < len(values) else None
            if isinstance(value, str):
                value = value.strip()
            if value not in (None, ""):
                row[key] = value
        if row:
            rows.append((number, row))
        if len(rows) > MAX_ROWS:
            raise field_error("file", f"at most {MAX_ROWS} rows per import")
    if not rows:
        raise field_error("file", "no data rows")
    return rows


def row_to_customer(row: dict) -> dict:
    """A CustomerIn-shaped dict from one row (validation happens on it afterwards)."""
    data: dict = {"name": str(row.get("name", "")), "contacts": [], "addresses": [], "custom_fields": {}}
    if "contact_name" in row or "contact_phone" in row:
        data["contacts"].append({"name": str(row.get("contact_name") or row.get("name", "")),
                                 "phone": _text(row.get("contact_phone"))})
    if "address" in row:
        data["addresses"].append({"text": str(row["address"]), "latitude": _text(row.get("latitude")),
                                  "longitude": _text(row.get("longitude"))})
    if "tags" in row:
        data["tags"] = [t.strip() for t in str(row["tags"]).replace("，", ",").split(",") if t.strip()]
    for key in ("owner_id", "team_id"):
        if key in row:
            data[key] = str(row[key])
    for key, value in row.items():
        if key.startswith("custom:"):
            data["custom_fields"][key[7:]] = value
    return data


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone typed into Excel comes back as 13800138000.0
    return str(value)


# Which column a CustomerIn field error belongs to.
FIELD_COLUMN = {"contacts.0.name": "contact_name", "contacts.0.phone": "contact_phone", "addresses.0.text": "address",
                "addresses.0.latitude": "latitude", "addresses.0.longitude": "longitude"}


def column_of(field: str) -> str:
    if field.startswith("custom_fields."):
        return field
    if field.startswith("tags"):
        return "tags"
    return FIELD_COLUMN.get(field, field)


def report(errors: list[dict]) -> ValidationFailed:
    """The row-by-row error report: field = rows.<row number>.<column>."""
    errors = sorted(errors, key=lambda e: (e["row"], e["column"]))
    flat = [{"field": f"rows.{e['row']}.{e['column']}", "message": e["message"]} for e in errors]
    lines = "; ".join(f"row {e['row']} {e['column']}: {e['message']}" for e in errors[:20])
    return ValidationFailed(f"import refused, nothing was imported: {len(errors)} error(s): {lines}", flat)


def customer_row(customer, custom_keys: list[str]) -> list:
    contact = customer.contacts[0] if customer.contacts else None
    address = customer.addresses[0] if customer.addresses else None
    values = [customer.name, contact.name if contact else None, contact.phone if contact else None,
              address.text if address else None,
              str(address.latitude) if address and address.latitude is not None else None,
              str(address.longitude) if address and address.longitude is not None else None,
              ",".join(customer.tags or []) or None,
              str(customer.owner_id) if customer.owner_id else None,
              str(customer.team_id) if customer.team_id else None]
    custom = customer.custom_fields or {}
    return values + [custom.get(k) for k in custom_keys]


def write(fmt: str, header: list[str], rows: Iterable[list]) -> bytes:
    return write_table(header, rows, fmt, sheet_title="客户")


def parse_uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
