"""Alert rules and Grafana dashboards against the code, offline.

PromQL is parsed with promql-parser (a port of Prometheus' own grammar).
Every series a rule or panel selects must exist: our metrics are read from
svc_common.metrics itself (names, types -> _total/_bucket/... series, label
names); the others are listed with their source in
deploy_support.EXTERNAL_METRICS. Label values are checked too, where the code
defines them: services, entrypoints, event types, outcomes, error classes,
scrape jobs, and queue-name regexes against the queues nameko declares.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    COMPONENTS,
    REPO,
    SERVICES,
    code_metrics,
    declared_queues,
    derived_queues,
    entrypoints,
    known_metrics,
    matchers,
    needs_promtool,
    selectors,
)

PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
OUTCOMES = {"ok", "duplicate", "retried", "dead_lettered"}  # svc_common consumer/nameko_deps
KINDS = {"rpc", "event", "timer"}  # nameko_deps.Platform.worker_result: "event" or the entrypoint class, lowered


def expected_errors() -> set[str]:
    from svc_common.errors import EXPECTED_ERRORS

    return {cls.__name__ for cls in EXPECTED_ERRORS}


def scrape_jobs() -> set[str]:
    return {j["job_name"] for j in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}


def all_queues() -> set[str]:
    out = set(derived_queues())
    for q in declared_queues().values():
        out |= q["rpc"] | q["event"]
    return out


def alternatives(matcher) -> set[str]:
    """The literal values an = or =~ matcher accepts, when its regex is a plain alternation."""
    value = matcher.value
    if str(matcher.op).endswith("Re") or "Re" in str(matcher.op):
        if re.fullmatch(r"[\w.\-|]+", value):
            return set(value.split("|"))
        return set()  # a real regex; checked against queue names instead
    return {value}


def is_negative(matcher) -> bool:
    return "Not" in str(matcher.op)


def selector_problems(expr: str) -> list[str]:
    """What in a PromQL expression does not exist in the code; empty when it all does."""
    problems = []
    known = known_metrics()
    for sel in selectors(expr):
        name = sel.name
        if name not in known:
            problems.append(f"unknown metric {name!r}")
            continue
        ms = matchers(sel)
        service = next((m.value for m in ms if m.name == "service" and str(m.op).endswith("Equal")
                        and not is_negative(m)), None)
        for m in ms:
            if m.name == "__name__":
                continue
            if m.name not in known[name]:
                problems.append(f"{name}: no label {m.name!r}")
                continue
            values = alternatives(m)
            allowed = None
            if m.name == "service":
                allowed = set(COMPONENTS)
            elif m.name == "outcome":
                allowed = OUTCOMES
            elif m.name == "kind":
                allowed = KINDS
            elif m.name == "error" and is_negative(m):
                allowed = expected_errors()
            elif m.name == "job":
                allowed = scrape_jobs()
            elif m.name == "entrypoint" and service in SERVICES:
                eps = entrypoints(service)
                allowed = eps["rpc"] | eps["event"]
            elif m.name == "event_type" and service in SERVICES:
                allowed = entrypoints(service)["event_types"]
            elif m.name == "queue":
                rx = re.compile(m.value)
                if not any(rx.fullmatch(q) for q in all_queues()):
                    problems.append(f"{name}: queue matcher {m.value!r} matches no queue the code declares")
            if allowed is not None and not values <= allowed:
                problems.append(f"{name}: {m.name} values {sorted(values - allowed)} do not exist")
    return problems


# --- the check itself ------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("rate(entrypoint_erors_total[5m])", "unknown metric"),
        ('outbox_backlog{servce="tickets"}', "no label"),
        ('entrypoint_errors_total{service="inventory", entrypoint=~"receive_stock|move_stock"}', "do not exist"),
        ('events_consumed_total{outcome="lost"}', "do not exist"),
        ('events_consumed_total{service="inventory", event_type="ticket.created"}', "do not exist"),
        ('rabbitmq_queue_messages{queue=~".+\\\\.deadletter"}', "matches no queue"),
        ('up{job="ticket"}', "do not exist"),
    ],
)
def test_metric_check_catches_what_does_not_exist(expr, expected):
    assert any(expected in p for p in selector_problems(expr))


def test_code_metrics_are_read_from_svc_common():
    names = code_metrics()
    for metric in ("entrypoint_latency_seconds_bucket", "entrypoint_errors_total", "events_consumed_total",
                   "event_lag_seconds_bucket", "outbox_backlog", "outbox_published_total",
                   "http_request_latency_seconds_count"):
        assert metric in names
    assert {"service", "entrypoint", "kind", "le"} <= names["entrypoint_latency_seconds_bucket"]


# --- alert rules ------------------------------------------------------------------


def rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


RULES = rules()
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def test_rule_file_shape():
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names))
    alerts = [r["alert"] for r in RULES]
    assert len(alerts) == len(set(alerts))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_rule_has_the_required_fields(rule):
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    if "for" in rule:
        assert DURATION.fullmatch(rule["for"])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_rule_expression_parses_and_uses_only_existing_metrics(rule):
    assert selector_problems(rule["expr"]) == []


# The list of alerts, each with the metric it must watch.
REQUIRED = {
    "FspComponentDown": "up",
    "FspEntrypointErrorRate": "entrypoint_errors_total",
    "FspRpcLatencyP99High": "entrypoint_latency_seconds_bucket",
    "FspOutboxBacklogGrowing": "outbox_backlog",
    "FspConsumerLagHigh": "event_lag_seconds_bucket",
    "FspDeadLetterQueueNotEmpty": "rabbitmq_queue_messages",
    "FspStockMovementFailures": "entrypoint_errors_total",
}


@pytest.mark.parametrize("alert, metric", REQUIRED.items())
def test_required_alert_exists_and_watches_its_metric(alert, metric):
    rule = next((r for r in RULES if r["alert"] == alert), None)
    assert rule, f"no alert {alert}"
    assert metric in {s.name for s in selectors(rule["expr"])}


def test_component_down_covers_every_component():
    rule = next(r for r in RULES if r["alert"] == "FspComponentDown")
    (sel,) = selectors(rule["expr"])
    (job,) = [m for m in matchers(sel) if m.name == "job"]
    assert alternatives(job) == set(COMPONENTS)


def test_dead_letter_alert_matches_exactly_the_dead_letter_queues():
    rule = next(r for r in RULES if r["alert"] == "FspDeadLetterQueueNotEmpty")
    (sel,) = selectors(rule["expr"])
    (queue,) = [m for m in matchers(sel) if m.name == "queue"]
    rx = re.compile(queue.value)
    matched = {q for q in all_queues() if rx.fullmatch(q)}
    assert matched == {q for q in derived_queues() if q.endswith(".dlq")}


def test_stock_alert_watches_the_entrypoints_that_move_stock():
    rule = next(r for r in RULES if r["alert"] == "FspStockMovementFailures")
    eps = set()
    for sel in selectors(rule["expr"]):
        for m in matchers(sel):
            if m.name == "entrypoint":
                eps |= alternatives(m)
    # receiving, requisition approval (warehouse -> technician) and consumption on completion
    assert eps == {"receive_stock", "approve_requisition", "on_ticket_completed"}
    assert eps <= entrypoints("inventory")["rpc"] | entrypoints("inventory")["event"]


def test_prometheus_loads_the_rule_file_that_compose_mounts():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 2)[:2] for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./"))
    inside = {dst: (REPO / src).resolve() for src, dst in mounts.items()}
    assert config["rule_files"] and all(inside.get(f) == ALERTS for f in config["rule_files"])




def promtool(*args: str) -> None:
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_rules():
    promtool("check", "rules", str(ALERTS))


@needs_promtool
def test_promtool_accepts_the_config_with_its_rules(tmp_path):
    # the config names the rule file by its path inside the container; point it at the repo's
    config = (PROMETHEUS / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(ALERTS))
    (tmp_path / "prometheus.yml").write_text(config)
    promtool("check", "config", str(tmp_path / "prometheus.yml"))


@needs_promtool
def test_alerts_fire_on_the_series_that_should_trigger_them():
    # tests/deploy/alerts_test.yml: synthetic series per alert, expected to fire or stay silent
    promtool("test", "rules", str(Path(__file__).with_name("alerts_test.yml")))


# --- dashboards --------------------------------------------------------------------


def build_module():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_files() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


DASHBOARD_FILES = dashboard_files()


def test_one_dashboard_per_component_and_an_overview():
    assert set(DASHBOARD_FILES) == {f"{c}.json" for c in COMPONENTS} | {"overview.json"}
    uids = [d["uid"] for d in DASHBOARD_FILES.values()]
    assert len(uids) == len(set(uids))


def test_dashboards_are_what_the_builder_writes():
    # Edit build_dashboards.py and run it; hand edits of the JSON would be lost.
    module = build_module()
    built = {name: module.render(board) for name, board in module.dashboards().items()}
    on_disk = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert built == on_disk, "run: python deploy/grafana/build_dashboards.py"


def panel_params():
    for name, board in DASHBOARD_FILES.items():
        for panel in board["panels"]:
            yield pytest.param(name, panel, id=f"{name}:{panel['title']}")


@pytest.mark.parametrize("name, panel", panel_params())
def test_panel_queries_parse_and_use_only_existing_metrics(name, panel):
    assert panel["targets"]
    for target in panel["targets"]:
        assert selector_problems(target["expr"]) == [], target["expr"]
        assert target["datasource"] == panel["datasource"]


def test_dashboards_use_the_provisioned_datasource():
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    for board in DASHBOARD_FILES.values():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids


@pytest.mark.parametrize("service", SERVICES)
def test_service_dashboard_queue_panel_shows_exactly_its_queues(service):
    board = DASHBOARD_FILES[f"{service}.json"]
    panel = next(p for p in board["panels"] if p["title"].startswith("Queue depth"))
    (sel,) = selectors(panel["targets"][0]["expr"])
    (queue,) = [m for m in matchers(sel) if m.name == "queue"]
    rx = re.compile(queue.value)
    declared = declared_queues()[service]
    assert {q for q in all_queues() if rx.fullmatch(q)} == declared["rpc"] | declared["event"]


@pytest.mark.parametrize("service", SERVICES)
def test_service_dashboard_is_about_its_service(service):
    board = DASHBOARD_FILES[f"{service}.json"]
    for panel in board["panels"]:
        for target in panel["targets"]:
            for sel in selectors(target["expr"]):
                for m in matchers(sel):
                    if m.name in ("service", "job"):
                        assert m.value == service, (panel["title"], m.value)


def test_grafana_provisioning_points_at_the_mounted_dashboards():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "fsp.yml").read_text())["providers"][0]
    assert (REPO / {dst: src for src, dst in mounts.items()}[provider["options"]["path"]]).resolve() == DASHBOARDS
    assert {dst: src for src, dst in mounts.items()}["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


def test_broken_dashboard_is_caught():
    board = copy.deepcopy(DASHBOARD_FILES["tickets.json"])
    board["panels"][0]["targets"][0]["expr"] = 'rate(entrypoint_latency_seconds_count{service="tickets", kind="grpc"}[5m])'
    assert selector_problems(board["panels"][0]["targets"][0]["expr"])


def test_builder_knows_which_services_consume_events():
    consuming = {s for s in SERVICES if declared_queues()[s]["event"]}
    assert set(build_module().CONSUMES_EVENTS) == consuming
