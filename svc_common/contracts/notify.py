"""Event and RPC contracts produced by notify."""
import uuid

from svc_common.contracts.base import Contract

PRODUCER = "notify"


class NotificationV1(Contract):
    notification_id: uuid.UUID
    channel: str
    recipient: str
    source_event_type: str
    error: str | None = None


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "notification.sent": {1: NotificationV1},
    "notification.failed": {1: NotificationV1},
}
