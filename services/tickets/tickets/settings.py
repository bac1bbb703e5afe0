"""tickets' own configuration, from the environment (docs/configuration.md). A bad value stops the
process at start with the variable named."""
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TicketsSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # How often the SLA clock looks for missed deadlines.
    sla_scan_seconds: float = Field(30.0, alias="SLA_SCAN_SECONDS", gt=0)
    # The stock check before completion is advisory (inventory records any shortfall on
    # ticket.completed anyway), so an inventory that is down or slow must not block completion.
    stock_check_timeout_seconds: float = Field(3.0, alias="STOCK_CHECK_TIMEOUT_SECONDS", gt=0)
    # How often planned work (recurring plans) and the service desk's deadlines are scanned.
    plan_scan_seconds: float = Field(60.0, alias="PLAN_SCAN_SECONDS", gt=0)
    desk_scan_seconds: float = Field(60.0, alias="DESK_SCAN_SECONDS", gt=0)
    # Photos, signatures and service-report files (local storage).
    storage_dir: str = Field("data/files", alias="TICKETS_STORAGE_DIR", min_length=1)


@lru_cache
def tickets_settings() -> TicketsSettings:
    return TicketsSettings()
