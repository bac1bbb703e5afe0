"""RPC DTOs of the reports service."""
import datetime as dt
import uuid
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from svc_common.validation import OutSchema, Schema

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
