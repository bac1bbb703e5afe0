"""The caller's in-app inbox and the delivery log (notify service)."""
import uuid
from typing import Literal

from fastapi import APIRouter, Depends
from notify.schemas import DeliveryOut, InboxMessageOut
from pydantic import BaseModel

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok


class Inbox(Page[InboxMessageOut]):
    unread: int


class Updated(BaseModel):
    updated: int


class Unread(BaseModel):
    unread: int


router = APIRouter(responses=ERRORS, tags=["notifications"])


@router.get("/notifications", responses=ok(Inbox))
async def list_inbox(unread_only: bool = False, category: str | None = None, offset: Offset = 0, limit: Limit = 50,
                     svc: Services = Depends(services)):
    return await svc.reply("notify", "list_inbox", unread_only=unread_only, category=category, offset=offset,
                           limit=limit)


@router.get("/notifications/unread-count", responses=ok(Unread))
async def unread_count(svc: Services = Depends(services)):
    return await svc.reply("notify", "unread_count")


@router.post("/notifications/{message_id}/read", responses=ok(InboxMessageOut))
async def mark_read(message_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("notify", "mark_read", message_id=message_id)


@router.post("/notifications/read-all", responses=ok(Updated))
async def mark_all_read(svc: Services = Depends(services)):
    return await svc.reply("notify", "mark_all_read")


@router.get("/notification-deliveries", responses=ok(Page[DeliveryOut]))
async def list_deliveries(channel: str | None = None,
                          status: Literal["queued", "deferred", "sending", "sent", "failed", "muted",
                                          "rate_limited"] | None = None,
                          event_type: str | None = None, offset: Offset = 0, limit: Limit = 50,
                          svc: Services = Depends(services)):
    """The delivery log; `status=failed` is the failed list an admin resends from."""
    return await svc.reply("notify", "list_deliveries", channel=channel, status=status, event_type=event_type,
                           offset=offset, limit=limit)


@router.post("/notification-deliveries/{delivery_id}/resend", responses=ok(DeliveryOut))
async def resend_delivery(delivery_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("notify", "resend_delivery", delivery_id=delivery_id)
