"""The event envelope and the base class of every payload contract."""

import uuid
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Actor(BaseModel):
    id: uuid.UUID | None = None
    role: str | None = None


class EventEnvelope(BaseModel):
    event_id: uuid.UUID
    type: str
    schema_version: int = 1
    occurred_at: AwareDatetime
    tenant_id: uuid.UUID
    correlation_id: str | None = None
    actor: Actor | None = None
    data: dict[str, Any]

    def payload(self) -> Contract:
        """The typed payload for this event's type and version."""
        from svc_common.contracts import contract_for

        return contract_for(self.type, self.schema_version).model_validate(self.data)
