"""notify's own configuration, from the environment (docs/configuration.md). Read once per process;
a bad value stops the process at start with the variable named."""
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # How often the timer retries due deliveries, releases delayed ones and sends digests.
    timer_seconds: float = Field(5.0, alias="NOTIFY_TIMER_SECONDS", gt=0)
    # How stale a tenant's rules, templates, providers and recipients may be in another instance.
    config_ttl_seconds: float = Field(5.0, alias="NOTIFY_CONFIG_TTL_SECONDS", ge=0)
    # A transient provider failure: tries, then exponential backoff with jitter between them.
    send_attempts: int = Field(4, alias="NOTIFY_SEND_ATTEMPTS", ge=1)
    backoff_seconds: float = Field(0.5, alias="NOTIFY_BACKOFF_SECONDS", ge=0)
    backoff_max_seconds: float = Field(8.0, alias="NOTIFY_BACKOFF_MAX_SECONDS", ge=0)
    # The background sender: messages claimed per batch, provider calls in flight.
    send_batch: int = Field(100, alias="NOTIFY_SEND_BATCH", ge=1)
    send_concurrency: int = Field(16, alias="NOTIFY_SEND_CONCURRENCY", ge=1)


@lru_cache
def notify_settings() -> NotifySettings:
    return NotifySettings()
