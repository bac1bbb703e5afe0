"""customers' own configuration, from the environment (docs/configuration.md). A bad value stops the
process at start with the variable named."""
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CustomersSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # How often the reminder timer runs; every run is idempotent, so a short interval only costs queries.
    reminder_interval_seconds: float = Field(3600.0, alias="REMINDER_INTERVAL_SECONDS", gt=0)
    # A font file with CJK glyphs for QR labels; else the machine's fonts are searched.
    label_font: str | None = Field(None, alias="LABEL_FONT")


@lru_cache
def customers_settings() -> CustomersSettings:
    return CustomersSettings()
