"""Spare-parts demo data (issue 4), through the public API, after `devstack.demo.seed` created the demo
company: a category tree with priced parts, service items (服务项目), a regional warehouse below
上海总仓 with stock transferred to it, and the technician's personal stock. Safe to run twice."""
import httpx

from .demo import login

PARTS = [
    {"code": "CMP-ZR72", "name": "涡旋压缩机 ZR72", "category": "空调/压缩机", "model": "ZR72KCE", "unit": "台",
     "sale_price": "2680.00", "cost_price": "1850.00", "min_stock": "2"},
    {"code": "FLT-G4", "name": "初效过滤网 G4", "category": "空调/耗材", "model": "G4-595", "unit": "片",
     "sale_price": "45.00", "cost_price": "18.00", "min_stock": "20"},
    {"code": "R410A-10", "name": "R410A 冷媒", "category": "空调/冷媒", "model": "10kg", "unit": "千克",
     "sale_price": "95.00", "cost_price": "60.00", "min_stock": "10"},
]
SERVICE_ITEMS = [
    {"code": "SV-VISIT", "name": "上门费", "unit": "次", "price": "80.00", "cost_price": "30.00"},
    {"code": "SV-CLEAN", "name": "空调深度清洗", "unit": "台", "price": "180.00", "cost_price": "60.00"},
    {"code": "SV-GAS", "name": "加氟", "unit": "次", "price": "260.00", "cost_price": "90.00"},
]


def seed(base_url: str) -> bool:
    """False if the spare-parts demo data is already there."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        admin, keeper, tech = (login(client, name) for name in ("admin", "keeper", "tech"))
        first = client.post("/api/v1/service-items", headers=admin, json=SERVICE_ITEMS[0])
        if first.status_code == 409:
            return False
        first.raise_for_status()
        for item in SERVICE_ITEMS[1:]:
            client.post("/api/v1/service-items", headers=admin, json=item).raise_for_status()
        header = "code,name,category,model,unit,sale_price,cost_price,min_stock\n"
        body = header + "".join(",".join(p[k] for k in ("code", "name", "category", "model", "unit", "sale_price",
                                                         "cost_price", "min_stock")) + "\n" for p in PARTS)
        client.post("/api/v1/parts/import?format=csv", headers=admin, content=body.encode()).raise_for_status()
        parts = {p["code"]: p for p in client.get("/api/v1/parts", headers=admin).raise_for_status().json()["items"]}
        warehouses = client.get("/api/v1/warehouses", headers=admin).raise_for_status().json()["items"]
        hq = next(w for w in warehouses if w["name"] == "上海总仓")
        keeper_id = hq["manager_ids"][0]
        client.patch(f"/api/v1/warehouses/{hq['id']}", headers=admin, json={"level": "headquarters"}).raise_for_status()
        office = client.post("/api/v1/warehouses", headers=admin, json={
            "name": "浦东办事处库", "level": "office", "parent_id": hq["id"], "manager_ids": [keeper_id]},
        ).raise_for_status().json()
        client.post(f"/api/v1/warehouses/{hq['id']}/stock-in", headers=keeper, json={"note": "期初入库", "lines": [
            {"part_id": parts["CMP-ZR72"]["id"], "quantity": "6"}, {"part_id": parts["FLT-G4"]["id"], "quantity": "100"},
            {"part_id": parts["R410A-10"]["id"], "quantity": "40"}]}).raise_for_status()
        transfer = client.post("/api/v1/transfers", headers=keeper, json={
            "from_warehouse_id": hq["id"], "to_warehouse_id": office["id"], "note": "办事处备货",
            "lines": [{"part_id": parts["FLT-G4"]["id"], "quantity": "30"}]}).raise_for_status().json()
        client.post(f"/api/v1/transfers/{transfer['id']}/receive", headers=keeper, json={
            "lines": [{"part_id": parts["FLT-G4"]["id"], "quantity": "20"}]}).raise_for_status()  # 10 still in transit
        requisition = client.post("/api/v1/requisitions", headers=tech, json={
            "warehouse_id": office["id"], "lines": [{"part_id": parts["FLT-G4"]["id"], "quantity": "4"}]},
        ).raise_for_status().json()
        client.post(f"/api/v1/requisitions/{requisition['id']}/approve", headers=keeper).raise_for_status()
        return True
