"""Event and RPC contracts produced by gateway."""
import uuid
from typing import Literal

from svc_common.contracts.base import Contract

PRODUCER = "gateway"


class UserV1(Contract):
    user_id: uuid.UUID
    name: str
    username: str
    role: str
    phone: str | None = None
    email: str | None = None
    active: bool = True
    team_ids: list[uuid.UUID] = []
    skills: list[str] = []
    areas: list[str] = []  # service areas (district codes or names) for dispatch by area


class TeamUpdatedV1(Contract):
    """A team, branch (网点), service centre or external (委外) team as it is now."""
    team_id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None = None
    kind: Literal["team", "branch", "center", "external"]
    member_ids: list[uuid.UUID] = []
    manager_ids: list[uuid.UUID] = []
    active: bool = True


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "user.created": {1: UserV1},
    "user.updated": {1: UserV1},
    "user.deactivated": {1: UserV1},
    "team.updated": {1: TeamUpdatedV1},
}
