"""Fixtures of the integration and end-to-end tiers: real PostgreSQL, real RabbitMQ, real processes."""
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack.stack import COMPONENTS, Stack, StackConfig
from tests import servers
from tests.api import Api


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free TCP ports."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size >= 65000:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block")


@contextmanager
def running_stack(tmp_path: Path, extra_env: dict | None = None):
    """All five services and the gateway as processes, on fresh PostgreSQL databases and a fresh vhost."""
    servers.require_postgres()
    servers.require_rabbitmq()
    dbs = servers.create_databases(COMPONENTS)
    vhost, amqp_uri = servers.isolated_vhost()
    base = free_port_block(7)
    stack = Stack(StackConfig(
        amqp_uri=amqp_uri, database_url=dbs.url, data_dir=tmp_path, jwt_secret=secrets.token_urlsafe(48),
        gateway_port=base, metrics_base_port=base + 1,
        extra_env={"EVENT_RETRY_DELAYS": "0.2,0.5,1", "OUTBOX_POLL_SECONDS": "0.2", **(extra_env or {})}))
    try:
        stack.migrate()
        stack.start_all()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop_all()
        servers.delete_vhost(vhost)
        servers.drop_databases(dbs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client
