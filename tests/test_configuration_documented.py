"""Every environment variable the code reads is documented in docs/configuration.md."""
import re
from pathlib import Path

import pydantic
import pytest
from customers.settings import CustomersSettings
from notify.settings import NotifySettings
from tickets.settings import TicketsSettings

from gateway.settings import GatewaySettings
from svc_common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
READS = re.compile(r'os\.environ(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)"|alias="([A-Z][A-Z0-9_]+)"')
# Set by tools for the tools, not configuration of the platform.
NOT_CONFIGURATION = {"PYTHONPATH", "TEST_PG_DRIVER", "TEST_PG_HOST", "TEST_PG_PORT", "TEST_PG_USER", "TEST_AMQP_URI",
                     "CI", "PYTHONUNBUFFERED"}


def variables_read() -> dict[str, Path]:
    found = {}
    for folder in ("svc_common", "gateway", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            if "tests" in path.parts:
                continue
            for match in READS.finditer(path.read_text(encoding="utf-8")):
                found.setdefault(match.group(1) or match.group(2), path.relative_to(ROOT))
    return found


def test_every_variable_the_code_reads_is_documented():
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text(),
                                re.MULTILINE))
    missing = {name: str(path) for name, path in variables_read().items()
               if name not in documented and name not in NOT_CONFIGURATION}
    assert missing == {}


def test_the_check_sees_the_variables():
    found = variables_read()
    assert {"AMQP_URI", "JWT_SECRET", "TICKETS_STORAGE_DIR"} <= set(found)


def documented_defaults() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| [^|]+ \| `([^`|]+)` \|", (ROOT / "docs" / "configuration.md").read_text(),
                      re.MULTILINE)
    return dict(rows)


def test_the_documented_defaults_are_the_code_defaults():
    documented = documented_defaults()
    wrong = {}
    for settings in (Settings, GatewaySettings, NotifySettings, TicketsSettings, CustomersSettings):
        for field in settings.model_fields.values():
            if field.alias not in documented or field.default is None:
                continue
            doc, code = documented[field.alias], field.default
            same = float(doc) == code if isinstance(code, (int, float)) and not isinstance(code, bool) \
                else doc.lower() == str(code).lower()
            if not same:
                wrong[field.alias] = (doc, code)
    assert wrong == {}
    assert {"EVENT_BATCH_SIZE", "NOTIFY_SEND_BATCH", "SLA_SCAN_SECONDS"} <= set(documented)  # the check reads the table


def test_a_bad_value_is_refused_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("NOTIFY_SEND_BATCH", "0")
    monkeypatch.setenv("DATABASE_SSL", "maybe")
    for settings, variable in ((NotifySettings, "NOTIFY_SEND_BATCH"), (Settings, "DATABASE_SSL")):
        with pytest.raises(pydantic.ValidationError, match=variable):
            settings()
