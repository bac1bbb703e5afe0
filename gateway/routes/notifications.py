"""The caller's in-app inbox and the delivery log (notify service)."""
import uuid

from fastapi import APIRouter, Depends
from notify.schemas import DeliveryOut, InboxMessageOut
from pydantic import BaseModel

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok


class Inbox(Page[InboxMessageOut]):
    unread: int


class Updated(BaseModel):
    updated: int


router = APIRouter(responses=ERRORS, tags=["notifications"])


@router.get("/notifications", responses=ok(Inbox))
async def list_inbox(unread_only: bool = False, offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("notify", "list_inbox", unread_only=unread_only, offset=offset,
                           limit=limit)


@router.post("/notifications/{message_id}/read", responses=ok(InboxMessageOut))
async def mark_read(message_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("notify", "mark_read", message_id=message_id)


@router.post("/notifications/read-all", responses=ok(Updated))
async def mark_all_read(svc: Services = Depends(services)):
    return await svc.reply("notify", "mark_all_read")


@router.get("/notification-deliveries", responses=ok(Page[DeliveryOut]))
async def list_deliveries(channel: str | None = None, offset: Offset = 0, limit: Limit = 50,
                          svc: Services = Depends(services)):
    return await svc.reply("notify", "list_deliveries", channel=channel, offset=offset,
                           limit=limit)
