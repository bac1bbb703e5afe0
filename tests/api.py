"""A thin HTTP client for the tests, speaking to the gateway as any client would."""
import time
import uuid

import httpx

PASSWORD = "test-pass-2026"


class Api:
    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.http.close()

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, f"/api/v1{path}", headers=headers, **kwargs)

    def ok(self, method: str, path: str, token: str | None = None, **kwargs) -> dict:
        response = self.request(method, path, token, **kwargs)
        assert response.status_code < 300, f"{method} {path} → {response.status_code} {response.text}"
        return response.json()

    def login(self, tenant: str, username: str) -> str:
        return self.ok("POST", "/auth/login", json={"tenant": tenant, "username": username,
                                                    "password": PASSWORD})["access_token"]

    def new_company(self) -> dict:
        """A fresh tenant with an admin, a dispatcher, a technician and a warehouse manager; their tokens."""
        code = f"co-{uuid.uuid4().hex[:10]}"
        self.ok("POST", "/tenants", json={"code": code, "name": f"公司 {code}",
                                          "admin": {"username": "admin", "password": PASSWORD, "name": "管理员"}})
        admin = self.login(code, "admin")
        company = {"code": code, "admin": admin, "ids": {}}
        for username, role in (("dispatcher", "dispatcher"), ("tech", "technician"), ("keeper", "warehouse_manager")):
            user = self.ok("POST", "/users", admin, json={"username": username, "password": PASSWORD,
                                                          "name": username, "role": role, "phone": "13800000009"})
            company["ids"][username] = user["id"]
            company[username] = self.login(code, username)
        return company


def eventually(check, timeout: float = 15, interval: float = 0.1):
    """Poll `check` until it returns a truthy value (eventual consistency of events), else fail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")
