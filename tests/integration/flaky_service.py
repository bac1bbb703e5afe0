"""A probe service for the retry / dead-letter tests: its handler fails while a flag file exists.

Run as a process: `python -m tests.integration.flaky_service` with AMQP_URI, FLAKY_FLAG, FLAKY_OUT.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402

import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from nameko.runners import run_services  # noqa: E402

from svc_common.consumer import on_event  # noqa: E402
from svc_common.settings import get_settings  # noqa: E402


class FlakyService:
    name = "flaky"

    @on_event("probe", "probe.happened")
    def handle(self, envelope):
        if Path(os.environ["FLAKY_FLAG"]).exists():
            raise RuntimeError("probe handler told to fail")
        with open(os.environ["FLAKY_OUT"], "a") as out:
            out.write(json.dumps(envelope) + "\n")


if __name__ == "__main__":
    with run_services({"AMQP_URI": get_settings().amqp_uri, "serializer": "json"}, FlakyService):
        eventlet.sleep(3600)
