"""Work-order demo data (issue 3), through the public API, after `devstack.demo.seed` created the demo
company: a Gree-style network (服务中心 → 浦东网点 with its manager and two technicians), a custom
installation type with its form, SLA rules with working hours, dispatch rules, and orders in
several states (in a branch queue, in the grab pool, assigned automatically). Safe to run twice."""
import time

import httpx

from .demo import DEMO_PASSWORD, login

BRANCH_PEOPLE = [
    {"username": "pudong_boss", "name": "浦东网点 陈经理", "role": "dispatcher", "phone": "13800000011"},
    {"username": "pudong_tech1", "name": "工程师 周涛", "role": "technician", "phone": "13800000012",
     "skills": ["空调", "格力"], "areas": ["浦东"]},
    {"username": "pudong_tech2", "name": "工程师 吴昊", "role": "technician", "phone": "13800000013",
     "skills": ["空调"], "areas": ["浦东"]},
]


def seed(base_url: str) -> bool:
    """False if the work-order demo data is already there."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        admin, dispatcher = login(client, "admin"), login(client, "dispatcher")
        first = client.post("/api/v1/work-order-types", headers=admin, json={
            "code": "gree_install", "name": "格力安装", "name_en": "Gree installation",
            "fields": [{"key": "units", "label": "台数", "kind": "number", "required": True, "min": 1},
                       {"key": "install_type", "label": "安装方式", "kind": "select",
                        "options": ["挂机", "柜机", "中央空调"]}],
            "flow": {"approval_required": True, "return_visit": True, "close_roles": ["admin", "dispatcher"]}})
        if first.status_code == 409:
            return False
        first.raise_for_status()
        people = {}
        for person in BRANCH_PEOPLE:
            r = client.post("/api/v1/users", headers=admin, json={**person, "password": DEMO_PASSWORD})
            r.raise_for_status()
            people[person["username"]] = r.json()["id"]
        center = client.post("/api/v1/teams", headers=admin, json={"name": "格力上海服务中心", "kind": "center"})
        center.raise_for_status()
        branch = client.post("/api/v1/teams", headers=admin, json={
            "name": "浦东网点", "kind": "branch", "parent_id": center.json()["id"],
            "member_ids": [people["pudong_tech1"], people["pudong_tech2"]],
            "manager_ids": [people["pudong_boss"]]})
        branch.raise_for_status()
        client.patch("/api/v1/work-order-settings", headers=admin, json={
            "check_in_radius_m": 500,
            "working_hours": {"timezone": "Asia/Shanghai", "days": [1, 2, 3, 4, 5, 6], "start": "08:30",
                              "end": "18:00"},
            "sla_rules": {"urgent": {"respond_minutes": 30, "arrive_minutes": 120, "complete_minutes": 480},
                          "high": {"respond_minutes": 60, "arrive_minutes": 240, "complete_minutes": 960},
                          "normal": {"respond_minutes": 120, "arrive_minutes": 1440, "complete_minutes": 2880}},
            "dispatch_rules": ["skill", "area", "team", "nearest", "least_open", "round_robin"]}).raise_for_status()
        customers = client.get("/api/v1/customers", headers=admin).raise_for_status().json()["items"]
        if not customers:
            return True
        customer_id = customers[0]["id"]
        install = client.post("/api/v1/work-orders", headers=dispatcher, json={
            "type": "gree_install", "customer_id": customer_id, "description": "新购两台格力挂机安装",
            "priority": "high", "custom_fields": {"units": 2, "install_type": "挂机"}}).raise_for_status().json()
        # the branch replica reaches tickets by event: a moment later is fine for demo data
        for _ in range(50):
            r = client.post(f"/api/v1/work-orders/{install['id']}/dispatch-to-branch", headers=dispatcher,
                            json={"branch_id": branch.json()["id"], "note": "就近网点"})
            if r.status_code < 300:
                break
            time.sleep(0.2)
        upkeep = client.post("/api/v1/work-orders", headers=dispatcher, json={
            "type": "maintenance", "customer_id": customer_id, "description": "季度保养：清洗滤网",
            "priority": "normal"}).raise_for_status().json()
        client.post(f"/api/v1/work-orders/{upkeep['id']}/publish", headers=dispatcher, json={"note": "抢单"})
        client.post("/api/v1/work-orders", headers=dispatcher, json={
            "type": "repair", "customer_id": customer_id, "description": "空调不制冷", "priority": "urgent",
            "skill": "空调", "area": "浦东", "auto_dispatch": True})
        return True
