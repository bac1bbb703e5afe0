"""Demo data, created through the public API as a client would (safe to run twice)."""
import httpx

DEMO_TENANT = "demo"
DEMO_PASSWORD = "demo-pass-2026"
USERS = [
    {"username": "dispatcher", "name": "调度 张敏", "role": "dispatcher", "phone": "13800000001"},
    {"username": "tech", "name": "工程师 李强", "role": "technician", "phone": "13800000002"},
    {"username": "keeper", "name": "库管 王芳", "role": "warehouse_manager", "phone": "13800000003"},
]


def login(client: httpx.Client, username: str, tenant: str = DEMO_TENANT, password: str = DEMO_PASSWORD) -> dict:
    response = client.post("/api/v1/auth/login", json={"tenant": tenant, "username": username, "password": password})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def seed(base_url: str) -> bool:
    """Create the demo company; False if it already exists."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        created = client.post("/api/v1/tenants", json={
            "code": DEMO_TENANT, "name": "演示空调售后有限公司",
            "admin": {"username": "admin", "password": DEMO_PASSWORD, "name": "管理员"}})
        if created.status_code == 409:
            return False
        created.raise_for_status()
        admin = login(client, "admin")
        users = {}
        for user in USERS:
            r = client.post("/api/v1/users", headers=admin, json={**user, "password": DEMO_PASSWORD})
            r.raise_for_status()
            users[user["username"]] = r.json()
        customer = client.post("/api/v1/customers", headers=admin, json={
            "name": "上海申能大厦物业", "contacts": [{"name": "王经理", "phone": "13912345678"}],
            "addresses": [{"text": "上海市浦东新区世纪大道100号", "latitude": "31.235929", "longitude": "121.506058"}],
        }).raise_for_status().json()
        client.post(f"/api/v1/customers/{customer['id']}/equipment", headers=admin, json={
            "model": "格力 KFR-72LW", "serial_number": "GREE-2026-0001", "install_date": "2025-06-01",
            "warranty_end": "2028-06-01"}).raise_for_status()
        warehouse = client.post("/api/v1/warehouses", headers=admin, json={
            "name": "上海总仓", "manager_ids": [users["keeper"]["id"]]}).raise_for_status().json()
        part = client.post("/api/v1/parts", headers=admin, json={
            "code": "CAP-35UF", "name": "压缩机启动电容 35μF", "unit": "个", "min_stock": "5"}).raise_for_status().json()
        client.post(f"/api/v1/warehouses/{warehouse['id']}/stock-in", headers=admin, json={
            "lines": [{"part_id": part["id"], "quantity": "50"}], "note": "期初入库"}).raise_for_status()
        return True


def seed_all(base_url: str) -> tuple[bool, str | None]:
    """The demo company plus every area's demo data (each safe to run twice).
    Returns (created now, the public scan URL of the demo equipment's QR code)."""
    from . import demo_customers, demo_inventory, demo_notify, demo_tickets

    created, scan_url = seed(base_url), None
    if created:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            admin = login(client, "admin")
            equipment = client.get("/api/v1/equipment", headers=admin).raise_for_status().json()["items"][0]
            scan_url = demo_customers.seed(client, admin, equipment["id"])
    for area in (demo_inventory, demo_tickets, demo_notify):
        area.seed(base_url)
    return created, scan_url
