"""Configuration, only from environment variables (documented in docs/configuration.md)."""
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    amqp_uri: str = Field("amqp://guest:guest@127.0.0.1:5672/", alias="AMQP_URI")
    # Each process gets its own DATABASE_URL; the embedded default is a SQLite file.
    database_url: str = Field("sqlite:///data/app.db", alias="DATABASE_URL")
    metrics_port: int = Field(9100, alias="METRICS_PORT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # Concurrent workers per instance (RPC and event handlers); sizes the DB pool too (db.make_engine).
    max_workers: int = Field(16, alias="MAX_WORKERS")
    # Seconds between retries of a failed event handler; after the last, the dead-letter queue.
    event_retry_delays: str = Field("1,5,30", alias="EVENT_RETRY_DELAYS")
    outbox_poll_seconds: float = Field(0.5, alias="OUTBOX_POLL_SECONDS")
    rpc_timeout_seconds: float = Field(10.0, alias="RPC_TIMEOUT_SECONDS")
    # Batch handlers (svc_common/batch_consumer.py): events per transaction, and how long the oldest
    # collected event may wait for its batch to fill.
    event_batch_size: int = Field(500, alias="EVENT_BATCH_SIZE", ge=1)
    event_batch_wait_ms: float = Field(50.0, alias="EVENT_BATCH_WAIT_MS", ge=0)
    # PostgreSQL pool per process; default MAX_WORKERS + 4 (db.make_engine says why).
    db_pool_size: int | None = Field(None, alias="DB_POOL_SIZE", ge=1)
    # off (a private network or a TLS sidecar) or verify (CA and host name checked; db._postgres_tls).
    database_ssl: Literal["off", "verify"] = Field("off", alias="DATABASE_SSL")
    database_ssl_ca: str | None = Field(None, alias="DATABASE_SSL_CA")
    # Development SMS provider writes here (notify).
    sms_log_path: str = Field("data/sms.log", alias="SMS_LOG_PATH")

    @property
    def retry_delays(self) -> list[float]:
        return [float(x) for x in self.event_retry_delays.split(",") if x.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
