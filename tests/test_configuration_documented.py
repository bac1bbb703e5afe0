"""Every environment variable the code reads is documented in docs/configuration.md."""
import re
from pathlib import Path

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
