"""The first flow on the embedded default (SQLite files, one per service), as `bin/run` runs it."""
import pytest

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import Api
from tests.e2e import test_delivery_guarantees, test_first_flow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    servers.require_rabbitmq()
    with running_stack(tmp_path_factory.mktemp("embedded"), database="sqlite") as s:
        yield s


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client


def test_first_flow_on_sqlite(api, stack):
    test_first_flow.test_first_flow_end_to_end(api, stack)


def test_bad_input_on_sqlite(api):
    test_first_flow.test_bad_input_gets_a_clear_4xx_and_changes_nothing(api)


def test_services_killed_mid_flow_on_sqlite(api, stack):
    test_delivery_guarantees.test_services_killed_mid_flow_lose_no_event(api, stack)
