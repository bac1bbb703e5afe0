"""Demo data of the customers area (product template, custom field, QR codes), through the API.

Called from devstack/demo.py after it has created the demo customer and equipment:
    scan_url = demo_customers.seed(client, admin_headers, equipment["id"])
Prints nothing; returns the scan URL of the bound code, worth showing beside the demo login.
"""
import httpx


def seed(client: httpx.Client, admin: dict, equipment_id: str) -> str:
    client.post("/api/v1/product-templates", headers=admin, json={
        "model": "格力 KFR-72LW", "name": "格力柜式空调 3匹", "brand": "格力", "specs": {"制冷量": "7200W"},
        "maintenance_interval_days": 90, "warranty_months": 36}).raise_for_status()
    client.post("/api/v1/custom-fields", headers=admin, json={
        "entity": "customer", "key": "level", "label": "客户等级", "type": "select",
        "options": ["A", "B", "C"]}).raise_for_status()
    client.patch(f"/api/v1/equipment/{equipment_id}", headers=admin, json={
        "maintenance_interval_days": 90}).raise_for_status()
    batch = client.post("/api/v1/qr-batches", headers=admin, json={"size": 20, "note": "演示"}).raise_for_status().json()
    code = client.get(f"/api/v1/qr-codes?batch_id={batch['id']}&limit=1", headers=admin).raise_for_status().json()
    first = code["items"][0]["code"]
    client.post(f"/api/v1/qr-codes/{first}/bind", headers=admin,
                json={"equipment_id": equipment_id}).raise_for_status()
    return f"{str(client.base_url).rstrip('/')}/q/{first}"
