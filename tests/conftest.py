"""Fixtures of the integration and end-to-end tiers: real PostgreSQL, real RabbitMQ, real processes."""
import pytest

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import Api


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    servers.require_postgres()
    servers.require_rabbitmq()
    with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client


@pytest.fixture(scope="module")
def amqp_uri():
    """A fresh RabbitMQ vhost of the machine's broker, removed afterwards."""
    servers.require_rabbitmq()
    vhost, uri = servers.isolated_vhost()
    yield uri
    servers.delete_vhost(vhost)


@pytest.fixture(autouse=True)
def _test_process_stays_unpatched():
    """Services monkey-patch their own processes for eventlet; the test process must not be (threads
    of in-process fake servers would turn green and deadlock). Importing svc_common.runner does it."""
    yield
    import sys

    if "eventlet" in sys.modules:
        import eventlet.patcher

        assert not eventlet.patcher.is_monkey_patched("socket"), "something monkey-patched the test process"
