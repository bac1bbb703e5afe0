"""Rules of the reports, plain Python: periods in the tenant's zone, statistics, performance scores."""
import datetime as dt
import math
from decimal import Decimal
from typing import Iterable
from zoneinfo import ZoneInfo

DEFAULT_TIME_ZONE = "Asia/Shanghai"
GROUPINGS = ("day", "week", "month")

# Status a work order is in after each ticket event (events without one leave it unchanged).
STATUS_AFTER = {
    "ticket.created": "pending_dispatch",
    "ticket.published_to_pool": "in_pool",
    "ticket.grabbed": "accepted",
    "ticket.assigned": "assigned",
    "ticket.reassigned": "assigned",
    "ticket.accepted": "accepted",
    "ticket.refused": "pending_dispatch",
    "ticket.checked_in": "in_progress",
    "ticket.paused": "paused",
    "ticket.resumed": "in_progress",
    "ticket.completed": "completed",
    "ticket.settled": "settled",
    "ticket.closed": "closed",
    "ticket.cancelled": "cancelled",
    "ticket.reopened": "in_progress",
}
OPEN_STATUSES = ("pending_dispatch", "in_pool", "assigned", "accepted", "in_progress", "paused")
# stock.moved kinds that are parts used up on work orders (+) or given back when an order is
# reopened or cancelled (冲销, −): the spare-parts report shows the net consumption.
CONSUMPTION_SIGN = {"consumption": 1, "consumption_reversal": -1}

# Performance rules: metric → weight. Counts and amounts are scored relative to the best in the
# group (best = 1), satisfaction as average / 5, rates as they are. A metric without data for
# someone (no return visit yet) is left out of their weighted average instead of counting as 0.
PERFORMANCE_METRICS = ("completed", "satisfaction", "on_time_rate", "first_time_fix_rate", "revenue",
                       "on_site_hours")
RELATIVE_METRICS = frozenset({"completed", "revenue", "on_site_hours"})
DEFAULT_WEIGHTS = {"completed": 40, "satisfaction": 30, "on_time_rate": 20, "first_time_fix_rate": 10}

CENT = Decimal("0.01")


def period_start(instant: dt.datetime, zone: ZoneInfo, group_by: str) -> dt.date:
    """The local day, ISO week (its Monday) or month (its 1st) an instant falls in."""
    day = instant.astimezone(zone).date()
    if group_by == "week":
        return day - dt.timedelta(days=day.weekday())
    if group_by == "month":
        return day.replace(day=1)
    return day


def periods(date_from: dt.date, date_to: dt.date, group_by: str) -> list[dt.date]:
    """Every period of the range, in order, so a report shows empty periods too."""
    out, day = [], date_from
    while day <= date_to:
        start = period_start(dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc), dt.timezone.utc,
                             group_by)
        if not out or out[-1] != start:
            out.append(start)
        day += dt.timedelta(days=1)
    return out


def local_bounds(date_from: dt.date, date_to: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[first local midnight, midnight after the last day) as UTC instants."""
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def seconds_between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def average(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 1) if values else None


def p90(values: Iterable[float]) -> float | None:
    """90th percentile, nearest-rank (a value that occurred, no interpolation)."""
    values = sorted(values)
    if not values:
        return None
    return round(values[math.ceil(0.9 * len(values)) - 1], 1)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(CENT)


def normalize_weights(weights: dict) -> dict[str, float]:
    """Validated performance weights (metric → non-negative number, at least one positive)."""
    clean = {}
    for metric, weight in weights.items():
        if metric not in PERFORMANCE_METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {', '.join(PERFORMANCE_METRICS)}")
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {metric} must be a non-negative number")
        clean[metric] = weight
    if not any(clean.values()):
        raise ValueError("at least one weight must be positive")
    return clean


def scores(metrics_by_subject: dict, weights: dict[str, float]) -> dict:
    """Score 0–100 per subject (technician or team) from its metrics and the tenant's weights."""
    best = {m: max((float(v.get(m) or 0) for v in metrics_by_subject.values()), default=0.0)
            for m in RELATIVE_METRICS}
    out = {}
    for subject, metrics in metrics_by_subject.items():
        total = weight_sum = 0.0
        for metric, weight in weights.items():
            value = metrics.get(metric)
            if not weight or value is None:
                continue
            if metric in RELATIVE_METRICS:
                normalized = float(value) / best[metric] if best[metric] else 0.0
            elif metric == "satisfaction":
                normalized = float(value) / 5
            else:
                normalized = float(value)
            total += weight * normalized
            weight_sum += weight
        out[subject] = round(100 * total / weight_sum, 2) if weight_sum else 0.0
    return out
