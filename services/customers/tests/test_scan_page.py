"""The public page a QR sticker opens (gateway/portal.py), rendered from the customers service's
public_scan answer (here a stand-in RPC client): zh-CN by default, English on request, no personal
data, the fault form for a bound code, registration for an unbound one, 404 for an unknown code."""
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway import portal
from svc_common.rpc_client import RemoteError

BOUND = {"code": "ABCDEFGH2345", "printed_code": "ABCD-EFGH-2345", "status": "bound",
         "equipment": {"model": "KFR-72LW", "name": "格力柜机", "brand": "格力", "serial_number": "SN-1",
                       "status": "active", "install_date": "2025-06-01", "warranty_end": "2027-06-01",
                       "warranty_state": "in_warranty", "next_maintenance_date": "2026-12-01"},
         "recent_service": [{"date": "2026-10-01", "type": "maintenance", "summary": "清洗滤网"}]}
UNBOUND = {"code": "ZZZZEFGH2345", "printed_code": "ZZZZ-EFGH-2345", "status": "unused"}


class FakeRpc:
    def __init__(self):
        self.calls = []

    async def call(self, service, method, context=None, **kwargs):
        self.calls.append((service, method, context, kwargs))
        code = kwargs["code"]
        if code == BOUND["code"]:
            return BOUND
        if code == UNBOUND["code"]:
            return UNBOUND
        raise RemoteError("NotFound", f"QR code {code} not found")


@pytest.fixture
def client():
    app = FastAPI()
    app.include_router(portal.router)
    app.state.rpc = FakeRpc()
    with TestClient(app) as c:
        yield c


def test_bound_code_shows_equipment_warranty_history_and_fault_form_in_chinese(client):
    page = client.get(f"/q/{BOUND['code']}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'lang="zh-CN"' in html and "格力柜机" in html and "SN-1" in html
    assert "在保（至 2027-06-01）" in html and "保养 — 清洗滤网" in html
    assert 'id="fault"' in html and "故障描述" in html and 'type="file"' in html
    assert "/public/qr/${encodeURIComponent(code)}/fault-reports" in html
    assert 'name="viewport"' in html  # made for phones
    call = client.app.state.rpc.calls[-1]
    assert call[:2] == ("customers", "public_scan") and "tenant_id" not in call[2]


def test_english_on_request_and_by_browser_language(client):
    assert "Under warranty (until 2027-06-01)" in client.get(f"/q/{BOUND['code']}?lang=en").text
    html = client.get(f"/q/{BOUND['code']}", headers={"accept-language": "en-US,en;q=0.9"}).text
    assert "Report a fault" in html and 'lang="en"' in html


def test_unbound_code_opens_registration_and_unknown_is_404(client):
    html = client.get(f"/q/{UNBOUND['code']}").text
    assert "此维保码尚未绑定设备" in html and 'id="bind"' in html and 'id="fault"' not in html
    assert "/qr-codes/${encodeURIComponent(code)}/bind" in html
    missing = client.get("/q/NOPE")
    assert missing.status_code == 404 and "未找到此维保码" in missing.text


def test_page_escapes_what_it_shows(client):
    BOUND["equipment"]["name"] = "<script>alert(1)</script>"
    try:
        html = client.get(f"/q/{BOUND['code']}").text
    finally:
        BOUND["equipment"]["name"] = "格力柜机"
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
