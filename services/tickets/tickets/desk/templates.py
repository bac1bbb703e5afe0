"""Custom print templates from Excel (自定义打印模板): the tenant downloads the field dictionary of an
order type, writes {{placeholders}} into an XLSX, uploads it; the system fills it per order — a row
holding {{parts.*}}, {{items.*}} or {{fees.*}} repeats once per line — and returns XLSX or PDF."""
import base64
import binascii
import io
import re
import uuid
import zipfile

import sqlalchemy as sa
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from svc_common.errors import field_error
from svc_common.uow import UnitOfWork
from tickets import handlers as tickets

from . import domain
from .models import ReportTemplate

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+(?:\.[a-z0-9_]+)?)\s*\}\}")
MAX_BYTES = 2_000_000

SCALARS = {  # key → (zh-CN, en)
    "number": ("工单号", "Work order number"), "type": ("工单类型", "Type"), "status": ("状态", "Status"),
    "priority": ("优先级", "Priority"), "description": ("问题描述", "Description"),
    "customer_name": ("客户", "Customer"), "contact_name": ("联系人", "Contact"),
    "contact_phone": ("联系电话", "Phone"), "address": ("地址", "Address"),
    "equipment_model": ("设备型号", "Model"), "serial_number": ("序列号", "Serial number"),
    "warranty": ("质保状态", "Warranty"), "technician": ("服务工程师", "Technician"),
    "created_at": ("创建时间", "Created"), "checked_in_at": ("签到时间", "Checked in"),
    "completed_at": ("完成时间", "Completed"), "summary": ("服务内容", "Work done"),
    "fee_total": ("费用合计", "Fee total"), "satisfaction": ("满意度", "Satisfaction"),
}
REPEATING = {  # group → {column: (zh-CN, en)}
    "parts": {"name": ("备件名称", "Part"), "quantity": ("数量", "Quantity")},
    "items": {"name": ("服务项目", "Service item"), "quantity": ("数量", "Quantity")},
    "fees": {"kind": ("类别", "Kind"), "description": ("名称", "Name"), "quantity": ("数量", "Quantity"),
             "unit_price": ("单价", "Unit price"), "amount": ("金额", "Amount")},
}


def field_dictionary(type_fields: list[dict]) -> list[dict]:
    """Every placeholder an order of this type can fill, with its label (字段字典)."""
    out = [{"placeholder": f"{{{{{k}}}}}", "label": zh, "label_en": en, "repeating": False}
           for k, (zh, en) in SCALARS.items()]
    out += [{"placeholder": f"{{{{custom.{f['key']}}}}}", "label": f.get("label", f["key"]), "label_en": f["key"],
             "repeating": False} for f in type_fields]
    out += [{"placeholder": f"{{{{{group}.{k}}}}}", "label": zh, "label_en": en, "repeating": True}
            for group, columns in REPEATING.items() for k, (zh, en) in columns.items()]
    return out


def _substitute(text: str, values: dict, line: dict | None = None, group: str | None = None):
    def one(match):
        key = match.group(1)
        if group and key.startswith(group + "."):
            value = (line or {}).get(key.split(".", 1)[1])
        else:
            value = values.get(key)
        return "" if value is None else str(value)
    whole = PLACEHOLDER.fullmatch(text.strip())
    if whole:  # a cell that is only a placeholder keeps the value's own type where it has one
        key = whole.group(1)
        value = (line or {}).get(key.split(".", 1)[1]) if group and key.startswith(group + ".") else values.get(key)
        return value if isinstance(value, (int, float)) else ("" if value is None else str(value))
    return PLACEHOLDER.sub(one, text)


def check_template(content: bytes) -> None:
    if len(content) > MAX_BYTES:
        raise field_error("content_base64", "the template must be 2 MB or less")
    try:
        workbook = load_workbook(io.BytesIO(content))
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise field_error("content_base64", "not an Excel (.xlsx) workbook") from None
    known = {d["placeholder"][2:-2] for d in field_dictionary([])}
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    for key in PLACEHOLDER.findall(cell.value):
                        if key not in known and not key.startswith("custom."):
                            raise field_error("content_base64", f"unknown placeholder {{{{{key}}}}} in "
                                                                f"{sheet.title}!{cell.coordinate}")


def fill(content: bytes, values: dict, lines: dict[str, list[dict]]) -> bytes:
    """The template filled: scalars replaced, each repeating row expanded to one row per line."""
    workbook = load_workbook(io.BytesIO(content))
    for sheet in workbook.worksheets:
        row_index = 1
        while row_index <= sheet.max_row:
            cells = list(sheet[row_index])
            texts = [c.value for c in cells if isinstance(c.value, str)]
            group = next((g for g in REPEATING for t in texts if f"{{{{{g}." in t.replace(" ", "")), None)
            if group is None:
                for c in cells:
                    if isinstance(c.value, str) and "{{" in c.value:
                        c.value = _substitute(c.value, values)
                row_index += 1
                continue
            rows = lines.get(group) or [{}]
            template = [(c.column, c.value, c._style) for c in cells]
            if len(rows) > 1:
                sheet.insert_rows(row_index + 1, len(rows) - 1)
            for offset, line in enumerate(rows):
                for column, value, style in template:
                    target = sheet.cell(row=row_index + offset, column=column)
                    target._style = style
                    target.value = _substitute(value, values, line, group) if isinstance(value, str) else value
            row_index += len(rows)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def to_pdf(xlsx: bytes, title: str) -> bytes:
    """The filled first sheet as a PDF table (values as shown; CJK font)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle
    from xml.sax.saxutils import escape

    from .reports_pdf import FONT
    sheet = load_workbook(io.BytesIO(xlsx), data_only=True).worksheets[0]
    style = ParagraphStyle("cell", fontName=FONT, fontSize=9, leading=12)
    rows = [[Paragraph(escape("" if v is None else str(v)), style) for v in row]
            for row in sheet.iter_rows(values_only=True) if any(v not in (None, "") for v in row)]
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=title)
    story = [Table(rows or [[""]], style=TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.lightgrey),
                                                      ("VALIGN", (0, 0), (-1, -1), "TOP")]))]
    doc.build(story)
    return out.getvalue()


# -- use cases --------------------------------------------------------------------------------------

def upload(uow: UnitOfWork, name: str, ticket_type: str | None, filename: str, content_base64: str) -> ReportTemplate:
    domain.require_desk(uow.ctx.actor_role)
    if ticket_type:
        tickets.get_type(uow, ticket_type, "ticket_type")
    try:
        content = base64.b64decode(content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise field_error("content_base64", "not valid base64") from None
    check_template(content)
    row = ReportTemplate(name=name, ticket_type=ticket_type, filename=filename, content=content,
                         created_by=uow.ctx.actor_id)
    uow.session.add(row)
    uow.session.flush()
    return row


def list_templates(uow: UnitOfWork) -> list[ReportTemplate]:
    return list(uow.session.scalars(sa.select(ReportTemplate).order_by(ReportTemplate.name)))


def get_template(uow: UnitOfWork, template_id: uuid.UUID) -> ReportTemplate:
    return uow.get_or_404(ReportTemplate, template_id, "template_id", "report template")


def order_values(order: dict, technician: str | None, fees: dict | None, locale: str = "zh-CN") -> dict:
    zh = locale == "zh-CN"
    warranty = order.get("under_warranty")
    values = {k: order.get(k) for k in SCALARS if k in order}
    values.update({
        "warranty": ("保内" if zh else "In warranty") if warranty else
        (("保外" if zh else "Out of warranty") if warranty is False else ""),
        "technician": technician or "", "fee_total": (fees or {}).get("fee_total", ""),
        "created_at": (order.get("created_at") or "")[:16].replace("T", " "),
        "checked_in_at": (order.get("checked_in_at") or "")[:16].replace("T", " "),
        "completed_at": (order.get("completed_at") or "")[:16].replace("T", " ")})
    values.update({f"custom.{k}": v for k, v in (order.get("custom_fields") or {}).items()})
    return values
