"""Gateway configuration (environment only)."""
import hashlib
from functools import lru_cache

import limits

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_STORAGE_URI = "async+memory://"  # rate-limit counters in this process


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    jwt_secret: str = Field(alias="JWT_SECRET", min_length=32)
    # Rotation: tokens signed with a secret listed here stay valid until they expire, so a new
    # JWT_SECRET logs nobody out. Comma-separated; drop an entry after TOKEN_TTL_MINUTES.
    jwt_previous_secrets: str = Field("", alias="JWT_PREVIOUS_SECRETS")
    token_ttl_minutes: int = Field(720, alias="TOKEN_TTL_MINUTES")
    # How stale a token's "user is active and has this role" answer may be (per gateway process).
    account_recheck_seconds: float = Field(10.0, alias="ACCOUNT_RECHECK_SECONDS", ge=0)
    host: str = Field("0.0.0.0", alias="GATEWAY_HOST")
    port: int = Field(8000, alias="GATEWAY_PORT")
    # Public company sign-up (POST /api/v1/tenants); off in a private deployment.
    allow_signup: bool = Field(True, alias="ALLOW_SIGNUP")
    readiness_timeout_seconds: float = Field(2.0, alias="READINESS_TIMEOUT_SECONDS")
    # Rate limits ("<count>/<second|minute|hour>", empty = off); gateway/rate_limit.py says who is counted.
    rate_limit_storage_uri: str = Field(DEFAULT_STORAGE_URI, alias="RATE_LIMIT_STORAGE_URI")
    rate_limit_login: str = Field("10/minute", alias="RATE_LIMIT_LOGIN")
    rate_limit_user: str = Field("1200/minute", alias="RATE_LIMIT_USER")
    rate_limit_tenant: str = Field("12000/minute", alias="RATE_LIMIT_TENANT")
    rate_limit_anonymous: str = Field("300/minute", alias="RATE_LIMIT_ANONYMOUS")

    @field_validator("jwt_previous_secrets")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if any(len(secret) < 32 for secret in _split(value)):
            raise ValueError("every previous secret must be at least 32 characters")
        return value

    @field_validator("rate_limit_login", "rate_limit_user", "rate_limit_tenant", "rate_limit_anonymous")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        if value:
            try:
                limits.parse(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a rate like '10/minute'") from None
        return value

    def verification_secrets(self) -> dict[str, str]:
        """Key id → secret, for every secret a token may be signed with (current first)."""
        return {key_id(secret): secret for secret in [self.jwt_secret, *_split(self.jwt_previous_secrets)]}


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def key_id(secret: str) -> str:
    """A public fingerprint of a secret, sent as the token's `kid` header (reveals nothing)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@lru_cache
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
