"""The image's HEALTHCHECK: GET /healthz of whichever role this container runs.

One image runs every role, each on its own port, so the port comes from the
container's command (PID 1): a service (`svc_common.runner`) serves on
METRICS_PORT (9100), the gateway on GATEWAY_PORT (8000). A one-shot migration
has no server and counts as healthy while it runs. Standard library only, so
it works in the slim image without curl/wget.
"""
import os
import sys
import urllib.request


def health_url(cmdline: str, env: dict) -> str | None:
    if "svc_common.migrate" in cmdline:
        return None
    if "svc_common.runner" in cmdline:
        port = env.get("METRICS_PORT") or "9100"
    else:
        port = env.get("GATEWAY_PORT") or "8000"
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    url = health_url(cmdline, dict(os.environ))
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
