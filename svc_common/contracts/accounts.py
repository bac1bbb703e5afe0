"""Event and RPC contracts produced by gateway."""
import uuid

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


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "user.created": {1: UserV1},
    "user.updated": {1: UserV1},
    "user.deactivated": {1: UserV1},
}
