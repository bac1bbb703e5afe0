"""The service report PDF: Chinese text set in the CJK CID font with the Unicode CMap (so every glyph
is the character written), English when asked, fees and signature included."""
import base64
import io
import re
import zlib

from PIL import Image

from tickets.desk import reports_pdf

ORDER = {"number": "WO000123", "type": "repair", "status": "closed", "customer_name": "上海申能大厦物业",
         "contact_name": "王经理", "contact_phone": "13912345678", "address": "上海市浦东新区世纪大道100号",
         "equipment_model": "格力 KFR-72LW", "serial_number": "SN-1", "under_warranty": False,
         "checked_in_at": "2026-11-22T09:00:00+00:00", "completed_at": "2026-11-22T10:30:00+00:00",
         "summary": "更换启动电容，清洗冷凝器，试机正常", "satisfaction": 5}
FEES = {"currency": "CNY", "fee_total": "300.00", "fee_lines": [
    {"kind": "part", "description": "启动电容", "quantity": "2.000", "unit_price": "80.00", "amount": "160.00"}]}


def shown_text(pdf: bytes) -> str:
    """Every string the pages draw with the CJK font, decoded through its UCS-2 encoding."""
    out = []
    for stream in re.findall(rb"/Filter \[ /ASCII85Decode /FlateDecode \].*?stream\r?\n(.*?)endstream", pdf, re.S):
        raw = zlib.decompress(base64.a85decode(stream.strip().removesuffix(b"~>"), adobe=False,
                                               ignorechars=b" \t\n\r\x0b"))
        for literal in re.findall(rb"/F2 [\d.]+ Tf [^(]*\(((?:\\.|[^\\)])*)\) Tj", raw, re.S):
            data = re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m.group(1), 8)]) if m.group(1)[:1].isdigit()
                          else {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(m.group(1), m.group(1)), literal)
            out.append(data.decode("utf-16-be"))
    return "\n".join(out)


def signature_png(color="white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 40), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_chinese_report_draws_the_characters_in_the_cjk_font():
    pdf = reports_pdf.render(ORDER, "zh-CN", parts=[{"name": "启动电容", "quantity": "2.000"}],
                             service_items=[{"name": "上门检修", "quantity": "1.000"}], fees=FEES,
                             signature=signature_png(), technician_name="李工")
    assert pdf.startswith(b"%PDF") and b"/BaseFont /STSong-Light" in pdf and b"/Encoding /UniGB-UCS2-H" in pdf
    text = shown_text(pdf)
    for expected in ("服务报告", "上海申能大厦物业", "更换启动电容，清洗冷凝器，试机正常", "启动电容", "上门检修", "李工",
                     "保外", "客户签字", "CNY 300.00", "★★★★★"):
        assert expected in text, expected
    assert b"/Subtype /Image" in pdf  # the signature


def test_the_english_report():
    text = shown_text(reports_pdf.render(ORDER, "en"))
    assert "Service report" in text and "Out of warranty" in text and "None" in text  # no parts listed
    assert "上海申能大厦物业" in text  # the customer's own name stays as written


def test_a_broken_signature_image_does_not_break_the_report():
    assert reports_pdf.render(ORDER, "zh-CN", signature=b"not an image").startswith(b"%PDF")


def test_the_tenant_picks_the_fields_and_photos_are_shown():
    pdf = reports_pdf.render(ORDER, "zh-CN", parts=[{"name": "启动电容", "quantity": "1"}], fees=FEES,
                             fields=["number", "customer", "summary", "photos"],
                             photos=[signature_png("red"), b"broken", signature_png("blue")])
    text = shown_text(pdf)
    assert "WO000123" in text and "上海申能大厦物业" in text and "现场照片" in text
    for hidden in ("备件", "王经理", "客户签字", "CNY 300.00"):
        assert hidden not in text, hidden
    assert pdf.count(b"/Subtype /Image") == 2  # the unreadable photo is left out
