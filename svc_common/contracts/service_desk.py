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


class AnnouncementPublishedV1(Contract):
    """通知公告 to staff: notify puts it in every audience member's inbox (and on the channels the tenant's
    rules name for this event)."""
    announcement_id: uuid.UUID
    title: str
    summary: str  # the body's first 200 characters
    audience: Literal["all", "teams", "roles"]
    team_ids: list[uuid.UUID] = []
    roles: list[str] = []
    author_id: uuid.UUID | None = None


class ServiceReportSentV1(Contract):
    """A work order's service report (服务报告) goes to the customer: by email (notify sends the link with
    the PDF attached) or by SMS (the link). `report_path` is the no-login page under the gateway."""
    ticket_id: uuid.UUID
    number: str
    customer_id: uuid.UUID | None = None
    customer_name: str | None = None
    channel: Literal["email", "sms"]
    recipient_email: str | None = None
    recipient_phone: str | None = None
    contact_name: str | None = None
    report_path: str
    locale: Literal["zh-CN", "en"] = "zh-CN"


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "service_request.created": {1: ServiceRequestCreatedV1},
    "service_request.converted": {1: ServiceRequestConvertedV1},
    "service_request.closed": {1: ServiceRequestClosedV1},
    "announcement.published": {1: AnnouncementPublishedV1},
    "service_report.sent": {1: ServiceReportSentV1},
}
