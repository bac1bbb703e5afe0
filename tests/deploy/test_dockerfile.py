"""The root Dockerfile and .dockerignore, read as text (no Docker engine here)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEALTHCHECK_SCRIPT = REPO / "deploy" / "healthcheck.py"
PYTHONPATH = (
    "/app:/app/services/tickets:/app/services/inventory:/app/services/customers"
    ":/app/services/notify:/app/services/reports"
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuations joined."""
    text = re.sub(r"^\s*#.*\n", "", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.strip():
            op, _, args = line.strip().partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def ops() -> list[str]:
    return [op for op, _ in instructions()]


def test_base_image_is_a_pinned_slim_python_311():
    froms = [args for op, args in instructions() if op == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", froms[0])


def test_dependencies_install_from_the_hashed_lock_before_the_code_is_copied():
    steps = instructions()
    copy_lock = steps.index(("COPY", "requirements.lock ./"))
    install = next(i for i, (op, a) in enumerate(steps) if op == "RUN" and "pip install" in a)
    copy_all = steps.index(("COPY", ". ."))
    assert copy_lock < install < copy_all  # code changes reuse the dependency layer
    args = shlex.split(steps[install][1])
    assert {"--require-hashes", "--no-deps"} <= set(args)
    assert args[args.index("-r") + 1] == "requirements.lock"


def test_every_locked_requirement_has_a_hash():
    # --require-hashes fails the build on any pin without one.
    blocks = re.split(r"\n(?=\S)", (REPO / "requirements.lock").read_text())
    pins = [b for b in blocks if re.match(r"[A-Za-z0-9]", b)]
    assert pins
    for block in pins:
        assert "==" in block.split()[0] and "--hash=sha256:" in block, block.splitlines()[0]


def test_pythonpath_covers_the_app_and_every_service():
    envs = " ".join(args for op, args in instructions() if op == "ENV")
    assert f"PYTHONPATH={PYTHONPATH}" in envs.split()


def test_runs_as_a_numeric_non_root_user_after_installing():
    users = [args for op, args in instructions() if op == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes' runAsNonRoot can verify it
    assert max(i for i, op in enumerate(ops()) if op == "USER") > max(
        i for i, op in enumerate(ops()) if op in ("RUN", "COPY")
    )


def test_only_data_is_writable_by_the_runtime_user():
    uid = [args for op, args in instructions() if op == "USER"][-1].split(":")[0]
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert f"chown {uid}:" in runs and "/app/data" in runs
    assert not any(op == "COPY" and "--chown" in args for op, args in instructions())


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore matching: rooted at the context, `**/` spans folders."""
    out = ""
    for part in re.split(r"(\*\*/|\*|\?)", pattern.strip("/")):
        out += {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out + "(?:/.*)?")  # an excluded folder takes its contents along


def ignored(path: str) -> bool:
    result = False
    for pattern in dockerignore():  # the last matching line wins; "!" re-includes
        if pattern_regex(pattern.lstrip("!")).fullmatch(path):
            result = not pattern.startswith("!")
    return result


@pytest.mark.parametrize(
    "path", [".venv", ".git", "data", "var", ".venv/bin/python", "data/tickets.db", "svc_common/__pycache__/x.pyc"]
)
def test_dockerignore_keeps_local_state_out(path):
    assert ignored(path)


@pytest.mark.parametrize(
    "path",
    ["requirements.lock", "svc_common/runner.py", "gateway/__main__.py", "services/tickets/tickets/service.py",
     "deploy/healthcheck.py"],
)
def test_dockerignore_keeps_what_the_image_needs(path):
    assert not ignored(path)


# --- health command -------------------------------------------------------------


def healthcheck_module():
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_has_a_health_command_running_the_script_in_the_image():
    (args,) = [a for op, a in instructions() if op == "HEALTHCHECK"]
    options, _, cmd = args.partition("CMD")
    assert json.loads(cmd) == ["python", "/app/deploy/healthcheck.py"]  # exec form: no shell in the way
    assert "--timeout=" in options and "--start-period=" in options
    # COPY . . puts deploy/healthcheck.py at /app/deploy/healthcheck.py (WORKDIR /app)
    assert ("WORKDIR", "/app") in instructions() and ("COPY", ". .") in instructions()


@pytest.mark.parametrize(
    "cmdline, env, url",
    [
        ("python -m svc_common.runner tickets", {"METRICS_PORT": "9100"}, "http://127.0.0.1:9100/healthz"),
        ("python -m svc_common.runner notify", {}, "http://127.0.0.1:9100/healthz"),
        ("python -m svc_common.runner reports", {"METRICS_PORT": "9200"}, "http://127.0.0.1:9200/healthz"),
        ("python -m gateway", {"METRICS_PORT": "9100"}, "http://127.0.0.1:8000/healthz"),
        ("python -m gateway", {"GATEWAY_PORT": "8080"}, "http://127.0.0.1:8080/healthz"),
        ("python -m svc_common.migrate tickets", {}, None),
    ],
)
def test_health_command_probes_the_roles_own_port(cmdline, env, url):
    assert healthcheck_module().health_url(cmdline, env) == url


def test_health_command_fails_when_nothing_answers(monkeypatch):
    module = healthcheck_module()
    # a port nothing listens on: the probe must report unhealthy, not raise
    monkeypatch.setattr(module, "health_url", lambda cmdline, env: "http://127.0.0.1:9/healthz")
    assert module.main() == 1
