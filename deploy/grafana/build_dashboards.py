"""Writes the Grafana dashboards (deploy/grafana/dashboards/*.json).

    python deploy/grafana/build_dashboards.py

One overview and one dashboard per component, all from the same panel
builders so they stay consistent. The JSON files are committed (Grafana
provisions them as they are); tests/deploy fails when they differ from what
this script writes, and checks every metric they query exists.
"""
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
SERVICES = ("tickets", "inventory", "customers", "notify", "reports")
# Services with @on_event handlers (tests/deploy checks this against the code); the
# others get no event, lag or dead-letter panels, which would stay empty.
CONSUMES_EVENTS = ("tickets", "inventory", "customers", "notify", "reports")
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources
UNEXPECTED = 'error!~"NotFound|Conflict|ValidationFailed|Forbidden"'


def panel(title: str, targets: list[tuple[str, str]], unit: str = "short", description: str = "") -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def queue_regex(service: str) -> str:
    # the queues nameko declares for a service: rpc-<name> and evt-<source>-<type>--<name>.<method>
    return rf"rpc-{service}|evt-.+--{service}\\.[a-z_]+"


def service_panels(s: str) -> list[dict]:
    sel = f'service="{s}"'
    panels = [
        panel("Calls per second by entrypoint", [
            (f"sum by (entrypoint, kind) (rate(entrypoint_latency_seconds_count{{{sel}}}[5m]))", "{{kind}} {{entrypoint}}"),
        ], "reqps"),
        panel("Errors per second by entrypoint and error", [
            (f"sum by (entrypoint, error) (rate(entrypoint_errors_total{{{sel}}}[5m]))", "{{entrypoint}} {{error}}"),
        ], "reqps", "NotFound/Conflict/ValidationFailed/Forbidden are expected 4xx answers; anything else is a bug or an outage."),
        panel("Latency p50 / p99 by entrypoint", [
            (f"histogram_quantile(0.5, sum by (entrypoint, le) (rate(entrypoint_latency_seconds_bucket{{{sel}}}[5m])))", "p50 {{entrypoint}}"),
            (f"histogram_quantile(0.99, sum by (entrypoint, le) (rate(entrypoint_latency_seconds_bucket{{{sel}}}[5m])))", "p99 {{entrypoint}}"),
        ], "s"),
        panel("Outbox: backlog and published", [
            (f"sum(outbox_backlog{{{sel}}})", "backlog"),
            (f"sum(rate(outbox_published_total{{{sel}}}[5m]))", "published/s"),
        ]),
        panel("Queue depth (ready + unacked)", [
            (f'sum by (queue) (rabbitmq_queue_messages{{queue=~"{queue_regex(s)}"}})', "{{queue}}"),
        ], "short", "What KEDA scales this service on."),
        panel("Instances up", [(f'sum(up{{job="{s}"}})', "up")]),
    ]
    if s not in CONSUMES_EVENTS:
        return panels
    return panels + [
        panel("Events consumed by outcome", [
            (f"sum by (event_type, outcome) (rate(events_consumed_total{{{sel}}}[5m]))", "{{event_type}} {{outcome}}"),
        ], "ops"),
        panel("Event lag p99 (occurred -> committed here)", [
            (f"histogram_quantile(0.99, sum by (event_type, le) (rate(event_lag_seconds_bucket{{{sel}}}[5m])))", "{{event_type}}"),
        ], "s"),
        panel("Dead-letter queues", [
            (f'sum by (queue) (rabbitmq_queue_messages{{queue=~"evt-.+--{s}\\\\..+\\\\.dlq"}})', "{{queue}}"),
        ], "short", "Parked events: python -m svc_common.dlq show|replay QUEUE."),
    ]


def gateway_panels() -> list[dict]:
    return [
        panel("Requests per second by status", [
            ("sum by (status) (rate(http_request_latency_seconds_count[5m]))", "{{status}}"),
        ], "reqps"),
        panel("Latency p50 / p99 by route", [
            ("histogram_quantile(0.5, sum by (route, le) (rate(http_request_latency_seconds_bucket[5m])))", "p50 {{route}}"),
            ("histogram_quantile(0.99, sum by (route, le) (rate(http_request_latency_seconds_bucket[5m])))", "p99 {{route}}"),
        ], "s"),
        panel("5xx ratio", [
            ('sum(rate(http_request_latency_seconds_count{status=~"5.."}[5m])) / sum(rate(http_request_latency_seconds_count[5m]))', "5xx"),
        ], "percentunit", "504 = an RPC to a service timed out (RPC_TIMEOUT_SECONDS)."),
        panel("Outbox: backlog and published", [
            ('sum(outbox_backlog{service="gateway"})', "backlog"),
            ('sum(rate(outbox_published_total{service="gateway"}[5m]))', "published/s"),
        ]),
        panel("Instances up", [('sum(up{job="gateway"})', "up")]),
    ]


def overview_panels() -> list[dict]:
    return [
        panel("Components up", [('sum by (job) (up{job=~"tickets|inventory|customers|notify|reports|gateway"})', "{{job}}")]),
        panel("Gateway requests per second by status", [
            ("sum by (status) (rate(http_request_latency_seconds_count[5m]))", "{{status}}"),
        ], "reqps"),
        panel("Entrypoint calls per second by service", [
            ("sum by (service) (rate(entrypoint_latency_seconds_count[5m]))", "{{service}}"),
        ], "reqps"),
        panel("Unexpected errors per second by service", [
            (f"sum by (service) (rate(entrypoint_errors_total{{{UNEXPECTED}}}[5m]))", "{{service}}"),
        ], "reqps"),
        panel("RPC latency p99 by service", [
            ('histogram_quantile(0.99, sum by (service, le) (rate(entrypoint_latency_seconds_bucket{kind="rpc"}[5m])))', "{{service}}"),
        ], "s"),
        panel("Event lag p99 by consumer", [
            ("histogram_quantile(0.99, sum by (service, le) (rate(event_lag_seconds_bucket[5m])))", "{{service}}"),
        ], "s"),
        panel("Outbox backlog by service", [("sum by (service) (outbox_backlog)", "{{service}}")]),
        panel("Dead-lettered events (15 min)", [
            ('sum by (service, event_type) (increase(events_consumed_total{outcome="dead_lettered"}[15m]))', "{{service}} {{event_type}}"),
        ]),
        panel("Dead-letter queue depth", [
            ('sum by (queue) (rabbitmq_queue_messages{queue=~".+\\\\.dlq"})', "{{queue}}"),
        ]),
    ]


def dashboard(uid: str, title: str, panels: list[dict]) -> dict:
    for i, p in enumerate(panels):  # two panels per row
        p["id"] = i + 1
        p["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return {
        "uid": uid,
        "title": title,
        "tags": ["fsp"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboards() -> dict[str, dict]:
    out = {"overview.json": dashboard("fsp-overview", "FSP / Overview", overview_panels()),
           "gateway.json": dashboard("fsp-gateway", "FSP / gateway", gateway_panels())}
    for s in SERVICES:
        out[f"{s}.json"] = dashboard(f"fsp-{s}", f"FSP / {s}", service_panels(s))
    return out


def render(board: dict) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, board in dashboards().items():
        (OUT / name).write_text(render(board))
        print(OUT / name)
