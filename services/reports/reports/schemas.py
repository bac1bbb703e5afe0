"""RPC DTOs of the reports service."""
import datetime as dt
import uuid
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from svc_common.validation import OutSchema, Schema

from .domain import DEFAULT_WEIGHTS, PERFORMANCE_METRICS, normalize_weights

MAX_RANGE_DAYS = 366


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    # A fixed list, not ZoneInfo(value): that also opens folders like "Asia" (OSError, a 500).
    # "localtime" is the server's own zone file, not an IANA name.
    return frozenset(available_timezones()) - {"localtime"}


class DateRangeIn(Schema):
    """Local calendar days [date_from, date_to] in the IANA time zone `tz`."""
    date_from: dt.date
    date_to: dt.date
    tz: str = "Asia/Shanghai"

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _iana_zones():
            raise PydanticCustomError("time_zone", "unknown IANA time zone")
        return value

    @field_validator("date_to")
    @classmethod
    def _bounded_range(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        start = info.data.get("date_from")
        if start is None:  # date_from itself was invalid and is reported on its own
            return value
        if value < start:
            raise PydanticCustomError("date_range", "must not be before date_from")
        if (value - start).days + 1 > MAX_RANGE_DAYS:
            raise PydanticCustomError("date_range", f"range must be at most {MAX_RANGE_DAYS} days")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


class TechnicianDailyIn(DateRangeIn):
    technician_id: uuid.UUID | None = None


class TechnicianDayOut(OutSchema):
    day: dt.date
    technician_id: uuid.UUID
    completed: int


class TechnicianDailyOut(OutSchema):
    rows: list[TechnicianDayOut]
    total_completed: int


class SummaryDayOut(OutSchema):
    day: dt.date
    created: int
    completed: int


class WorkOrderSummaryOut(OutSchema):
    rows: list[SummaryDayOut]
    total_created: int
    total_completed: int


# -- reports of issue 7 ---------------------------------------------------------------------

REPORT_NAMES = ("work_orders", "personnel", "revenue", "customers", "service_desk", "spare_parts",
                "service_items", "business_plan", "performance", "satisfaction")


class ReportQuery(DateRangeIn):
    """Period, filters, grouping and page of every report. `tz` defaults to the tenant's setting."""
    tz: str | None = None
    team_id: uuid.UUID | None = None
    technician_id: uuid.UUID | None = None
    type: str | None = Field(default=None, max_length=100)
    customer_id: uuid.UUID | None = None
    group_by: Literal["day", "week", "month"] = "day"
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)
    top: int = Field(default=10, ge=1, le=100)

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _iana_zones():
            raise PydanticCustomError("time_zone", "unknown IANA time zone")
        return value


class DashboardIn(Schema):
    tz: str | None = None
    team_id: uuid.UUID | None = None
    technician_id: uuid.UUID | None = None

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return ReportQuery._known_zone(value)


class ReportSettingsIn(Schema):
    """A tenant's report settings: its IANA time zone and the weights of its performance rules."""
    time_zone: str = "Asia/Shanghai"
    performance_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _iana_zones():
            raise PydanticCustomError("time_zone", "unknown IANA time zone")
        return value

    @field_validator("performance_weights")
    @classmethod
    def _valid_weights(cls, value: dict) -> dict:
        try:
            return normalize_weights(value)
        except ValueError as exc:
            raise PydanticCustomError("weights", str(exc)) from None


class ReportSettingsOut(OutSchema):
    time_zone: str
    performance_weights: dict[str, float]
    metrics: list[str] = list(PERFORMANCE_METRICS)
    # set when the time zone changed: the rebuild that regroups the rollups in the new zone
    rebuild_job_id: uuid.UUID | None = None


class RebuildJobOut(OutSchema):
    """A rebuild of a company's read models from its event archive, run in the background."""
    job_id: uuid.UUID
    status: Literal["running", "done", "failed"]
    reason: str
    time_zone: str
    total: int  # events in the archive when it started (and since, once done)
    replayed: int
    error: str | None = None
    created_at: dt.datetime
    finished_at: dt.datetime | None = None


class ReportOut(OutSchema):
    """One report: a page of its rows (by period unless said otherwise), totals over the whole
    period, and its breakdowns. Money is a decimal string, durations in minutes, rates 0–1."""
    report: str
    date_from: dt.date
    date_to: dt.date
    tz: str
    group_by: str
    columns: list[str]
    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    totals: dict[str, Any]
    sections: dict[str, list[dict[str, Any]]]


class DashboardOut(OutSchema):
    """首页: figures of today and of this month (local), and the open orders right now."""
    tz: str
    date: dt.date
    as_of: dt.datetime
    today: dict[str, Any]
    this_month: dict[str, Any]
    open_by_status: dict[str, int]
    open_overdue: int
    pending_service_requests: int


class ExportOut(OutSchema):
    filename: str
    content_type: str
    content_base64: str


class ChartOut(OutSchema):
    filename: str
    svg: str
