"""The service report (服务报告) of a work order as a PDF: order and customer, receipt, parts and
service items, fees, signature; zh-CN (CJK glyphs from reportlab's built-in CID font) or en."""
import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from xml.sax.saxutils import escape

from .domain import REPORT_FIELDS

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))

TEXT = {
    "zh-CN": {"title": "服务报告", "number": "工单号", "type": "工单类型", "status": "状态", "customer": "客户",
              "contact": "联系人", "phone": "电话", "address": "地址", "equipment": "设备", "serial": "序列号",
              "warranty": "质保", "in": "保内", "out": "保外", "technician": "服务工程师", "checked_in": "签到时间",
              "completed": "完成时间", "summary": "服务内容", "parts": "备件", "items": "服务项目",
              "fees": "费用", "kind": "类别", "name": "名称", "qty": "数量", "price": "单价", "amount": "金额",
              "total": "合计", "signature": "客户签字", "none": "无", "satisfaction": "满意度", "photos": "现场照片"},
    "en": {"title": "Service report", "number": "Work order", "type": "Type", "status": "Status",
           "customer": "Customer", "contact": "Contact", "phone": "Phone", "address": "Address",
           "equipment": "Equipment", "serial": "Serial number", "warranty": "Warranty", "in": "In warranty",
           "out": "Out of warranty", "technician": "Technician", "checked_in": "Checked in",
           "completed": "Completed", "summary": "Work done", "parts": "Parts", "items": "Service items",
           "fees": "Fees", "kind": "Kind", "name": "Name", "qty": "Qty", "price": "Unit price",
           "amount": "Amount", "total": "Total", "signature": "Customer signature", "none": "None",
           "satisfaction": "Satisfaction", "photos": "Photos"},
}


def _p(text, style) -> Paragraph:
    return Paragraph(escape(str(text if text is not None else "")).replace("\n", "<br/>"), style)


def render(order: dict, locale: str = "zh-CN", parts: list[dict] = (), service_items: list[dict] = (),
           fees: dict | None = None, signature: bytes | None = None, technician_name: str | None = None,
           fields: list[str] | None = None, photos: list[bytes] = ()) -> bytes:
    """`order`: the work order as its DTO; `parts` / `service_items`: [{name, quantity}];
    `fees`: the settlement ({fee_lines, fee_total, currency}) when there is one; `fields`: the tenant's
    pick of REPORT_FIELDS; `photos`: the receipt's photos (images)."""
    t = TEXT.get(locale, TEXT["zh-CN"])
    shown = set(fields or REPORT_FIELDS)
    body = ParagraphStyle("body", fontName=FONT, fontSize=10, leading=14)
    head = ParagraphStyle("head", fontName=FONT, fontSize=18, leading=24, spaceAfter=6)
    sub = ParagraphStyle("sub", fontName=FONT, fontSize=12, leading=18, spaceBefore=8, spaceAfter=4)
    grid = TableStyle([("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTSIZE", (0, 0), (-1, -1), 9),
                       ("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    warranty = order.get("under_warranty")
    satisfaction = "★" * int(order["satisfaction"]) if order.get("satisfaction") else None
    rows = [
        ("number", order.get("number")), ("type", order.get("type")), ("status", order.get("status")),
        ("customer", order.get("customer_name")), ("contact", order.get("contact_name")),
        ("phone", order.get("contact_phone")), ("address", order.get("address")),
        ("equipment", order.get("equipment_model")), ("serial", order.get("serial_number")),
        ("warranty", t["in"] if warranty else (t["out"] if warranty is False else "-")),
        ("technician", technician_name or order.get("assignee_id")),
        ("checked_in", (order.get("checked_in_at") or "")[:19].replace("T", " ")),
        ("completed", (order.get("completed_at") or "")[:19].replace("T", " ")),
        ("satisfaction", satisfaction),
    ]
    rows = [(t[key], value) for key, value in rows if key in shown and (key != "satisfaction" or value)]
    story = [_p(t["title"], head)]
    if rows:
        story.append(Table([[_p(k, body), _p(v if v not in (None, "") else "-", body)] for k, v in rows],
                           colWidths=[35 * mm, 135 * mm], style=grid))
    if "summary" in shown:
        story += [_p(t["summary"], sub), _p(order.get("summary") or t["none"], body)]
    for key, title, lines in (("parts", t["parts"], parts), ("items", t["items"], service_items)):
        if key not in shown:
            continue
        story.append(_p(title, sub))
        if lines:
            table = [[_p(t["name"], body), _p(t["qty"], body)]] + [[_p(x["name"], body), _p(x["quantity"], body)]
                                                                  for x in lines]
            story.append(Table(table, colWidths=[130 * mm, 40 * mm], style=grid))
        else:
            story.append(_p(t["none"], body))
    if "fees" in shown and fees and fees.get("fee_lines") is not None:
        story.append(_p(t["fees"], sub))
        table = [[_p(h, body) for h in (t["kind"], t["name"], t["qty"], t["price"], t["amount"])]]
        table += [[_p(x["kind"], body), _p(x["description"], body), _p(x["quantity"], body),
                   _p(x["unit_price"], body), _p(x["amount"], body)] for x in fees["fee_lines"]]
        table.append([_p(t["total"], body), "", "", "", _p(f"{fees.get('currency', 'CNY')} {fees['fee_total']}", body)])
        story.append(Table(table, colWidths=[25 * mm, 75 * mm, 20 * mm, 25 * mm, 25 * mm], style=grid))
    if "photos" in shown and photos:
        story.append(_p(t["photos"], sub))
        images = [image for image in (_image(p, 52 * mm, 40 * mm) for p in photos[:9]) if image is not None]
        cells = [images[i:i + 3] for i in range(0, len(images), 3)]
        if cells:
            story.append(Table(cells, colWidths=[57 * mm] * 3))
    if "signature" in shown:
        story.append(_p(t["signature"], sub))
        image = _image(signature, 60 * mm, 25 * mm) if signature else None
        story.append(image if image is not None else Spacer(1, 20 * mm))
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=f"{t['title']} {order.get('number', '')}",
                      leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm, bottomMargin=18 * mm).build(story)
    return out.getvalue()


def _image(data: bytes, width: float, height: float):
    """A flowable of the image, or None when reportlab cannot read it (the report still renders)."""
    try:
        from reportlab.lib.utils import ImageReader
        ImageReader(io.BytesIO(data)).getSize()
        return Image(io.BytesIO(data), width=width, height=height, kind="proportional")
    except Exception:
        return None
