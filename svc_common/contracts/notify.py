"""Event and RPC contracts produced by notify."""
import uuid

from svc_common.contracts.base import Contract

PRODUCER = "notify"


class NotificationV1(Contract):
    notification_id: uuid.UUID
    channel: str  # sms | email | robot | in_app
    recipient: str  # phone, email address, robot kind, or user id (in_app)
    source_event_type: str
    error: str | None = None
    # additive, optional (v1): which event caused it, for whom, through what, after how many tries
    source_event_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    provider: str | None = None
    attempts: int | None = None


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "notification.sent": {1: NotificationV1},
    "notification.failed": {1: NotificationV1},
}
