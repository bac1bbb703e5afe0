"""The catalog's tables in and out of files (CSV and XLSX through svc_common.tabular)."""
from svc_common.errors import field_error
from svc_common.tabular import FORMATS, write_table  # noqa: F401 (this service's one import point)
from svc_common.tabular import read_table

MAX_ROWS = 20000


def read_rows(content: bytes, fmt: str) -> list[tuple[int, dict[str, str]]]:
    """(spreadsheet row number, {header: cell text}) for every non-empty data row; row 1 is the header."""
    rows = [["" if v is None else _cell_text(v) for v in row] for row in read_table(content, fmt)]
    headers = [str(h).strip() for h in rows[0]]
    result = []
    for number, row in enumerate(rows[1:], start=2):
        cells = {headers[i]: str(v).strip() for i, v in enumerate(row) if i < len(headers) and headers[i]}
        if any(cells.values()):
            result.append((number, cells))
    if len(result) > MAX_ROWS:
        raise field_error("file", f"at most {MAX_ROWS} rows per import")
    return result


def _cell_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel keeps 12 as 12.0
    if isinstance(value, float):
        return repr(value)
    return str(value)
