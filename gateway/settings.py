"""Gateway configuration (environment only)."""
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    jwt_secret: str = Field(alias="JWT_SECRET", min_length=32)
    token_ttl_minutes: int = Field(720, alias="TOKEN_TTL_MINUTES")
    host: str = Field("0.0.0.0", alias="GATEWAY_HOST")
    port: int = Field(8000, alias="GATEWAY_PORT")
    # Public company sign-up (POST /api/v1/tenants); off in a private deployment.
    allow_signup: bool = Field(True, alias="ALLOW_SIGNUP")
    readiness_timeout_seconds: float = Field(2.0, alias="READINESS_TIMEOUT_SECONDS")


@lru_cache
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
