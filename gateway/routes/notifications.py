"""The caller's in-app inbox and the delivery log (notify service)."""
import uuid

from fastapi import APIRouter, Depends

from ..deps import Services, services

router = APIRouter(tags=["notifications"])


@router.get("/notifications")
async def list_inbox(unread_only: bool = False, offset: int = 0, limit: int = 50, svc: Services = Depends(services)):
    return await svc.reply("notify", "list_inbox", unread_only=unread_only, offset=max(offset, 0),
                           limit=max(min(limit, 200), 1))


@router.post("/notifications/{message_id}/read")
async def mark_read(message_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("notify", "mark_read", message_id=message_id)


@router.post("/notifications/read-all")
async def mark_all_read(svc: Services = Depends(services)):
    return await svc.reply("notify", "mark_all_read")


@router.get("/notification-deliveries")
async def list_deliveries(channel: str | None = None, offset: int = 0, limit: int = 50,
                          svc: Services = Depends(services)):
    return await svc.reply("notify", "list_deliveries", channel=channel, offset=max(offset, 0),
                           limit=max(min(limit, 200), 1))
