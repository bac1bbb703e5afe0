"""Custom Excel print templates: field dictionary, placeholder check, repeating rows, XLSX and PDF."""
import base64
import io

import pytest
from openpyxl import Workbook, load_workbook

from svc_common.errors import ValidationFailed
from svc_common.testing import uow
from tickets.desk import templates


def workbook(*rows) -> bytes:
    wb = Workbook()
    for row in rows:
        wb.active.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


TEMPLATE = workbook(
    ["服务单", "{{number}}", None, "客户：{{customer_name}}"],
    ["故障代码", "{{custom.fault_code}}"],
    ["备件", "数量"],
    ["{{parts.name}}", "{{parts.quantity}}"],
    ["费用", "{{fees.description}}", "{{fees.amount}}"],
    ["合计", "{{fee_total}}", "签字：", "{{technician}}"],
)


def test_field_dictionary_lists_scalars_custom_fields_and_repeating_columns():
    fields = templates.field_dictionary([{"key": "fault_code", "label": "故障代码", "kind": "text"}])
    placeholders = {f["placeholder"]: f for f in fields}
    assert placeholders["{{number}}"]["label"] == "工单号"
    assert placeholders["{{custom.fault_code}}"]["label"] == "故障代码"
    assert placeholders["{{parts.name}}"]["repeating"] is True


def test_fill_expands_repeating_rows_and_keeps_the_rest_in_place():
    values = templates.order_values({"number": "WO000007", "customer_name": "申能物业", "under_warranty": False,
                                     "custom_fields": {"fault_code": "E1"}}, "李工", {"fee_total": "300.00"})
    filled = templates.fill(TEMPLATE, values, {
        "parts": [{"name": "启动电容", "quantity": "2.000"}, {"name": "冷媒", "quantity": "1.000"}],
        "fees": [{"description": "启动电容", "amount": "160.00"}, {"description": "上门检修", "amount": "120.00"},
                 {"description": "交通费", "amount": "20.00"}]})
    rows = [list(r) for r in load_workbook(io.BytesIO(filled)).active.iter_rows(values_only=True)]
    assert rows[0][:2] == ["服务单", "WO000007"] and rows[0][3] == "客户：申能物业"
    assert rows[1][:2] == ["故障代码", "E1"]
    assert [r[:2] for r in rows[3:5]] == [["启动电容", "2.000"], ["冷媒", "1.000"]]
    assert [r[1:3] for r in rows[5:8]] == [["启动电容", "160.00"], ["上门检修", "120.00"], ["交通费", "20.00"]]
    assert rows[8] == ["合计", "300.00", "签字：", "李工"]
    pdf = templates.to_pdf(filled, "WO000007")
    assert pdf.startswith(b"%PDF") and b"STSong-Light" in pdf


def test_an_empty_repeating_group_leaves_one_blank_row():
    filled = templates.fill(TEMPLATE, {}, {})
    rows = list(load_workbook(io.BytesIO(filled)).active.iter_rows(values_only=True))
    assert len(rows) == 6 and rows[3][:2] == (None, None)  # blank cells


def test_upload_checks_the_workbook_and_its_placeholders(db, office):
    bad = base64.b64encode(workbook(["{{nope}}"])).decode()
    with pytest.raises(ValidationFailed) as err, uow(db, office) as u:
        templates.upload(u, "坏模板", None, "bad.xlsx", bad)
    assert "{{nope}}" in err.value.errors[0]["message"] and "A1" in err.value.errors[0]["message"]
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        templates.upload(u, "不是表格", None, "x.xlsx", base64.b64encode(b"hello").decode())
    with uow(db, office) as u:
        row = templates.upload(u, "维修单", "repair", "repair.xlsx", base64.b64encode(TEMPLATE).decode())
    with uow(db, office) as u:
        assert [t.id for t in templates.list_templates(u)] == [row.id]
