"""Notification demo data (issue 6), through the public API, after `devstack.demo.seed` created the
demo company: the portal address (so the completion SMS carries a rating link), the dispatcher
subscribed to new orders awaiting dispatch (待分配工单订阅), the admin to the daily digest, and the
technician's quiet hours. SMS go to the development file provider (data/sms.log). Safe to run twice."""
import httpx

from .demo import login


def seed(base_url: str) -> bool:
    """False if the notification demo settings are already there."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        admin, dispatcher, tech = (login(client, name) for name in ("admin", "dispatcher", "tech"))
        settings = client.get("/api/v1/notification-settings", headers=admin).raise_for_status().json()
        if settings.get("portal_url"):
            return False
        client.put("/api/v1/notification-settings", headers=admin, json={
            **settings, "portal_url": base_url}).raise_for_status()
        client.post("/api/v1/notification-lists/pending_dispatch/subscribe", headers=dispatcher).raise_for_status()
        client.post("/api/v1/notification-lists/daily_digest/subscribe", headers=admin).raise_for_status()
        client.put("/api/v1/notification-preferences/me", headers=tech, json={
            "quiet_start": "22:00", "quiet_end": "07:30"}).raise_for_status()
        return True
