"""Event contracts of the service desk (服务台), produced by the tickets service."""
from svc_common.contracts.base import Contract

PRODUCER = "tickets"

# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
}
