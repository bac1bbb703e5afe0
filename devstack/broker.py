"""Make sure a RabbitMQ is reachable; start the local one if it is installed but stopped."""
import shutil
import subprocess
import time
import urllib.parse

import kombu

HOW_TO_GET_ONE = """No RabbitMQ is reachable at {uri} and none can be started here.
Get one of these, then run again:
  * Debian/Ubuntu:  sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached
  * Docker:         docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3.13-management
  * or point AMQP_URI at an existing broker, e.g. AMQP_URI=amqp://user:pass@host:5672/
"""


def reachable(uri: str, timeout: float = 2) -> bool:
    try:
        with kombu.Connection(uri, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def ensure_broker(uri: str, wait_seconds: float = 60) -> None:
    if reachable(uri):
        return
    host = urllib.parse.urlparse(uri).hostname
    server = shutil.which("rabbitmq-server")
    if host not in ("127.0.0.1", "localhost") or server is None:
        raise SystemExit(HOW_TO_GET_ONE.format(uri=uri))
    print("RabbitMQ not reachable; starting the local one (rabbitmq-server -detached) ...", flush=True)
    subprocess.run([server, "-detached"], check=False, capture_output=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if reachable(uri):
            return
        time.sleep(1)
    raise SystemExit(HOW_TO_GET_ONE.format(uri=uri))


def create_vhost(name: str) -> str:
    """An isolated vhost on the local broker (tests, benchmarks); returns its name."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RuntimeError("rabbitmqctl is needed to create an isolated vhost for tests")
    subprocess.run([ctl, "add_vhost", name], check=True, capture_output=True)
    subprocess.run([ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
    return name


def delete_vhost(name: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        subprocess.run([ctl, "delete_vhost", name], check=False, capture_output=True)
