"""Who is asking, for which tenant, under which correlation id.

The gateway puts these into nameko's context data (AMQP headers `nameko.<key>`);
nameko propagates them through nested RPC, and events carry them in the envelope.
"""
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .errors import Forbidden

# Read by the JSON log formatter; set per worker (greenlet) or per HTTP request.
correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


@dataclass(frozen=True)
class RequestContext:
    tenant_id: uuid.UUID
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    correlation_id: str | None = None
    locale: str = "zh-CN"
    request_id: str | None = None  # one RPC call; the same on a redelivery of that call

    @classmethod
    def from_context_data(cls, data: dict[str, Any]) -> "RequestContext":
        tenant = data.get("tenant_id")
        if not tenant:
            # Every business call is tenant-scoped; a call without a tenant is refused.
            raise Forbidden("tenant_id missing from call context")
        actor = data.get("actor_id")
        return cls(
            tenant_id=uuid.UUID(str(tenant)),
            actor_id=uuid.UUID(str(actor)) if actor else None,
            actor_role=data.get("actor_role"),
            correlation_id=data.get("correlation_id"),
            locale=data.get("locale") or "zh-CN",
            request_id=data.get("request_id"),
        )

    def to_context_data(self) -> dict[str, str]:
        data = {"tenant_id": str(self.tenant_id), "locale": self.locale}
        if self.actor_id:
            data["actor_id"] = str(self.actor_id)
        if self.actor_role:
            data["actor_role"] = self.actor_role
        if self.correlation_id:
            data["correlation_id"] = self.correlation_id
        if self.request_id:
            data["request_id"] = self.request_id
        return data

    @property
    def actor(self) -> dict | None:
        if self.actor_id is None:
            return None
        return {"id": str(self.actor_id), "role": self.actor_role}


def system_context(tenant_id: uuid.UUID, correlation_id: str | None = None) -> RequestContext:
    """Context for work a service does on its own (event handlers, timers)."""
    return RequestContext(tenant_id=tenant_id, actor_role="system", correlation_id=correlation_id)
