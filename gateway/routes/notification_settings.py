"""Notification configuration (notify service): providers and their credentials, subscription
rules, templates, the tenant's settings, lists and users' own preferences. Admin-only except
a user's own preferences and list subscriptions; secrets are write-only (masked in answers)."""
import uuid
from typing import Literal

from fastapi import APIRouter, Depends
from notify.schemas import (
    ListMembersIn,
    ListOut,
    PreferenceIn,
    PreferenceOut,
    ProviderIn,
    ProviderOut,
    RuleIn,
    RuleOut,
    SettingsIn,
    SettingsOut,
    TemplateIn,
    TemplateOut,
)
from pydantic import BaseModel

from ..deps import Services, services
from ..problems import ERRORS, ItemList, ok

router = APIRouter(responses=ERRORS, tags=["notification settings"])

ProviderChannel = Literal["sms", "email", "robot"]
Channel = Literal["sms", "email", "robot", "in_app"]
Locale = Literal["zh-CN", "en"]


class Removed(BaseModel):
    removed: str


class Reset(BaseModel):
    reset: bool


@router.get("/notification-providers", responses=ok(ItemList[ProviderOut]))
async def list_providers(svc: Services = Depends(services)):
    return await svc.reply("notify", "list_providers")


@router.put("/notification-providers/{channel}", responses=ok(ProviderOut))
async def configure_provider(channel: ProviderChannel, body: ProviderIn, svc: Services = Depends(services)):
    return await svc.reply("notify", "configure_provider", channel=channel, provider=body.model_dump(mode="json"))


@router.delete("/notification-providers/{channel}", responses=ok(Removed))
async def remove_provider(channel: ProviderChannel, svc: Services = Depends(services)):
    return await svc.reply("notify", "remove_provider", channel=channel)


@router.get("/notification-rules", responses=ok(ItemList[RuleOut]))
async def list_rules(svc: Services = Depends(services)):
    """Every event notify handles with its rule: the tenant's own, or the default (`default: true`)."""
    return await svc.reply("notify", "list_rules")


@router.put("/notification-rules/{event_type}", responses=ok(RuleOut))
async def save_rule(event_type: str, body: RuleIn, svc: Services = Depends(services)):
    return await svc.reply("notify", "save_rule", event_type=event_type, rule=body.model_dump(mode="json"))


@router.delete("/notification-rules/{event_type}", responses=ok(RuleOut))
async def reset_rule(event_type: str, svc: Services = Depends(services)):
    return await svc.reply("notify", "reset_rule", event_type=event_type)


@router.get("/notification-templates", responses=ok(ItemList[TemplateOut]))
async def list_templates(event_type: str | None = None, svc: Services = Depends(services)):
    return await svc.reply("notify", "list_templates", event_type=event_type)


@router.put("/notification-templates/{event_type}/{channel}/{locale}", responses=ok(TemplateOut))
async def save_template(event_type: str, channel: Channel, locale: Locale, body: TemplateIn,
                        svc: Services = Depends(services)):
    """Saved only if it parses and uses only the event's variables (else 422 naming the part)."""
    return await svc.reply("notify", "save_template", event_type=event_type, channel=channel, locale=locale,
                           template=body.model_dump(mode="json"))


@router.delete("/notification-templates/{event_type}/{channel}/{locale}", responses=ok(Reset))
async def reset_template(event_type: str, channel: Channel, locale: Locale, svc: Services = Depends(services)):
    return await svc.reply("notify", "reset_template", event_type=event_type, channel=channel, locale=locale)


@router.get("/notification-settings", responses=ok(SettingsOut))
async def get_settings(svc: Services = Depends(services)):
    return await svc.reply("notify", "get_settings")


@router.put("/notification-settings", responses=ok(SettingsOut))
async def save_settings(body: SettingsIn, svc: Services = Depends(services)):
    return await svc.reply("notify", "save_settings", settings=body.model_dump(mode="json"))


@router.get("/notification-preferences/me", responses=ok(PreferenceOut))
async def my_preferences(svc: Services = Depends(services)):
    return await svc.reply("notify", "get_preferences")


@router.put("/notification-preferences/me", responses=ok(PreferenceOut))
async def save_my_preferences(body: PreferenceIn, svc: Services = Depends(services)):
    """Muted channels and quiet hours of the caller."""
    return await svc.reply("notify", "save_preferences", preferences=body.model_dump(mode="json"))


@router.get("/notification-preferences/{user_id}", responses=ok(PreferenceOut))
async def user_preferences(user_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("notify", "get_preferences", user_id=user_id)


@router.put("/notification-preferences/{user_id}", responses=ok(PreferenceOut))
async def save_user_preferences(user_id: uuid.UUID, body: PreferenceIn, svc: Services = Depends(services)):
    return await svc.reply("notify", "save_preferences", user_id=user_id, preferences=body.model_dump(mode="json"))


@router.get("/notification-lists", responses=ok(ItemList[ListOut]))
async def list_lists(svc: Services = Depends(services)):
    """The subscription lists (待分配/工单池/待结算/待回访/服务台/设备预警/管理员日报) and their members."""
    return await svc.reply("notify", "list_lists")


@router.put("/notification-lists/{name}/members", responses=ok(ListOut))
async def set_list_members(name: str, body: ListMembersIn, svc: Services = Depends(services)):
    return await svc.reply("notify", "set_list_members", name=name, members=body.model_dump(mode="json"))


@router.post("/notification-lists/{name}/subscribe", responses=ok(ListOut))
async def subscribe(name: str, svc: Services = Depends(services)):
    return await svc.reply("notify", "subscribe_list", name=name, subscribed=True)


@router.delete("/notification-lists/{name}/subscribe", responses=ok(ListOut))
async def unsubscribe(name: str, svc: Services = Depends(services)):
    return await svc.reply("notify", "subscribe_list", name=name, subscribed=False)
