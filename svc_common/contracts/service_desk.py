"""Event contracts of the service desk (服务台), produced by the tickets service.

A service request (服务事件) arrives by a channel, and is either converted into a work order or
closed without one. The reports service counts them per channel (服务台报表).
"""
import uuid
from typing import Literal

from svc_common.contracts.base import Contract

PRODUCER = "tickets"

Channel = Literal["phone", "portal", "qr_scan", "chat", "api"]


class ServiceRequestCreatedV1(Contract):
    request_id: uuid.UUID
    number: str
    channel: Channel
    event_type: str  # the kind of request (报修, 咨询, 投诉 ...) as the tenant configures it
    customer_id: uuid.UUID | None = None
    equipment_id: uuid.UUID | None = None


class ServiceRequestConvertedV1(Contract):
    request_id: uuid.UUID
    number: str
    ticket_id: uuid.UUID
    channel: Channel


class ServiceRequestClosedV1(Contract):
    request_id: uuid.UUID
    number: str
    channel: Channel
    outcome: str  # e.g. resolved_by_phone, duplicate, rejected


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "service_request.created": {1: ServiceRequestCreatedV1},
    "service_request.converted": {1: ServiceRequestConvertedV1},
    "service_request.closed": {1: ServiceRequestClosedV1},
}
