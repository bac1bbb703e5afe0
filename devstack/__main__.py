"""`python -m devstack`: the whole platform on this machine (embedded default).

SQLite files under DATA_DIR (default ./data), the local RabbitMQ (started if it is not
reachable), migrations, demo data; prints the gateway URL and a demo login. Ctrl-C stops it.
"""
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from svc_common.settings import get_settings

from . import demo
from .broker import ensure_broker
from .stack import ROOT, Stack, StackConfig


def main() -> int:
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    amqp_uri = get_settings().amqp_uri
    ensure_broker(amqp_uri)
    secret_file = data_dir / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
    config = StackConfig(
        amqp_uri=amqp_uri,
        database_url=lambda name: os.environ.get(f"{name.upper()}_DATABASE_URL", f"sqlite:///{data_dir}/{name}.db"),
        data_dir=data_dir,
        jwt_secret=os.environ.get("JWT_SECRET") or secret_file.read_text().strip(),
        gateway_port=int(os.environ.get("GATEWAY_PORT", "8000")),
    )
    stack = Stack(config)
    print(f"data folder: {data_dir}\nmigrating ...", flush=True)
    stack.migrate()
    print("starting services and gateway ...", flush=True)
    stack.start_all()
    try:
        stack.wait_ready()
        seeded, scan_url = demo.seed_all(stack.gateway_url)
        print("\n" + "=" * 64)
        print(f"  gateway:   {stack.gateway_url}   (API docs: {stack.gateway_url}/docs)")
        print(f"  demo login ({'created' if seeded else 'existing'}): company '{demo.DEMO_TENANT}', "
              f"users admin / dispatcher / tech / keeper, password '{demo.DEMO_PASSWORD}'")
        if scan_url:
            print(f"  QR scan page of the demo air conditioner: {scan_url}")
        print(f"  logs:      {stack.logs_dir}   dev SMS: {data_dir / 'sms.log'}")
        print("  Ctrl-C stops everything.")
        print("=" * 64, flush=True)
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        while not stopping.wait(2):
            for name, process in stack.processes.items():
                if process.poll() is not None:  # say so loudly and bring it back
                    print(f"{name} exited ({process.returncode}); restarting. Log: {stack.logs_dir / name}.log",
                          file=sys.stderr, flush=True)
                    stack.start(name)
                    break
    except Exception as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        stack.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
