"""Tables in and out of files, the same way in every service: CSV (UTF-8 with a BOM for Excel;
GB18030, what Excel on a Chinese Windows saves, read too) and XLSX (openpyxl).

Services map the rows to their own fields; this module only reads and writes the grid.
"""
import csv
import datetime as dt
import io
from decimal import Decimal

from openpyxl import Workbook, load_workbook

from .errors import field_error

FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise field_error("format", f"must be one of: {', '.join(FORMATS)}")
    return fmt


def read_table(content: bytes, fmt: str) -> list[list]:
    """Every row of the file's first sheet, header included (CSV cells as text, XLSX cells as
    openpyxl gives them). A file that cannot be read is a 422 on `file`."""
    if check_format(fmt) == "csv":
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = content.decode("gb18030")
            except UnicodeDecodeError:
                raise field_error("file", "CSV must be UTF-8 or GB18030 text") from None
        rows = list(csv.reader(io.StringIO(text)))
    else:
        try:
            sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).worksheets[0]
        except Exception:  # openpyxl raises many kinds for a file that is not a workbook
            raise field_error("file", "not a readable XLSX workbook") from None
        rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    if not rows:
        raise field_error("file", "the file is empty")
    return rows


def write_table(headers: list[str], rows, fmt: str, sheet_title: str | None = None) -> bytes:
    if check_format(fmt) == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        writer.writerows([["" if v is None else _csv_cell(v) for v in row] for row in rows])
        return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM makes Excel read it as UTF-8
    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title)
    sheet.append(headers)
    for row in rows:
        sheet.append([_xlsx_cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _csv_cell(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _xlsx_cell(value):
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    if isinstance(value, Decimal):
        return float(value) if value == value.to_integral() or abs(value) < 10**12 else str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)  # Excel has no zones: UTC
    if isinstance(value, dt.date):
        return value
    return str(value)
